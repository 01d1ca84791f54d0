"""`pfbuild fetch RECIPE VERSION`: download, verify and cache a recipe's sources."""

from __future__ import annotations

import argparse

from builder.core.context import Context
from builder.fetch.sources import describe, fetch
from builder.model.recipe import load_recipe

NAME = "fetch"
HELP = "download and verify a recipe's sources into the content-addressed cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe name, e.g. postfix or mimalloc-secure")
    parser.add_argument("version", help="upstream version, e.g. 3.11.6")


def run(ctx: Context, args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    result = fetch(ctx, recipe, args.version)
    print(describe(result))
    return 0
