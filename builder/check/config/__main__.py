"""`python3 -m builder.check.config DIR`: the configuration gate alone, as the image runs it.

The image carries the gate's modules and python3, not pfbuild or its dependencies, so this
entry point uses the standard library only. Exit 0: no error-severity finding; 3: at least
one (or DIR cannot be read); 2: usage.
"""

from __future__ import annotations

import dataclasses
import getopt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.check.config.lint import format_finding, format_summary, lint_config
from builder.core.errors import PfbuildError

PROG = "pfbuild-lint-config"
# getopt, not argparse: the image runs this at every start, and argparse alone costs more
# to import than the gate's own checks take.
USAGE = f"""usage: {PROG} [--postconf-d FILE] [--tables TABLES] [--label LABEL] DIR

Check a Postfix configuration directory (DIR holds main.cf, master.cf) for Postfix 3.11
migration traps.

  --postconf-d FILE  `postconf -d` of the Postfix that will read DIR: unknown names are reported
  --tables TABLES    where files named under $config_directory are read (default: DIR)
  --label LABEL      the name the summary line gives DIR
"""


@dataclass(frozen=True)
class Args:
    """The command line, parsed."""

    directory: Path
    postconf_d: Path | None = None
    tables: Path | None = None
    label: str | None = None


class UsageError(Exception):
    """A command line that does not parse (exit 2)."""


def parse_args(argv: Sequence[str]) -> Args:
    """DIR and the options; UsageError on anything else."""
    try:
        opts, rest = getopt.gnu_getopt(list(argv), "", ["postconf-d=", "tables=", "label="])
    except getopt.GetoptError as e:
        raise UsageError(str(e)) from None
    if len(rest) != 1:
        raise UsageError("expected one configuration directory, DIR")
    given = dict(opts)
    return Args(
        directory=Path(rest[0]),
        postconf_d=Path(given["--postconf-d"]) if "--postconf-d" in given else None,
        tables=Path(given["--tables"]) if "--tables" in given else None,
        label=given.get("--label"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(USAGE, end="")
        return 0
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"{USAGE.splitlines()[0]}\n{PROG}: error: {e}", file=sys.stderr)
        return 2
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
