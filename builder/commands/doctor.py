"""`pfbuild doctor [--fix]`: report (and fix) the host prerequisites."""

from __future__ import annotations

import argparse

from builder.core import doctor
from builder.core.context import Context
from builder.core.errors import PfbuildError

NAME = "doctor"
HELP = "check the host prerequisites (--fix installs and starts what is missing, as root)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fix",
        action="store_true",
        help="install missing packages, create the build user, start dockerd (root only)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    checks = doctor.run_checks(ctx)
    if args.fix and not all(c.ok for c in checks):
        checks = doctor.fix(ctx, checks)
    print(doctor.format_report(checks))
    missing = [c for c in checks if not c.ok]
    if missing:
        raise PfbuildError(
            f"{len(missing)} prerequisite(s) missing: "
            + "; ".join(f"{c.name} {c.detail}" for c in missing),
            fix="run `pfbuild doctor --fix` as root",
        )
    return 0
