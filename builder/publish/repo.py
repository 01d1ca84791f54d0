"""Publish the checked .debs as a signed apt repository with aptly, swapped into place atomically.

aptly keeps one local repo per target, snapshots it, and publishes (or switches) the suite in
its own public tree. aptly renames its new index files into place one by one and then deletes
pool files no snapshot needs: no single atomic step, so clients never read aptly's tree. After
aptly finishes, the whole tree is copied (pool files hard-linked) into a new generation
`dist/apt.<n>` and the symlink `dist/apt` is flipped to it with one rename: a client sees the
old tree or the new one, never a half-written suite. A killed run leaves the old link in place.
"""

from __future__ import annotations

import email.utils
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from builder.core import run
from builder.core.atomic import remove_path, write_text
from builder.core.context import Context
from builder.core.errors import CommandError, PfbuildError
from builder.model.distro import Distribution
from builder.publish.signing import SigningKey, export_public_key

log = logging.getLogger("pfbuild")

TREE_NAME = "apt"
COMPONENT = "main"
ARCHITECTURES = ("amd64", "all")
ORIGIN = "pfbuild"
KEY_FILE_NAME = "pfbuild.asc"
KEY_INSTALL_PATH = "/etc/apt/keyrings/pfbuild.asc"
MANIFEST_NAME = "pfbuild-publish.json"
# The live generation and the one before it: a client that read the old InRelease a moment
# before the flip can still fetch the indexes it names.
KEEP_GENERATIONS = 2
DEFAULT_LOCK_TIMEOUT = 120.0


@dataclass(frozen=True)
class PublishOptions:
    """Where clients will reach the repository and how long to wait for another publisher."""

    url: str
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    allow_unchecked: bool = False

    def __post_init__(self) -> None:
        if not re.match(r"^(https?|file)://", self.url):
            raise PfbuildError(
                f"repository URL {self.url!r} is not an http(s):// or file:// URL",
                "it goes into the exported .sources snippet that apt reads",
                "pass --url http://HOST:PORT/",
            )
        if self.lock_timeout < 0:
            raise PfbuildError("--lock-timeout must not be negative")


@dataclass(frozen=True)
class SuiteState:
    """What a publish did to one suite."""

    suite: str
    snapshot: str
    changed: bool
    packages: tuple[str, ...]


@dataclass(frozen=True)
class DebInfo:
    """The identity of one binary package file."""

    path: Path
    package: str
    version: str
    architecture: str


# ---- paths ------------------------------------------------------------------------------------


def tree_link(ctx: Context) -> Path:
    """The published tree clients are served: a symlink to the live generation."""
    return ctx.dist_dir / TREE_NAME


def aptly_config_path(ctx: Context) -> Path:
    """The aptly config pfbuild writes (never ~/.aptly.conf)."""
    return ctx.aptly_dir / "aptly.conf"


def aptly_public_dir(ctx: Context) -> Path:
    """aptly's own publish target; only pfbuild reads it."""
    return ctx.aptly_dir / "root" / "public"


def _history_path(ctx: Context) -> Path:
    return ctx.aptly_dir / "history.json"


def lock_path(ctx: Context) -> Path:
    """The lock file that serialises publishers; it holds the holder's pid."""
    return ctx.aptly_dir / "publish.lock"


# ---- command lines ----------------------------------------------------------------------------


def aptly_cmdline(config: Path, *args: str | Path) -> list[str]:
    """An aptly call on pfbuild's config, with SOURCE_DATE_EPOCH scrubbed from its environment."""
    # A build's SOURCE_DATE_EPOCH must not become the InRelease Date: apt ignores an InRelease
    # older than the one it already has.
    return ["env", "-u", "SOURCE_DATE_EPOCH", "aptly", f"-config={config}", *map(str, args)]


def repo_name(dist: Distribution) -> str:
    """The aptly local repo that collects one target's packages."""
    return f"pfbuild-{dist.name}"


