"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse

from builder.core.context import Context
from builder.model.distro import TARGETS, Distribution, get_target


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0 (a negative one is a usage error, never clamped)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0 picks a free one)."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0 to 65535, got {value}")
    return value


def add_jobs_argument(parser: argparse.ArgumentParser) -> None:
    """`--jobs N`: compiler jobs per build, as sbuild and debuild mean it."""
    parser.add_argument(
        "--jobs",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="compiler jobs per build, passed to sbuild as --jobs=N (default 0: no --jobs; the "
        "package's rules decide, postfix's run make -j on every core)",
    )


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """`RECIPE VERSION`, as every per-recipe stage command takes them."""
    parser.add_argument("recipe", help="recipe name, e.g. postfix or mimalloc-secure")
    parser.add_argument("version", help="upstream version, e.g. 3.11.6")


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
