"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from builder.core.context import Context
from builder.core.download import DEFAULT_TIMEOUT
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


def add_ccache_argument(parser: argparse.ArgumentParser) -> None:
    """`--no-ccache`: build without the compiler cache."""
    parser.add_argument(
        "--no-ccache",
        dest="ccache",
        action="store_false",
        help="build without the compiler cache (ccache, one per target in the workspace; "
        "builds give the same .debs with and without it)",
    )


PARALLEL_ENV = "PFBUILD_PARALLEL"
MEMORY_PER_ACTION = 4 << 30  # a build with its compilers, or a testbed container, at its peak
MAX_DEFAULT_PARALLEL = 4


def default_parallel(cores: int, available_memory: int | None) -> int:
    """Actions side by side by default: one per core and per 4 GiB available, 4 at most."""
    by_memory = cores if available_memory is None else available_memory // MEMORY_PER_ACTION
    return max(1, min(cores, by_memory, MAX_DEFAULT_PARALLEL))


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's estimate of memory available without swapping, in bytes (None: unknown)."""
    try:
        for line in meminfo.read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "MemAvailable":
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_parallel(environ: Mapping[str, str] = os.environ) -> str:
    """The --parallel default: PFBUILD_PARALLEL, else default_parallel for this host."""
    configured = environ.get(PARALLEL_ENV, "").strip()
    if configured:
        return configured
    # The cores this process may use: a container or taskset may allow fewer than the host has.
    return str(default_parallel(len(os.sched_getaffinity(0)), available_memory()))


def add_parallel_argument(parser: argparse.ArgumentParser) -> None:
    """`--parallel N`: independent actions run side by side."""
    parser.add_argument(
        "--parallel",
        type=positive_int,
        # A string default goes through `type`: a bad PFBUILD_PARALLEL is a usage error.
        default=host_parallel(),
        metavar="N",
        help="independent actions run side by side, at most N (env PFBUILD_PARALLEL; default "
        "one per core and per 4 GiB of available memory, at most 4: %(default)s here)",
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


def add_base_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`--base URL|DIR`: the live repository a command starts from (env PFBUILD_BASE)."""
    parser.add_argument(
        "--base",
        metavar="URL|DIR",
        default=os.environ.get("PFBUILD_BASE") or None,
        help=f"the live repository (what clients see), verified by the signing key's "
        f"fingerprint: {what} (env PFBUILD_BASE)",
    )


def add_listing_arguments(parser: argparse.ArgumentParser) -> None:
    """`--listing-url` and `--timeout`: where to look for upstream releases."""
    parser.add_argument(
        "--listing-url",
        action="append",
        default=[],
        metavar="URL",
        help="a release folder listing to read instead of the recipe's (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for each mirror (default {DEFAULT_TIMEOUT:g})",
    )
