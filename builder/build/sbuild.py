"""Build a .dsc with sbuild's unshare mode, as the unprivileged build user, in a deps chroot."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shlex
import shutil
import tarfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from debian import deb822

from builder.core import run
from builder.core.atomic import atomic_dir, atomic_file, link_or_copy, remove_path, write_text
from builder.bootstrap.buildenv import ensure_chroot_tarball, mmdebstrap_cmdline, mmdebstrap_version
from builder.core.context import Context
from builder.model.distro import Distribution
from builder.core.errors import PfbuildError
from builder.bootstrap.keyring import ensure_keyring

log = logging.getLogger("pfbuild")

BUILD_DEP_FIELDS = ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep")
RESULT_SUFFIXES = (".deb", ".udeb", ".ddeb", ".changes", ".buildinfo")


def _arch_matches(arch: str, wildcard: str) -> bool:
    return wildcard in (arch, "any", "linux-any", f"any-{arch}", f"linux-{arch}")


def _alternative_applies(alt: deb822.PkgRelation.ParsedRelation, arch: str) -> bool:
    arches = alt["arch"] or []
    enabled = [a.arch for a in arches if a.enabled]
    disabled = [a.arch for a in arches if not a.enabled]
    if enabled and not any(_arch_matches(arch, a) for a in enabled):
        return False
    if any(_arch_matches(arch, a) for a in disabled):
        return False
    restrictions = alt["restrictions"]
    if restrictions:
        # No build profile is active: a term holds when it is negated (<!nocheck>).
        return any(all(not term.enabled for term in group) for group in restrictions)
    return True


def build_depends(dsc: Path, arch: str) -> str:
    """The .dsc's build dependencies for `arch` with no build profile, as one apt-satisfy string."""
    with dsc.open() as f:
        para = deb822.Dsc(f)
    relations: list[str] = []
    for field in BUILD_DEP_FIELDS:
        if not para.get(field, "").strip():
            continue
        for group in deb822.PkgRelation.parse_relations(para[field]):
            kept = []
            for alt in group:
                if not _alternative_applies(alt, arch):
                    continue
                text = alt["name"]
                if alt["archqual"]:
                    text += f":{alt['archqual']}"
                if alt["version"]:
                    op, ver = alt["version"]
                    text += f" ({op} {ver})"
                kept.append(text)
            if kept:
                relations.append(" | ".join(kept))
    return ", ".join(["build-essential", "fakeroot", *relations])


@dataclass(frozen=True)
class DepsChroot:
    """A chroot tarball with one recipe's build dependencies already installed."""

    path: Path
    key: str
    resolved: tuple[str, ...]


def deps_chroot_cmdline(dist: Distribution, keyring: Path, output: Path, depends: str) -> list[str]:
    """mmdebstrap with the build-deps installed by apt-get satisfy, package lists kept."""
    base = mmdebstrap_cmdline(dist, variant="buildd", keyring=keyring, output=output)
    hook = (
        'chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get satisfy -y -q '
        f"--no-install-recommends {shlex.quote(depends)}"
    )
    # Keep the package lists: sbuild then needs no apt-get update inside the cached chroot.
    return [base[0], f"--customize-hook={hook}", "--skip=cleanup/apt/lists", *base[1:]]


def _installed_packages(tarball: Path) -> tuple[str, ...]:
    with tarfile.open(tarball) as tar:
        handle = tar.extractfile("./var/lib/dpkg/status")
        status = handle.read().decode() if handle else ""
    return tuple(
        sorted(
            f"{p['Package']}={p['Version']}"
            for p in deb822.Deb822.iter_paragraphs(io.StringIO(status), use_apt_pkg=False)
            if p.get("Status", "").endswith(" installed")
        )
    )


