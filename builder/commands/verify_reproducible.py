"""`pfbuild verify-reproducible RECIPE VERSION [--target T]`: build twice, compare every .deb."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.build.record import Verification
from builder.build.reproducible import verify_reproducible
from builder.commands.common import add_recipe_arguments, add_target_argument, selected_targets
from builder.commands.exits import Exit
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.core.lock import workspace_lock
from builder.model.loader import load_recipe
from builder.source.package import prepare_source

NAME = "verify-reproducible"
HELP = (
    "build a recipe's .dsc a second time with deliberate variations (build path, jobs, user, "
    "clock, time zone, locale, umask) and compare every .deb byte for byte; diffoscope explains "
    "differences; exit 0 when reproducible, 11 when not"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    add_target_argument(parser)
    parser.add_argument(
        "--dsc",
        type=Path,
        metavar="DSC",
        help="verify this .dsc instead of the recipe's (RECIPE and VERSION then only name the "
        "workspace folders); needs exactly one --target",
    )


def format_verification(result: Verification) -> list[str]:
    """One line per .deb, then the verdict line."""
    lines = []
    for pair in result.debs:
        line = f"{result.target:10}{pair.verdict:12}{pair.name}"
        finding = result.findings.get(pair.name)
        if finding and finding.get("text"):
            members = finding.get("members") or []
            shown = ", ".join(members[:3]) + (", ..." if len(members) > 3 else "")
            line += f"  diffoscope: {finding['text']}" + (f" ({shown})" if shown else "")
        elif finding:
            line += f"  diffoscope: {finding['status']}: {finding.get('why', '')}"
        lines.append(line)
    differing = [p for p in result.debs if p.verdict != "identical"]
    applied = [v["name"] for v in result.record["variations"] if v["applied"]]
    summary = f"{len(result.debs) - len(differing)} of {len(result.debs)} .debs identical"
    lines.append(
        f"{result.target:10}{result.verdict}: {summary} under {len(applied)} variations "
        f"({', '.join(applied)}); report {result.report}"
    )
    if result.no_diffoscope:
        lines.append(f"{result.target:10}no diffoscope report: {result.no_diffoscope}")
    if result.manifest:
        lines.append(f"{result.target:10}recorded in {result.manifest}")
    return lines


def run(ctx: Context, args: argparse.Namespace) -> int:
    targets = selected_targets(ctx, args)
    if args.dsc is not None and len(targets) != 1:
        raise PfbuildError("--dsc needs exactly one --target", fix="add --target T")
    if args.dsc is not None and not args.dsc.is_file():
        raise PfbuildError(f"no such .dsc: {args.dsc}", fix="pass the path of a .dsc")
    recipe = None
    if args.dsc is None:
        recipe = load_recipe(args.recipe)
        recipe.validate_version(args.version)
    verdicts = []
    # Build A is the workspace's normal build and the result lands in the release manifest:
    # the same things a release writes, so never both at once.
    with workspace_lock(ctx.release_lock, "release or verify-reproducible"):
        for dist in targets:
            if recipe is None:
                dsc = args.dsc.absolute()
            else:
                dsc = prepare_source(ctx, recipe, args.version, dist)
            result = verify_reproducible(ctx, args.recipe, args.version, dsc, dist)
            for line in format_verification(result):
                print(line, flush=True)
            verdicts.append(result.verdict)
    return Exit.OK if all(v == "reproducible" for v in verdicts) else Exit.NOT_REPRODUCIBLE
