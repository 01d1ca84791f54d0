"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse

from builder.core.context import Context
from builder.model.distro import TARGETS, Distribution, get_target


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    """`--target T` (repeatable); none means every target."""
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="T",
        help=f"a target distribution ({', '.join(TARGETS)}); repeatable; default: all",
    )


def selected_targets(ctx: Context, args: argparse.Namespace) -> list[Distribution]:
    """The targets the user asked for, with their archive overrides applied."""
    names: list[str] = args.target or list(TARGETS)
    return [get_target(name, ctx.archive_override(name)) for name in dict.fromkeys(names)]
