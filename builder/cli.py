"""The `pfbuild` command line: global options, one subcommand per stage, errors and exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TextIO

from builder import __version__
from builder.commands import (
    bootstrap,
    build,
    check,
    check_updates,
    check_upstream,
    doctor,
    fetch,
    image,
    lint_config,
    manifest,
    matrix,
    publish,
    release,
    serve,
    source,
    verify,
    verify_reproducible,
)
from builder.commands.exits import Exit, exit_table
from builder.core.atomic import remove_stale_temps
from builder.core.context import (
    DEFAULT_BUILD_USER,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_WORKSPACE,
    Context,
    prepare_workspace,
)
from builder.core.errors import PfbuildError
from builder.model.distro import get_target

COMMANDS: tuple[ModuleType, ...] = (
    doctor,
    bootstrap,
    fetch,
    source,
    build,
    check,
    publish,
    serve,
    image,
    release,
    manifest,
    check_upstream,
    check_updates,
    matrix,
    verify_reproducible,
    lint_config,
    verify,
)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected TARGET=VALUE, got {text!r}")
    return key, value


def _env_pairs(prefix: str) -> list[tuple[str, str]]:
    return [
        (k[len(prefix) :].lower(), v) for k, v in os.environ.items() if k.startswith(prefix) and v
    ]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand that exists."""
    parser = argparse.ArgumentParser(
        prog="pfbuild",
        description="Turn an upstream Postfix release into hardened .debs, a signed apt "
        "repository and container images.",
        epilog=exit_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pfbuild {__version__}")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path(os.environ.get("PFBUILD_WORKSPACE", str(DEFAULT_WORKSPACE))),
        help="where every output and cache lives (env PFBUILD_WORKSPACE; default ./pfbuild-work)",
    )
    parser.add_argument("--debug", action="store_true", help="log every command; show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument(
        "--archive",
        type=_pair,
        action="append",
        default=[],
        metavar="TARGET=URL",
        help="read TARGET from another archive (a local mirror or snapshot; "
        "env PFBUILD_ARCHIVE_<TARGET>)",
    )
    parser.add_argument(
        "--keyring-deb",
        type=_pair,
        action="append",
        default=[],
        metavar="TARGET=DEB",
        help="take TARGET's archive keyring from this local .deb (still checked by fingerprint)",
    )
    parser.add_argument(
        "--max-age-days",
        type=float,
        default=float(os.environ.get("PFBUILD_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS)),
        help="rebuild base environments older than this (env PFBUILD_MAX_AGE_DAYS; default 7)",
    )
    parser.add_argument(
        "--build-user",
        default=os.environ.get("PFBUILD_BUILD_USER", DEFAULT_BUILD_USER),
        help="the unprivileged user sbuild runs as (default pfbuild)",
    )
    parser.add_argument(
        "--docker-host",
        default=os.environ.get("DOCKER_HOST"),
        help="the Docker Engine to use (default: DOCKER_HOST or the local socket)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        cmd_parser = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd_parser)
        uses_workspace = getattr(module, "USES_WORKSPACE", True)
        cmd_parser.set_defaults(handler=module.run, uses_workspace=uses_workspace)
    return parser


def make_context(args: argparse.Namespace) -> Context:
    """Validate the global options and build the one Context of this run.

    A command that declares USES_WORKSPACE = False (`verify`) gets a Context whose workspace is
    neither made nor touched.
    """
    archives = [*_env_pairs("PFBUILD_ARCHIVE_"), *args.archive]
    keyring_debs = [(t, Path(p).absolute()) for t, p in args.keyring_deb]
    for target, _ in [*archives, *keyring_debs]:
        get_target(target)
    if args.max_age_days < 0:
        raise PfbuildError(
            f"--max-age-days must not be negative, got {args.max_age_days}",
            fix="pass 0 to always rebuild, or a number of days",
        )
    uses_workspace = getattr(args, "uses_workspace", True)
    workspace = args.workspace.expanduser().absolute()
    ctx = Context(
        workspace=prepare_workspace(workspace) if uses_workspace else workspace,
        archive_overrides=tuple(archives),
        max_age_days=args.max_age_days,
        build_user=args.build_user,
        keyring_debs=tuple(keyring_debs),
        docker_host=args.docker_host,
    )
    # What killed runs left in tmp/ (fetch-*, source-*, ...) goes once its process is gone.
    if uses_workspace:
        remove_stale_temps(ctx.tmp_root)
    return ctx


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now, not the stream it was made with.

    main() runs many times in one process under test, each with its own captured stderr; a
    handler holding the first one would write to a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("pfbuild: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one pfbuild command; only this function prints errors and picks exit codes."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return Exit.OK if exc.code == 0 else Exit.USAGE
    _setup_logging(args.debug, args.quiet)
    try:
        ctx = make_context(args)
        result: int = args.handler(ctx, args)
        return result
    except PfbuildError as exc:
        if args.debug:
            traceback.print_exc()
        elif exc.details:
            print(exc.details, file=sys.stderr)
        print(f"pfbuild: error: {exc.one_line()}", file=sys.stderr)
        return Exit.REFUSED
    except BrokenPipeError:
        # Output piped into `head` and the like: the reader left, nothing is wrong.
        sys.stderr.close()
        return Exit.OK
    except KeyboardInterrupt:
        print("pfbuild: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(
            f"pfbuild: internal error: {type(exc).__name__}: {exc} (run with --debug for the "
            "traceback, and report it)",
            file=sys.stderr,
        )
        return Exit.INTERNAL
