"""`pfbuild check RECIPE VERSION [--target T]`: the hardening report per target, and its verdict."""

from __future__ import annotations

import argparse

from builder.check.judge import PROPERTIES
from builder.check.report import REPORT_JSON, REPORT_TEXT, format_table, require_passed
from builder.check.stage import check_target
from builder.commands.common import add_recipe_arguments, add_target_argument, selected_targets
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.publish.artifact import export_build, has_result

NAME = "check"
HELP = "write the hardening report of built packages and fail on missing expected hardening"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    add_target_argument(parser)
    parser.add_argument(
        "--expect", metavar="PROPS",
        help=f"comma-separated properties to require instead of the recipe's "
        f"({','.join(PROPERTIES)})",
    )  # fmt: skip


def parse_expect(text: str) -> frozenset[str]:
    """`pie,relro` -> frozenset; an empty string expects nothing."""
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def run(ctx: Context, args: argparse.Namespace) -> int:
    expected = parse_expect(args.expect) if args.expect is not None else None
    failed = []
    for dist in selected_targets(ctx, args):
        report, report_dir = check_target(ctx, args.recipe, args.version, dist, expected)
        print(format_table(report))
        print(f"report: {report_dir / REPORT_JSON}")
        if has_result(ctx.build_dir(args.recipe, args.version, dist.name)):
            # The build's artifact folder carries the report and its verdict from now on.
            print(f"artifact: {export_build(ctx, args.recipe, args.version, dist.name)}")
        print()
        if report.verdict != "pass":
            failed.append((report, report_dir))
    # Every target's report is written before a failure is raised.
    if len(failed) == 1:
        require_passed(*failed[0])
    if failed:
        raise PfbuildError(
            "hardening check failed for "
            + "; ".join(f"{r.target}: {', '.join(r.offending_files[:4])}" for r, _ in failed),
            f"{sum(len(r.failures) for r, _ in failed)} problem(s)",
            "see " + ", ".join(str(d / REPORT_TEXT) for _, d in failed),
        )
    return 0
