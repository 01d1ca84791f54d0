"""`pfbuild fetch RECIPE VERSION`: download, verify and cache a recipe's sources."""

from __future__ import annotations

import argparse

from builder.commands.common import add_recipe_arguments
from builder.core.context import Context
from builder.fetch.sources import describe, fetch
from builder.model.loader import load_recipe

NAME = "fetch"
HELP = "download and verify a recipe's sources into the content-addressed cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    result = fetch(ctx, recipe, args.version)
    print(describe(result))
    return 0
