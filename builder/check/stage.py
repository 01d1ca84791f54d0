"""The check stage: one target's hardening report, written; the command and release call it."""

from __future__ import annotations

from pathlib import Path

from builder.check.autopkgtest import AutopkgtestReport, run_autopkgtests
from builder.check.config.lint import ConfigReport
from builder.check.config.packaged import gate_packaged_config
from builder.check.hardening import check_build
from builder.check.lifecycle import LifecycleReport, lifecycle_check
from builder.check.report import HardeningReport, write_report
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.model.loader import load_recipe


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


def check_target(
    ctx: Context,
    recipe_name: str,
    version: str,
    dist: Distribution,
    expected: frozenset[str] | None = None,
) -> tuple[HardeningReport, Path]:
    """Check one target's build (the recipe's expectations by default) and write its report."""
    # The verdict is returned, not raised: the command writes every target's report first.
    if expected is None:
        expected = recipe_expectations(recipe_name, dist)
    build_dir = ctx.build_dir(recipe_name, version, dist.name)
    report = check_build(ctx, build_dir, dist, dist.arch, expected)
    report_dir = ctx.report_dir(recipe_name, version, dist.name)
    write_report(report, report_dir)
    return report, report_dir


def autopkgtest_target(
    ctx: Context, recipe_name: str, version: str, dist: Distribution
) -> tuple[AutopkgtestReport, Path]:
    """Run the packaging's own autopkgtests on one target's build and write their report."""
    report_dir = ctx.report_dir(recipe_name, version, dist.name)
    report = run_autopkgtests(ctx, load_recipe(recipe_name), version, dist, report_dir)
    return report, report_dir


def config_gate_target(
    ctx: Context, recipe_name: str, version: str, dist: Distribution
) -> ConfigReport | None:
    """The configuration gate on what a new install of the recipe's main package writes.

    Only a recipe that packages Postfix (its `postfix_qa` field) has a configuration to judge.
    """
    recipe = load_recipe(recipe_name)
    if not recipe.postfix_qa:
        return None
    build_dir = ctx.build_dir(recipe_name, version, dist.name)
    report_dir = ctx.report_dir(recipe_name, version, dist.name)
    return gate_packaged_config(ctx, dist, build_dir, report_dir, recipe.berkeley_db)


def lifecycle_target(
    ctx: Context, recipe_name: str, version: str, dist: Distribution
) -> LifecycleReport | None:
    """Install, upgrade (from the distribution's postfix, from our previous revision), purge."""
    recipe = load_recipe(recipe_name)
    if not recipe.postfix_qa:
        return None
    build_dir = ctx.build_dir(recipe_name, version, dist.name)
    report_dir = ctx.report_dir(recipe_name, version, dist.name)
    return lifecycle_check(ctx, dist, build_dir, report_dir, recipe.berkeley_db)
