"""`pfbuild check RECIPE VERSION [--target T]`: the hardening report per target, and its verdict."""

from __future__ import annotations

import argparse

from builder.check.hardening import (
    PROPERTIES,
    check_build,
    format_table,
    require_passed,
    write_report,
)
from builder.commands.common import add_target_argument, selected_targets
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.model.recipe import load_recipe
from builder.publish.artifact import export_build, has_result

NAME = "check"
HELP = "write the hardening report of built packages and fail on missing expected hardening"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the recipe name (for example postfix)")
    parser.add_argument("version", help="the upstream version that was built")
    add_target_argument(parser)
    parser.add_argument(
        "--expect", metavar="PROPS",
        help=f"comma-separated properties to require instead of the recipe's "
        f"({','.join(PROPERTIES)})",
    )  # fmt: skip


def parse_expect(text: str) -> frozenset[str]:
    """`pie,relro` -> frozenset; an empty string expects nothing."""
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def recipe_expectations(recipe_name: str, dist: Distribution) -> frozenset[str]:
    """The recipe's expected hardening for this target and its architecture."""
    recipe = load_recipe(recipe_name)
    try:
        return frozenset(recipe.expected_hardening[dist.name][dist.arch])
    except KeyError:
        raise PfbuildError(
            f"recipe {recipe_name!r} has no expected hardening for {dist.name}/{dist.arch}",
            fix=f"add expected_hardening[{dist.name!r}][{dist.arch!r}] to the recipe",
        ) from None


def run(ctx: Context, args: argparse.Namespace) -> int:
    failed = []
    for dist in selected_targets(ctx, args):
        expected = (
            parse_expect(args.expect)
            if args.expect is not None
            else recipe_expectations(args.recipe, dist)
        )
        build_dir = ctx.build_dir(args.recipe, args.version, dist.name)
        report = check_build(ctx, build_dir, dist, dist.arch, expected)
        report_dir = ctx.report_dir(args.recipe, args.version, dist.name)
        write_report(report, report_dir)
        print(format_table(report))
        print(f"report: {report_dir / 'hardening.json'}")
        if has_result(build_dir):
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
            "see " + ", ".join(str(d / "hardening.txt") for _, d in failed),
        )
    return 0
