"""`pfbuild check-upstream RECIPE`: is there a release newer than the last one we published?"""

from __future__ import annotations

import argparse
import json

from builder.commands.common import add_listing_arguments
from builder.commands.exits import Exit
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.loader import load_recipe
from builder.pipeline.updates import check_upstream, newest_from_debian

NAME = "check-upstream"
HELP = (
    "find the newest upstream release of a recipe's series; exit 0 when it is newer than the "
    f"last published release, {int(Exit.NOT_NEWER)} when not"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the recipe, e.g. postfix")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_listing_arguments(parser)
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="do not fall back to the Debian archive's signed Sources index",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise PfbuildError("--timeout must be positive", fix="pass a number of seconds, e.g. 30")
    recipe = load_recipe(args.recipe)
    listings = tuple(args.listing_url) or recipe.release_listings
    fallback = None if args.no_fallback else newest_from_debian
    result = check_upstream(ctx, recipe, listings, timeout=args.timeout, fallback=fallback)
    if args.json:
        print(json.dumps(result.as_json(), sort_keys=True))
    else:
        last = f"the published {result.published}" if result.published else "nothing published"
        verdict = "newer than" if result.is_newer else "not newer than"
        print(f"{result.recipe} {result.version} ({result.found_at}) is {verdict} {last}")
    return Exit.OK if result.is_newer else Exit.NOT_NEWER
