"""`pfbuild lint-config DIR`: the configuration gate for a Postfix 3.11 configuration directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from builder.check.config.lint import (
    format_finding,
    format_summary,
    lint_config,
    require_no_errors,
)
from builder.commands.exits import Exit
from builder.core.context import Context

NAME = "lint-config"
HELP = (
    "check a Postfix configuration directory (main.cf, master.cf, the tables they name) for "
    "Postfix 3.11 migration traps; exit 3 on any error-severity finding"
)


def config_directory(text: str) -> Path:
    """An argparse type: an existing directory (anything else is a usage error)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    return path


def readable_file(text: str) -> Path:
    """An argparse type: an existing file."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text!r}")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", type=config_directory, metavar="DIR",
        help="the configuration directory, e.g. /etc/postfix",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--postconf-d", type=readable_file, metavar="FILE",
        help="the output of `postconf -d` from the Postfix that will read DIR: names it does "
        "not know are reported (unknown-parameter)",
    )  # fmt: skip


def run(ctx: Context, args: argparse.Namespace) -> int:
    postconf_d = args.postconf_d.read_text(errors="replace") if args.postconf_d else None
    report = lint_config(args.directory, postconf_d)
    if args.json:
        print(json.dumps(report.as_json(), indent=2, sort_keys=True))
    else:
        for item in report.findings:
            print(format_finding(item))
        print(format_summary(report))
    require_no_errors(report)
    return Exit.OK