def repo_create_cmdline(config: Path, dist: Distribution) -> list[str]:
    """Create the target's local repo with its default suite and component."""
    return aptly_cmdline(
        config,
        "repo",
        "create",
        f"-distribution={dist.name}",
        f"-component={COMPONENT}",
        repo_name(dist),
    )


def repo_add_cmdline(config: Path, dist: Distribution, debs: Sequence[Path]) -> list[str]:
    """Add .debs to the target's repo (a file already there is skipped, a conflict refused)."""
    return aptly_cmdline(config, "repo", "add", repo_name(dist), *debs)


def snapshot_create_cmdline(config: Path, snapshot: str, dist: Distribution) -> list[str]:
    """Freeze the target's repo as a snapshot."""
    return aptly_cmdline(config, "snapshot", "create", snapshot, "from", "repo", repo_name(dist))


def _signing_flags(fingerprint: str) -> list[str]:
    return ["-batch", f"-gpg-key={fingerprint}"]


def publish_snapshot_cmdline(
    config: Path, snapshot: str, suite: str, fingerprint: str
) -> list[str]:
    """First publish of a suite: signed, by-hash, amd64 + all."""
    return aptly_cmdline(
        config,
        "publish",
        "snapshot",
        *_signing_flags(fingerprint),
        "-acquire-by-hash",
        f"-architectures={','.join(ARCHITECTURES)}",
        f"-component={COMPONENT}",
        f"-distribution={suite}",
        f"-origin={ORIGIN}",
        f"-label={ORIGIN}",
        snapshot,
        ".",
    )


def publish_switch_cmdline(config: Path, suite: str, snapshot: str, fingerprint: str) -> list[str]:
    """Point an already published suite at another snapshot (settings are kept by aptly)."""
    return aptly_cmdline(
        config,
        "publish",
        "switch",
        *_signing_flags(fingerprint),
        f"-component={COMPONENT}",
        suite,
        ".",
        snapshot,
    )


def aptly_config(ctx: Context) -> dict[str, object]:
    """aptly's settings: its root in the workspace, gpg signing, our architectures."""
    return {
        "rootDir": str(ctx.aptly_dir / "root"),
        "architectures": list(ARCHITECTURES),
        "gpgProvider": "gpg",
        "gpgDisableSign": False,
        "gpgDisableVerify": False,
        "downloadSourcePackages": False,
        "ppaDistributorID": "",
        "FileSystemPublishEndpoints": {},
        "S3PublishEndpoints": {},
        "SwiftPublishEndpoints": {},
    }


