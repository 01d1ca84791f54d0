"""Build a .dsc with sbuild's unshare mode, as the unprivileged build user, in a deps chroot."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from debian import deb822

from builder.build.depschroot import DepsChroot, ensure_deps_chroot
from builder.build.stagedir import give_to_build_user, is_readable_by, make_stage_dir
from builder.core import run
from builder.core.atomic import atomic_dir, link_or_copy, remove_path
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

RESULT_SUFFIXES = (".deb", ".udeb", ".ddeb", ".changes", ".buildinfo")


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
        # Only the folder sbuild writes: the inputs are hard links to the workspace's own
        # files, which must stay root's; the build user only reads them.
        give_to_build_user(ctx, build_dir)
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
