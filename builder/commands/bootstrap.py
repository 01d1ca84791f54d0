"""`pfbuild bootstrap [--target T]`: make the base build environments of each target."""

from __future__ import annotations

import argparse

from builder.bootstrap.buildenv import bootstrap
from builder.commands.common import add_target_argument, selected_targets
from builder.core.context import Context

NAME = "bootstrap"
HELP = "make (or reuse) the sbuild chroot tarball and Docker base image of each target"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_argument(parser)
    parser.add_argument(
        "--no-image", action="store_true", help="only the sbuild chroot tarballs, no Docker images"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    made = bootstrap(ctx, selected_targets(ctx, args), images=not args.no_image)
    for target, envs in made.items():
        for kind, ref in envs.items():
            print(f"{target:10}{kind:8}{ref}")
    return 0