def write_aptly_config(ctx: Context) -> Path:
    """Write the aptly config into the workspace (unchanged files are left alone)."""
    path = aptly_config_path(ctx)
    text = json.dumps(aptly_config(ctx), indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return path


def sources_snippet(url: str, suite: str, signed_by: str = KEY_INSTALL_PATH) -> str:
    """A deb822 .sources stanza for one suite of the repository."""
    base = url if url.endswith("/") else url + "/"
    return (
        f"# pfbuild repository, suite {suite}. Install the key from {base}{KEY_FILE_NAME}\n"
        f"# as {signed_by}, this file in /etc/apt/sources.list.d/.\n"
        "Types: deb\n"
        f"URIs: {base}\n"
        f"Suites: {suite}\n"
        f"Components: {COMPONENT}\n"
        f"Signed-By: {signed_by}\n"
    )


def sources_file_name(suite: str) -> str:
    """The exported snippet of one suite."""
    return f"pfbuild-{suite}.sources"


# ---- inputs -----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_debs(build_dir: Path) -> list[Path]:
    """The .debs of a build directory, each listed in a .changes there with a matching SHA-256."""
    changes_files = sorted(build_dir.glob("*.changes"))
    if not changes_files:
        raise PfbuildError(
            f"no .changes file in {build_dir}",
            "pfbuild publishes only build results whose files a .changes vouches for",
            "run the build stage for this target again",
        )
    listed: dict[str, str] = {}
    for changes_file in changes_files:
        with changes_file.open() as handle:
            changes = deb822.Changes(handle)
        for entry in changes.get("Checksums-Sha256", []):
            listed[entry["name"]] = entry["sha256"]
    debs = sorted(build_dir.glob("*.deb"))
    for deb in debs:
        if deb.name not in listed:
            raise PfbuildError(
                f"{deb} is not listed in any .changes of its build",
                "a stray file must not reach the repository",
                f"remove it or rebuild into a clean {build_dir}",
            )
        if _sha256(deb) != listed[deb.name]:
            raise PfbuildError(
                f"{deb} does not match the SHA-256 in its .changes",
                "the file changed after the build",
                "rebuild this target",
            )
    for name in listed:
        if name.endswith(".deb") and not (build_dir / name).is_file():
            raise PfbuildError(
                f"{build_dir} lacks {name}, which its .changes lists",
                fix="rebuild this target",
            )
    if not debs:
        raise PfbuildError(f"no .deb in {build_dir}", fix="run the build stage for this target")
    return debs


def deb_info(deb: Path) -> DebInfo:
    """Read Package, Version and Architecture from a .deb's control file."""
    text = run.output(["dpkg-deb", "--field", deb, "Package", "Version", "Architecture"])
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    try:
        return DebInfo(deb, fields["Package"], fields["Version"], fields["Architecture"])
    except KeyError:
        raise PfbuildError(f"{deb} has no complete control file") from None


def check_deb_for_target(info: DebInfo, dist: Distribution) -> None:
    """Refuse a .deb that does not belong in `dist`'s suite."""
    if not info.version.endswith(dist.version_suffix):
        # The pool is shared by the suites: the per-target suffix keeps file names distinct.
        raise PfbuildError(
            f"{info.path.name} has version {info.version}, not ending in {dist.version_suffix}",
            f"every {dist.name} package carries its target's suffix, so the suites' shared "
            "pool never holds two different files under one name",
            "build it with pfbuild for this target",
        )
    if info.architecture not in ARCHITECTURES:
        raise PfbuildError(
            f"{info.path.name} is for architecture {info.architecture}",
            f"the repository carries {', '.join(ARCHITECTURES)}",
        )


@dataclass(frozen=True)
class Build:
    """One build of a recipe version for a target, as the build stage left it."""

    recipe: str
    version: str
    path: Path


def find_builds(
    ctx: Context, dist: Distribution, recipe: str | None, version: str | None
) -> list[Build]:
    """The builds to publish for `dist`: one named build, or every build there is."""
    if recipe is not None and version is not None:
        path = ctx.build_dir(recipe, version, dist.name)
        if not path.is_dir():
            raise PfbuildError(
                f"no {dist.name} build of {recipe} {version} in {path}",
                fix=f"run `pfbuild build {recipe} {version} --target {dist.name}`, "
                "or publish only the targets you built with --target",
            )
        return [Build(recipe, version, path)]
    # builds/<recipe>/<version>/<target>: every build of this target in the workspace.
    builds_root = ctx.build_dir("_", "_", dist.name).parents[2]
    found = sorted(p for p in builds_root.glob(f"*/*/{dist.name}") if p.is_dir())
    return [Build(p.parent.parent.name, p.parent.name, p) for p in found]


def require_checked(ctx: Context, build: Build, dist: Distribution) -> None:
    """Refuse a build whose hardening check did not pass (or never ran)."""
    report = ctx.report_dir(build.recipe, build.version, dist.name) / "hardening.json"
    check = f"pfbuild check {build.recipe} {build.version} --target {dist.name}"
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        raise PfbuildError(
            f"the {dist.name} build of {build.recipe} {build.version} has not been checked",
            f"there is no readable {report}",
            f"run `{check}` (or pass --allow-unchecked for a local experiment)",
        ) from None
    verdict = data.get("verdict") if isinstance(data, dict) else None
    if verdict != "pass":
        raise PfbuildError(
            f"the {dist.name} build of {build.recipe} {build.version} failed its check",
            f"{report} says verdict {verdict!r}",
            f"fix the build and run `{check}` again",
        )


def collect_debs(
    ctx: Context,
    dist: Distribution,
    recipe: str | None,
    version: str | None,
    *,
    allow_unchecked: bool = False,
) -> list[Path]:
    """Every checked .deb to publish for `dist`, validated before aptly sees any of them."""
    debs: list[Path] = []
    for build in find_builds(ctx, dist, recipe, version):
        if allow_unchecked:
            log.warning("%s: publishing %s without a passed check", dist.name, build.path)
        else:
            require_checked(ctx, build, dist)
        for deb in checked_debs(build.path):
            check_deb_for_target(deb_info(deb), dist)
            debs.append(deb)
    return debs


# ---- lock -------------------------------------------------------------------------------------


@contextmanager
def publish_lock(
    path: Path, timeout: float, *, sleep: Callable[[float], None] = time.sleep
) -> Iterator[None]:
    """Hold the publish lock; wait up to `timeout` seconds for another holder, then fail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text().strip() or "unknown"
                if time.monotonic() >= deadline:
                    raise PfbuildError(
                        f"another pfbuild publish (pid {holder}) holds {path}",
                        f"only one publisher may run at a time; waited {timeout:g} s",
                        "wait for it to finish, or raise --lock-timeout",
                    ) from None
                if not announced:
                    log.info("waiting for the publish lock held by pid %s", holder)
                    announced = True
                sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock, also when we are killed


# ---- aptly ------------------------------------------------------------------------------------


class Aptly:
    """aptly on the workspace config, signing with one key."""

    def __init__(self, config: Path, key: SigningKey) -> None:
        self.config = config
        self.key = key

    def run(self, cmd: list[str], *, check: bool = True) -> str:
        """Run one aptly command line (built by a *_cmdline function); return its output."""
        proc = run.run(cmd, env=self.key.env(), check=check)
        return (proc.stdout + proc.stderr).decode(errors="replace")

    def repos(self) -> set[str]:
        """Names of the local repos."""
        return set(self.run(aptly_cmdline(self.config, "repo", "list", "-raw")).split())

    def snapshots(self) -> set[str]:
        """Names of the snapshots."""
        return set(self.run(aptly_cmdline(self.config, "snapshot", "list", "-raw")).split())

    def published(self) -> dict[str, str]:
        """Suite -> snapshot currently published at our prefix."""
        text = self.run(aptly_cmdline(self.config, "publish", "list", "-json"))
        result: dict[str, str] = {}
        for item in json.loads(text):
            if item.get("Prefix") == "." and item.get("Sources"):
                result[item["Distribution"]] = item["Sources"][0]["Name"]
        return result

    def _search(self, *args: str) -> tuple[str, ...]:
        cmd = aptly_cmdline(self.config, *args)
        proc = run.run(cmd, env=self.key.env(), check=False)
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            if "no results" in (out + proc.stderr.decode(errors="replace")):
                return ()
            run.run(cmd, env=self.key.env())  # raises with the command and its output
        return tuple(sorted(out.split()))

    def repo_packages(self, repo: str) -> tuple[str, ...]:
        """Package keys (name_version_arch) in a local repo."""
        return self._search("repo", "search", repo)

    def snapshot_packages(self, snapshot: str) -> tuple[str, ...]:
        """Package keys in a snapshot."""
        return self._search("snapshot", "search", snapshot)


def new_snapshot_name(dist: Distribution, existing: set[str], now: float) -> str:
    """A unique, time-ordered snapshot name for the target's repo."""
    base = f"{repo_name(dist)}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}"
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


# ---- dates ------------------------------------------------------------------------------------


def inrelease_date(path: Path) -> float | None:
    """The Date of an InRelease or Release file, as a Unix time; None if there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^Date: (.+)$", text, re.MULTILINE)
    if not match:
        return None
    return email.utils.parsedate_to_datetime(match.group(1).strip()).timestamp()


def wait_for_later_second(
    previous: float | None,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the clock is in a later second than `previous` (Dates have 1 s resolution)."""
    if previous is None:
        return
    while int(clock()) <= int(previous):
        sleep(0.05)


def _last_date(ctx: Context, suite: str) -> float | None:
    # aptly's own tree may be ahead of the live one (a killed run); take the later of the two.
    dates = [
        inrelease_date(root / "dists" / suite / "InRelease")
        for root in (aptly_public_dir(ctx), tree_link(ctx))
    ]
    known = [d for d in dates if d is not None]
    return max(known) if known else None


# ---- history (for rollback) -------------------------------------------------------------------


def read_history(ctx: Context) -> dict[str, list[str]]:
    """Suite -> snapshots published in order; the last one is live."""
    path = _history_path(ctx)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
    ):
        raise PfbuildError(f"{path} is not a publish history", fix="restore or remove it")
    return {str(k): list(v) for k, v in data.items()}


