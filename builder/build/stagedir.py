"""Stage folders: where the unprivileged build user gets its inputs, outside the workspace."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from builder.core import run
from builder.core.atomic import is_alive, remove_path
from builder.core.context import Context


def is_readable_by(user: str, path: Path) -> bool:
    """Whether `user` can read `path` (CI clones may live under /root, which it cannot)."""
    return run.run(["test", "-r", path], user=user, check=False).returncode == 0


def give_to_build_user(ctx: Context, *paths: Path) -> None:
    """Hand `paths` to the build user when pfbuild runs as root (otherwise they are ours)."""
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, user=ctx.build_user, group=ctx.build_user)


def remove_stale_stages(root: Path) -> None:
    """Remove stage folders whose pfbuild process is gone (killed mid-build)."""
    for stage in root.glob("*-*") if root.is_dir() else []:
        pid = stage.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not is_alive(int(pid)):
            remove_path(stage)


def make_stage_dir(ctx: Context, name: str) -> Path:
    """A fresh directory the build user owns, outside the (maybe unreadable) workspace."""
    remove_stale_stages(ctx.stage_root)
    stage = ctx.stage_root / f"{name}-{os.getpid()}"
    remove_path(stage)
    stage.mkdir(parents=True)
    ctx.stage_root.chmod(0o1777)
    give_to_build_user(ctx, stage)
    return stage
