"""`python3 -m builder.check.config DIR`: the configuration gate alone, as the image runs it.

The image carries the gate's modules and python3, not pfbuild or its dependencies, so this
entry point uses the standard library only. Exit 0: no error-severity finding; 3: at least
one (or DIR cannot be read); 2: usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from builder.check.config.lint import format_finding, format_summary, lint_config
from builder.core.errors import PfbuildError

PROG = "pfbuild-lint-config"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check a Postfix configuration directory for Postfix 3.11 migration traps.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="holds main.cf, master.cf")
    parser.add_argument(
        "--postconf-d", type=Path, metavar="FILE",
        help="`postconf -d` of the Postfix that will read DIR: unknown names are reported",
    )  # fmt: skip
    parser.add_argument(
        "--tables", type=Path, metavar="TABLES",
        help="where files named under $config_directory are read (default: DIR)",
    )  # fmt: skip
    parser.add_argument("--label", help="the name the summary line gives DIR")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        postconf_d = args.postconf_d.read_text(errors="replace") if args.postconf_d else None
        report = lint_config(args.directory, postconf_d, args.tables)
    except PfbuildError as e:
        print(f"{PROG}: error: {e.one_line()}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"{PROG}: error: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 3
    for item in report.findings:
        print(format_finding(item))
    if args.label:
        report = dataclasses.replace(report, directory=Path(args.label))
    print(format_summary(report))
    return 3 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