def write_history(ctx: Context, history: dict[str, list[str]]) -> None:
    """Store the publish history atomically."""
    write_text(_history_path(ctx), json.dumps(history, indent=2, sort_keys=True) + "\n")


def reconcile_history(history: dict[str, list[str]], published: dict[str, str]) -> None:
    """Append what aptly has live but the history missed (a run killed after aptly finished)."""
    for suite, snapshot in published.items():
        snaps = history.setdefault(suite, [])
        if not snaps or snaps[-1] != snapshot:
            snaps.append(snapshot)


def rollback_target(history: dict[str, list[str]], suite: str) -> str:
    """The snapshot a rollback of `suite` switches to."""
    snaps = history.get(suite, [])
    if len(snaps) < 2:
        raise PfbuildError(
            f"suite {suite} has no earlier snapshot to roll back to",
            f"it was published {len(snaps)} time(s) with different content",
            "publish an older build instead",
        )
    return snaps[-2]


# ---- the served tree --------------------------------------------------------------------------


def copy_published_tree(public: Path, dest: Path) -> None:
    """Copy aptly's public tree: pool files hard-linked, indexes copied, links made relative."""
    public_abs = os.path.normpath(public)
    for root, dirs, files in os.walk(public):
        rel_root = Path(root).relative_to(public)
        (dest / rel_root).mkdir(parents=True, exist_ok=True)
        for name in dirs + files:
            src = Path(root) / name
            dst = dest / rel_root / name
            if src.is_symlink():
                # aptly's by-hash links are absolute paths into its own tree.
                target = os.path.normpath(src.parent / src.readlink())
                if not target.startswith(public_abs + os.sep):
                    raise PfbuildError(f"{src} links outside the published tree, to {target}")
                dst.symlink_to(os.path.relpath(target, src.parent))
            elif name in files:
                if rel_root.parts[:1] == ("pool",):
                    os.link(src, dst)  # aptly never rewrites a pool file in place
                else:
                    shutil.copy2(src, dst)