def ensure_deps_chroot(
    ctx: Context, dist: Distribution, recipe: str, dsc: Path, *, now: float | None = None
) -> DepsChroot:
    """Make (or reuse) the build-deps chroot of `recipe` for `dist`.

    Keyed by the base tarball's identity (its inputs and when it was made: it is refreshed
    with the same max age) and the declared build dependencies.
    """
    base = ensure_chroot_tarball(ctx, dist, now=now)
    keyring = ensure_keyring(ctx, dist)
    depends = build_depends(dsc, dist.arch)
    base_record = base.with_suffix(".json").read_text()
    key = hashlib.sha256(
        json.dumps([base_record, depends, mmdebstrap_version()]).encode()
    ).hexdigest()[:16]
    # Named by the build dependencies, not the recipe: recipes that need the same packages
    # (a renamed or site recipe, a rebuild) share one chroot.
    deps_id = hashlib.sha256(depends.encode()).hexdigest()[:12]
    tarball = ctx.chroots_dir / f"{dist.name}-{dist.arch}-deps-{deps_id}.tar"
    record_path = tarball.with_suffix(".json")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    if record.get("key") == key and tarball.is_file():
        log.info("%s: build-deps chroot of %s reused", dist.name, recipe)
        return DepsChroot(tarball, key, tuple(record.get("resolved", ())))
    log.info("%s: making build-deps chroot of %s", dist.name, recipe)
    started = time.monotonic()
    with atomic_file(tarball) as tmp:
        cmd = deps_chroot_cmdline(dist, keyring, tmp, depends)
        run.run(cmd, log_path=ctx.logs_dir / f"deps-{dist.name}-{recipe}.log")
        tmp.chmod(0o644)
        resolved = _installed_packages(tmp)
    write_text(
        record_path,
        json.dumps({"key": key, "depends": depends, "resolved": resolved}, indent=2) + "\n",
    )
    log.info("%s: build-deps chroot ready in %.0f s", dist.name, time.monotonic() - started)
    return DepsChroot(tarball, key, resolved)


