"""Build a .dsc with sbuild's unshare mode, as the unprivileged build user, in a deps chroot."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from debian import deb822

from builder.build import ccache
from builder.build.depschroot import DepsChroot, ensure_deps_chroot
from builder.build.stagedir import give_to_build_user, is_readable_by, make_stage_dir
from builder.core import run
from builder.core.atomic import atomic_dir, is_alive, link_or_copy, remove_path
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

RESULT_SUFFIXES = (".deb", ".udeb", ".ddeb", ".changes", ".buildinfo")
# One build path for every build (sbuild's default has a random part): the compiler cache
# hits only when a source compiles in the same folder with the same -ffile-prefix-map.
# Newer sbuild uses this very path by default.
BUILD_PATH = "/build/reproducible-path"
# Where sbuild unpacks the chroot tarball when memory has room: its default, /tmp, is on disk,
# where unpacking a deps chroot costs 10 s and more of every build (measured: tar at 100 % CPU
# for 11 s here), and the build tree is written there too.
UNPACK_IN_MEMORY = Path("/dev/shm")  # noqa: S108 - sbuild makes its folder with mkdtemp
UNPACK_PREFIX = "pfbuild-sbuild-"
UNPACK_MIN_FREE = 6 << 30


def remove_stale_unpacks(root: Path = UNPACK_IN_MEMORY) -> None:
    """Remove chroots a killed build left in memory (named by the pfbuild process)."""
    for path in root.glob(f"{UNPACK_PREFIX}*-*"):
        pid = path.name.removeprefix(UNPACK_PREFIX).split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not is_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def unpack_prefix(label: str) -> str:
    """The name every in-memory chroot of one build starts with: our pid, then the build."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return f"{UNPACK_PREFIX}{os.getpid()}-{safe}-"


def unpack_template(
    label: str, root: Path = UNPACK_IN_MEMORY, min_free: int = UNPACK_MIN_FREE
) -> str | None:
    """sbuild's UNSHARE_TMPDIR_TEMPLATE: in memory when it has room, else sbuild's default."""
    remove_stale_unpacks(root)
    try:
        stat = os.statvfs(root)
    except OSError:
        return None
    if stat.f_bavail * stat.f_frsize < min_free:
        return None
    return str(root / f"{unpack_prefix(label)}XXXXXXXXXX")


def remove_unpacks_of(label: str, root: Path = UNPACK_IN_MEMORY) -> None:
    """Remove what a failed sbuild run of this build left in memory (sbuild leaves its chroot
    when it could not set the session up)."""
    for path in root.glob(f"{unpack_prefix(label)}*"):
        shutil.rmtree(path, ignore_errors=True)


def is_session_failure(log_text: str) -> bool:
    """Whether sbuild failed before building: it could not set up the chroot session."""
    return "\nFail-Stage: create-session\n" in log_text


def sbuild_config(lines: str, template: str | None) -> str:
    """The sbuild configuration file (Perl) of one run: `lines` (a variant's own configuration,
    ccache's), then where to unpack. sbuild reads one SBUILD_CONFIG file, as text in the scope
    of its settings, so a variant's file is copied in, not included with `do`."""
    text = "# Written by pfbuild for one sbuild run.\n" + lines
    if template:
        text += f"$unshare_tmpdir_template = {ccache.perl_string(template)};\n"
    return text + "1;\n"


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
        f"--build-path={BUILD_PATH}",
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


@dataclass(frozen=True)
class BuildResult:
    """What one sbuild run left in the workspace."""

    target: str
    out_dir: Path
    key: str
    files: tuple[str, ...]
    reused: bool
    ccache: ccache.CcacheStats | None = None

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
    use_ccache: bool = True,
) -> BuildResult:
    """Build `dsc` for `dist` into `out_dir`, or say it is already built from the same inputs.

    The compiler cache is used unless `use_ccache` is false or a variant is built (a variant
    is verify-reproducible's build B, which must not share anything with build A).
    """
    use_ccache = use_ccache and variant is None
    deps = ensure_deps_chroot(ctx, dist, recipe, dsc)
    key = build_key(dsc, deps)
    previous = _read_result(out_dir)
    if variant is None and previous.get("key") == key:
        log.info("%s: %s already built from the same inputs, nothing to do", dist.name, dsc.name)
        files = previous.get("files")
        names = tuple(str(f) for f in files) if isinstance(files, list) else ()
        stats = ccache.recorded_stats(previous.get("ccache"))
        return BuildResult(dist.name, out_dir, key, names, True, stats)
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
        # Only the folder sbuild writes: the inputs are hard links to the workspace's own
        # files, which must stay root's; the build user only reads them.
        give_to_build_user(ctx, build_dir)
        log.info("%s: sbuild %s (log %s)", dist.name, dsc.name, ctx.logs_dir)
        started = time.monotonic()
        live_log = ctx.logs_dir / f"sbuild-{label}.log"
        extra_args = variant.args if variant else ()
        env = dict(variant.env) if variant else {}
        cache_dir = ccache.cache_dir(ctx, dist) if use_ccache else None
        stats_name = f"stats-{label}-{os.getpid()}.log"
        config = stage / "sbuild.conf"
        lines = Path(env["SBUILD_CONFIG"]).read_text() if "SBUILD_CONFIG" in env else ""
        if cache_dir:
            lines += ccache.sbuild_config(cache_dir, stats_name)
        config.write_text(sbuild_config(lines, unpack_template(label)))
        env["SBUILD_CONFIG"] = str(config)
        cmd = sbuild_cmdline(
            stage / dsc.name, dist, chroot, build_dir, jobs=jobs, extra_args=extra_args
        )
        try:
            try:
                run.run(cmd, user=ctx.build_user, env=env or None, cwd=stage, log_path=live_log)
            except PfbuildError:
                # Seen once, in CI with an action beside the build: the tar that unpacks the
                # chroot ended early (sbuild: "Received PIPE signal"), before any build step.
                # Nothing was built, so the run is tried once more.
                if not is_session_failure(live_log.read_text(errors="replace")):
                    raise
                log.warning("%s: sbuild could not set up the chroot; trying once more", dist.name)
                remove_unpacks_of(label)
                run.run(cmd, user=ctx.build_user, env=env or None, cwd=stage, log_path=live_log)
        except PfbuildError as exc:
            remove_unpacks_of(label)
            if cache_dir:
                ccache.collect_stats(cache_dir, stats_name)
            raise PfbuildError(
                f"sbuild failed for {dsc.name} on {dist.name}",
                f"see the build log {live_log}",
                "fix the package; the previous results in the workspace are untouched",
                details=exc.details,
            ) from None
        stats = ccache.collect_stats(cache_dir, stats_name) if cache_dir else None
        with atomic_dir(out_dir) as tmp:
            files = sorted(p.name for p in build_dir.iterdir() if p.suffix in RESULT_SUFFIXES)
            for name in files:
                shutil.copy2(build_dir / name, tmp / name)
            shutil.copy2(live_log, tmp / "build.log")
            result = {
                "key": key,
                "files": files,
                "target": dist.name,
                "deps": asdict(deps),
                "ccache": asdict(stats) if stats else None,
            }
            if variant:
                result["variant"] = asdict(variant)
            (tmp / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        log.info("%s: built %d files in %.0f s", dist.name, len(files), time.monotonic() - started)
        return BuildResult(dist.name, out_dir, key, tuple(files), False, stats)
    finally:
        remove_path(stage)