def carry_over_by_hash(old: Path, new: Path) -> None:
    """Keep the previous generation's current indexes reachable by hash in the new one."""
    # A client that read the old InRelease just before the flip then asks for its indexes.
    for by_hash in old.glob("dists/**/by-hash"):
        for link in by_hash.glob("*/*"):
            if not link.is_symlink() or not link.is_file():
                continue
            target = link.resolve()
            dst = new / target.relative_to(old.resolve())
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target, dst)


def live_generation(ctx: Context) -> Path | None:
    """The generation directory `dist/apt` points to, if any."""
    link = tree_link(ctx)
    if link.is_symlink():
        target = ctx.dist_dir / link.readlink()
        return target if target.is_dir() else None
    if link.exists():
        raise PfbuildError(
            f"{link} is not a symlink",
            "pfbuild swaps the published tree by flipping that symlink",
            f"move {link} away; pfbuild recreates it",
        )
    return None


def _generation_number(path: Path) -> int | None:
    match = re.fullmatch(rf"{TREE_NAME}\.(\d+)", path.name)
    return int(match.group(1)) if match else None


def _generations(ctx: Context) -> list[Path]:
    found = [p for p in ctx.dist_dir.glob(f"{TREE_NAME}.*") if _generation_number(p) is not None]
    return sorted(found, key=lambda p: _generation_number(p) or 0)


