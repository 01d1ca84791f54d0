"""`pfbuild build RECIPE VERSION [--target T]`: .debs per target with sbuild."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.build.stage import build_targets
from builder.commands.common import (
    add_ccache_argument,
    add_jobs_argument,
    add_recipe_arguments,
    add_target_argument,
    positive_int,
    selected_targets,
)
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.model.loader import load_recipe
from builder.pipeline.revisions import with_rebuild
from builder.publish.artifact import export_build
from builder.source.package import prepare_source

NAME = "build"
HELP = (
    "build the .debs of a recipe for each target with sbuild (unshare mode); each build also "
    "leaves a self-describing artifact folder for `pfbuild publish --from`"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    add_target_argument(parser)
    add_jobs_argument(parser)
    add_ccache_argument(parser)
    parser.add_argument(
        "--rebuild",
        type=positive_int,
        metavar="N",
        help="the rebuild counter (+pfN) the live repository asks for (`pfbuild matrix --base`); "
        "default: the recipe's",
    )
    parser.add_argument(
        "--parallel",
        type=positive_int,
        default=1,
        metavar="N",
        help="targets built side by side (default 1); with --jobs 0 they share the cores",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    recipe.validate_version(args.version)
    if args.rebuild is not None:
        if args.rebuild < recipe.rebuild:
            raise PfbuildError(
                f"--rebuild {args.rebuild} is below {recipe.name}'s own counter {recipe.rebuild}",
                "the version would sort below builds already made",
                f"pass --rebuild {recipe.rebuild} or more",
            )
        recipe = with_rebuild(recipe, args.rebuild)
    targets = selected_targets(ctx, args)

    def source_for(dist: Distribution) -> Path:
        return prepare_source(ctx, recipe, args.version, dist)

    results = build_targets(
        ctx, recipe.name, args.version, targets, source_for,
        jobs=args.jobs, parallel=args.parallel, use_ccache=args.ccache,
    )  # fmt: skip
    for result in results:
        state = "unchanged" if result.reused else "built"
        artifact = export_build(ctx, recipe.name, args.version, result.target)
        print(f"{result.target:10}{state:10}{result.out_dir}  artifact {artifact}")
    return 0
