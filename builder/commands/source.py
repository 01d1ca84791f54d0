"""`pfbuild source RECIPE VERSION [--target T]`: a .dsc per target with our overlays."""

from __future__ import annotations

import argparse

from builder.commands.common import add_recipe_arguments, add_target_argument, selected_targets
from builder.core.context import Context
from builder.model.loader import load_recipe
from builder.source.package import prepare_source, summary

NAME = "source"
HELP = "prepare the source package (.dsc, .debian.tar.xz, orig) per target with our overlays"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    add_target_argument(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    recipe.validate_version(args.version)
    for dist in selected_targets(ctx, args):
        dsc = prepare_source(ctx, recipe, args.version, dist)
        print(f"{dist.name}: {dsc}")
        print("".join(f"  changed {line}" for line in summary(dsc.parent).splitlines(True)), end="")
    return 0