def flip_link(link: Path, target_name: str) -> None:
    """Point `link` at `target_name` (a sibling) with one rename."""
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    remove_path(tmp)
    tmp.symlink_to(target_name)
    os.replace(tmp, link)


def _clean_leftovers(ctx: Context) -> None:
    # Half-made generations and links of runs that were killed.
    for leftover in ctx.dist_dir.glob(f".{TREE_NAME}*"):
        remove_path(leftover)


def _remove_old_generations(ctx: Context, live: Path) -> None:
    generations = _generations(ctx)
    keep = {live.name, *(g.name for g in generations[-KEEP_GENERATIONS:])}
    for generation in generations:
        if generation.name not in keep:
            remove_path(generation)


def refresh_tree(
    ctx: Context, key: SigningKey, url: str, published: dict[str, str]
) -> tuple[Path, bool]:
    """Make `dist/apt` show aptly's current publish; return the live tree, changed?"""
    manifest = {"fingerprint": key.fingerprint, "suites": published, "url": url}
    live = live_generation(ctx)
    if live is not None:
        try:
            if json.loads((live / MANIFEST_NAME).read_text()) == manifest:
                return live, False
        except (OSError, ValueError):
            pass
    generations = _generations(ctx)
    number = (_generation_number(generations[-1]) or 0) + 1 if generations else 1
    final = ctx.dist_dir / f"{TREE_NAME}.{number}"
    tmp = ctx.dist_dir / f".{TREE_NAME}.{number}.tmp"
    remove_path(tmp)
    try:
        copy_published_tree(aptly_public_dir(ctx), tmp)
        if live is not None:
            carry_over_by_hash(live, tmp)
        export_public_key(key, tmp / KEY_FILE_NAME)
        for suite in sorted(published):
            write_text(tmp / sources_file_name(suite), sources_snippet(url, suite))
        write_text(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)
        os.replace(tmp, final)
    finally:
        remove_path(tmp)
    flip_link(tree_link(ctx), final.name)
    log.info("published tree %s -> %s", tree_link(ctx), final.name)
    _remove_old_generations(ctx, final)
    return final, True


def install_tree(ctx: Context, source: Path) -> Path:
    """Make a (verified) tree published elsewhere the live `dist/apt` of this workspace."""
    _clean_leftovers(ctx)
    live = live_generation(ctx)
    generations = _generations(ctx)
    number = (_generation_number(generations[-1]) or 0) + 1 if generations else 1
    final = ctx.dist_dir / f"{TREE_NAME}.{number}"
    tmp = ctx.dist_dir / f".{TREE_NAME}.{number}.tmp"
    try:
        shutil.copytree(source, tmp, symlinks=True)
        tmp.chmod(0o755)
        os.replace(tmp, final)
    finally:
        remove_path(tmp)
    flip_link(tree_link(ctx), final.name)
    log.info("installed the tree from %s as %s (was %s)", source, final.name, live)
    _remove_old_generations(ctx, final)
    return final


# ---- the stage --------------------------------------------------------------------------------


