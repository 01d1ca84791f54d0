"""`pfbuild check RECIPE VERSION [--target T]`: the hardening report per target, and its verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.check.autopkgtest import (
    AUTOPKGTEST_JSON,
    AutopkgtestReport,
    discard_autopkgtest_report,
    require_autopkgtest_passed,
)
from builder.check.config.lint import ConfigReport, format_finding, format_summary
from builder.check.config.packaged import require_clean
from builder.check.judge import PROPERTIES
from builder.check.lifecycle import LifecycleReport, require_lifecycle_passed
from builder.check.report import REPORT_JSON, REPORT_TEXT, format_table, require_passed
from builder.check.stage import (
    autopkgtest_target,
    check_target,
    config_gate_target,
    lifecycle_target,
)
from builder.commands.common import add_recipe_arguments, add_target_argument, selected_targets
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.publish.artifact import export_build, has_result

NAME = "check"
HELP = (
    "write the hardening report of built packages and fail on missing expected hardening; "
    "run the packaging's own autopkgtests on them"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    add_target_argument(parser)
    parser.add_argument(
        "--expect", metavar="PROPS",
        help=f"comma-separated properties to require instead of the recipe's "
        f"({','.join(PROPERTIES)})",
    )  # fmt: skip
    parser.add_argument(
        "--no-autopkgtest", action="store_true",
        help="only the hardening check: skip Debian's QA (autopkgtests, the packaged "
        "configuration gate, install/upgrade/purge); a release never does",
    )  # fmt: skip


def parse_expect(text: str) -> frozenset[str]:
    """`pie,relro` -> frozenset; an empty string expects nothing."""
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def run(ctx: Context, args: argparse.Namespace) -> int:
    expected = parse_expect(args.expect) if args.expect is not None else None
    failed = []
    qa_failed: list[tuple[AutopkgtestReport, Path]] = []
    gates: list[tuple[ConfigReport, str]] = []
    cycles: list[tuple[LifecycleReport, Path]] = []
    for dist in selected_targets(ctx, args):
        report, report_dir = check_target(ctx, args.recipe, args.version, dist, expected)
        print(format_table(report))
        print(f"report: {report_dir / REPORT_JSON}")
        print()
        if args.no_autopkgtest or report.verdict != "pass":
            # A report of an earlier run would describe other packages: it must not travel.
            discard_autopkgtest_report(report_dir)
        if report.verdict != "pass":
            failed.append((report, report_dir))
        elif not args.no_autopkgtest:
            tests, _ = autopkgtest_target(ctx, args.recipe, args.version, dist)
            print("\n".join(tests.lines()))
            print(f"autopkgtest report: {report_dir / AUTOPKGTEST_JSON}")
            print()
            if tests.verdict not in ("pass", "none"):
                qa_failed.append((tests, report_dir))
            gate = config_gate_target(ctx, args.recipe, args.version, dist)
            if gate is not None:
                print(f"configuration gate, packaged main.cf/master.cf: {format_summary(gate)}")
                print("\n".join(format_finding(f) for f in gate.findings))
                gates.append((gate, dist.name))
            cycle = lifecycle_target(ctx, args.recipe, args.version, dist)
            if cycle is not None:
                print("\n".join(cycle.lines()))
                print()
                cycles.append((cycle, report_dir))
        if has_result(ctx.build_dir(args.recipe, args.version, dist.name)):
            # The build's artifact folder carries the reports and verdicts from now on.
            print(f"artifact: {export_build(ctx, args.recipe, args.version, dist.name)}")
            print()
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
    for tests, report_dir in qa_failed:
        require_autopkgtest_passed(tests, report_dir)
    for gate, target in gates:
        require_clean(gate, target)
    for cycle, report_dir in cycles:
        require_lifecycle_passed(cycle, report_dir)
    return 0