def sbuild_cmdline(
    dsc: Path,
    dist: Distribution,
    chroot: Path,
    build_dir: Path,
    *,
    jobs: int = 0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """sbuild in unshare mode on a prepared chroot; the network stays off while compiling."""
    cmd = [
        "sbuild",
        "--chroot-mode=unshare",
        f"--chroot={chroot}",
        f"--dist={dist.name}",
        f"--arch={dist.arch}",
        f"--build-dir={build_dir}",
        "--arch-any",
        "--arch-all",
        "--no-source",
        "--no-apt-update",
        "--no-apt-upgrade",
        "--no-apt-distupgrade",
        "--no-run-lintian",
        "--no-run-piuparts",
        "--no-run-autopkgtest",
        "--nolog",
    ]
    if jobs:
        cmd.append(f"--jobs={jobs}")
    return [*cmd, *extra_args, str(dsc)]


def dsc_files(dsc: Path) -> list[Path]:
    """The .dsc and every file it lists, which must sit beside it."""
    with dsc.open() as f:
        para = deb822.Dsc(f)
    return [dsc, *(dsc.parent / entry["name"] for entry in para.get("Files", []))]


def is_readable_by(user: str, path: Path) -> bool:
    """Whether `user` can read `path` (CI clones may live under /root, which it cannot)."""
    return run.run(["test", "-r", path], user=user, check=False).returncode == 0


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_stages(root: Path) -> None:
    """Remove stage folders whose pfbuild process is gone (killed mid-build)."""
    for stage in root.glob("*-*") if root.is_dir() else []:
        pid = stage.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _is_alive(int(pid)):
            remove_path(stage)


def make_stage_dir(ctx: Context, name: str) -> Path:
    """A fresh directory the build user owns, outside the (maybe unreadable) workspace."""
    remove_stale_stages(ctx.stage_root)
    stage = ctx.stage_root / f"{name}-{os.getpid()}"
    remove_path(stage)
    stage.mkdir(parents=True)
    ctx.stage_root.chmod(0o1777)
    if os.geteuid() == 0:
        shutil.chown(stage, user=ctx.build_user, group=ctx.build_user)
    return stage


@dataclass(frozen=True)
class BuildResult:
    """What one sbuild run left in the workspace."""

    target: str
    out_dir: Path
    key: str
    files: tuple[str, ...]
    reused: bool

    @property
    def log_path(self) -> Path:
        return self.out_dir / "build.log"


@dataclass(frozen=True)
class SbuildVariant:
    """A deliberately different sbuild run of the same .dsc (verify-reproducible's build B).

    It never reuses an earlier result and keeps its own stage folder and live log, so the
    normal build's results and log stay untouched.
    """

    name: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def build_key(dsc: Path, deps: DepsChroot) -> str:
    """Identity of a build: every source file's hash, the chroot, and sbuild's version."""
    digest = hashlib.sha256()
    for path in dsc_files(dsc):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(deps.key.encode())
    digest.update(run.output(["dpkg-query", "-W", "-f", "${Version}", "sbuild"]).encode())
    return digest.hexdigest()[:16]


def _read_result(out_dir: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads((out_dir / "result.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def build_package(
    ctx: Context,
    recipe: str,
    dsc: Path,
    dist: Distribution,
    out_dir: Path,
    *,
    jobs: int = 0,
    variant: SbuildVariant | None = None,
) -> BuildResult:
    """Build `dsc` for `dist` into `out_dir`, or say it is already built from the same inputs."""
    deps = ensure_deps_chroot(ctx, dist, recipe, dsc)
    key = build_key(dsc, deps)
    previous = _read_result(out_dir)
    if variant is None and previous.get("key") == key:
        log.info("%s: %s already built from the same inputs, nothing to do", dist.name, dsc.name)
        files = previous.get("files")
        names = tuple(str(f) for f in files) if isinstance(files, list) else ()
        return BuildResult(dist.name, out_dir, key, names, True)
    label = f"{recipe}-{dist.name}" + (f"-{variant.name}" if variant else "")
    stage = make_stage_dir(ctx, label)
    try:
        for path in dsc_files(dsc):
            link_or_copy(path, stage / path.name)
        chroot = deps.path
        if not is_readable_by(ctx.build_user, chroot):
            chroot = stage / deps.path.name
            link_or_copy(deps.path, chroot)
        build_dir = stage / "out"
        build_dir.mkdir()
        if os.geteuid() == 0:
            # Only the folder sbuild writes: the inputs are hard links to the workspace's own
            # files, which must stay root's; the build user only reads them.
            shutil.chown(build_dir, user=ctx.build_user, group=ctx.build_user)
        log.info("%s: sbuild %s (log %s)", dist.name, dsc.name, ctx.logs_dir)
        started = time.monotonic()
        live_log = ctx.logs_dir / f"sbuild-{label}.log"
        extra_args = variant.args if variant else ()
        try:
            run.run(
                sbuild_cmdline(
                    stage / dsc.name, dist, chroot, build_dir, jobs=jobs, extra_args=extra_args
                ),
                user=ctx.build_user,
                env=dict(variant.env) if variant else None,
                cwd=stage,
                log_path=live_log,
            )
        except PfbuildError as exc:
            raise PfbuildError(
                f"sbuild failed for {dsc.name} on {dist.name}",
                f"see the build log {live_log}",
                "fix the package; the previous results in the workspace are untouched",
                details=exc.details,
            ) from None
        with atomic_dir(out_dir) as tmp:
            files = sorted(p.name for p in build_dir.iterdir() if p.suffix in RESULT_SUFFIXES)
            for name in files:
                shutil.copy2(build_dir / name, tmp / name)
            shutil.copy2(live_log, tmp / "build.log")
            result = {"key": key, "files": files, "target": dist.name, "deps": asdict(deps)}
            if variant:
                result["variant"] = asdict(variant)
            (tmp / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        log.info("%s: built %d files in %.0f s", dist.name, len(files), time.monotonic() - started)
        return BuildResult(dist.name, out_dir, key, tuple(files), False)
    finally:
        remove_path(stage)