def _publish_suite(
    ctx: Context,
    aptly: Aptly,
    dist: Distribution,
    debs: list[Path],
    published: dict[str, str],
    history: dict[str, list[str]],
) -> SuiteState | None:
    config = aptly.config
    repo = repo_name(dist)
    if repo not in aptly.repos():
        aptly.run(repo_create_cmdline(config, dist))
    if debs:
        try:
            aptly.run(repo_add_cmdline(config, dist, debs))
        except CommandError as exc:
            conflicts = re.findall(r"conflict in package (\S+)", exc.details)
            if not conflicts:
                raise
            raise PfbuildError(
                f"{dist.name}: {', '.join(conflicts)} already in the repository with other content",
                "a published version is immutable: clients may hold the old file under that name",
                "bump the package revision (for example +pf2) and rebuild",
            ) from None
    content = aptly.repo_packages(repo)
    current = published.get(dist.name)
    if not content:
        log.info("%s: nothing built yet, suite not published", dist.name)
        return None
    if current is not None and aptly.snapshot_packages(current) == content:
        log.info("%s: unchanged, still %s", dist.name, current)
        return SuiteState(dist.name, current, False, content)
    snapshot = new_snapshot_name(dist, aptly.snapshots(), time.time())
    aptly.run(snapshot_create_cmdline(config, snapshot, dist))
    wait_for_later_second(_last_date(ctx, dist.name))
    fpr = aptly.key.fingerprint
    if current is None:
        aptly.run(publish_snapshot_cmdline(config, snapshot, dist.name, fpr))
    else:
        aptly.run(publish_switch_cmdline(config, dist.name, snapshot, fpr))
    published[dist.name] = snapshot
    history.setdefault(dist.name, []).append(snapshot)
    log.info("%s: published %s (%d packages)", dist.name, snapshot, len(content))
    return SuiteState(dist.name, snapshot, True, content)


def publish_repo(
    ctx: Context,
    targets: Sequence[Distribution],
    key: SigningKey,
    options: PublishOptions,
    *,
    recipe: str | None = None,
    version: str | None = None,
    builds: Sequence[tuple[str, str]] = (),
) -> list[SuiteState]:
    """Add the targets' checked .debs to aptly, publish changed suites, swap the tree into place.

    `builds` names several (recipe, version) pairs at once (a release publishes postfix and
    the packages its image needs in one step); otherwise `recipe`/`version` or every build.
    """
    pairs: Sequence[tuple[str | None, str | None]] = builds or [(recipe, version)]
    inputs = {
        dist.name: [
            deb
            for r, v in pairs
            for deb in collect_debs(ctx, dist, r, v, allow_unchecked=options.allow_unchecked)
        ]
        for dist in targets
    }
    states: list[SuiteState] = []
    with publish_lock(lock_path(ctx), options.lock_timeout):
        _clean_leftovers(ctx)
        aptly = Aptly(write_aptly_config(ctx), key)
        published = aptly.published()
        history = read_history(ctx)
        reconcile_history(history, published)
        for dist in targets:
            state = _publish_suite(ctx, aptly, dist, inputs[dist.name], published, history)
            if state is not None:
                states.append(state)
        write_history(ctx, history)
        if published:
            refresh_tree(ctx, key, options.url, published)
    return states


def rollback_suite(ctx: Context, suite: str, key: SigningKey, options: PublishOptions) -> str:
    """Switch `suite` back to the snapshot published before the live one; return its name."""
    with publish_lock(lock_path(ctx), options.lock_timeout):
        _clean_leftovers(ctx)
        aptly = Aptly(write_aptly_config(ctx), key)
        published = aptly.published()
        if suite not in published:
            raise PfbuildError(
                f"suite {suite} is not published",
                fix=f"published suites: {', '.join(sorted(published)) or 'none'}",
            )
        history = read_history(ctx)
        reconcile_history(history, published)
        previous = rollback_target(history, suite)
        wait_for_later_second(_last_date(ctx, suite))
        aptly.run(publish_switch_cmdline(aptly.config, suite, previous, key.fingerprint))
        history[suite].pop()
        published[suite] = previous
        write_history(ctx, history)
        refresh_tree(ctx, key, options.url, published)
    log.info("%s: rolled back to %s", suite, previous)
    return previous
