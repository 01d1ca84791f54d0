"""`pfbuild matrix [VERSION]`: the GitHub Actions build matrix of a release (recipe x target)."""

from __future__ import annotations

import argparse
import json
import logging
import os

from builder.commands.common import add_base_argument
from builder.commands.exits import Exit
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import TARGETS
from builder.model.loader import load_recipe
from builder.pipeline.release import release_builds
from builder.pipeline.revisions import Revision, plan_revisions
from builder.publish.live import read_live

NAME = "matrix"
HELP = "print the GitHub Actions build matrix of a release: one job per recipe and target"
DEFAULT_RECIPE = "postfix"

log = logging.getLogger("pfbuild")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", nargs="?", help="the release (default: the newest pinned)")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="the main recipe (postfix)")
    parser.add_argument("--json", action="store_true", help="one line of JSON for $GITHUB_OUTPUT")
    add_base_argument(
        parser,
        "each job gets the rebuild counter it asks for; exit 10 when it has every build "
        "with the same inputs",
    )
    parser.add_argument(
        "--force-rebuild",
        action="store_true",
        help="with --base: every job gets its next rebuild counter, changed inputs or not",
    )


def release_matrix(recipe_name: str, version: str | None) -> dict[str, list[dict[str, str]]]:
    """{"include": [{recipe, version, target}, ...]} for the recipe and its companions."""
    main = load_recipe(recipe_name)
    if version is None:
        version = max(main.packaging, key=lambda v: tuple(int(p) for p in v.split(".")))
    jobs: list[dict[str, str]] = []
    for name, release in [(main.name, version), *main.companions]:
        recipe = load_recipe(name)
        # Refuses what cannot be built; the notes go to stderr, the matrix alone to stdout.
        for note in recipe.release_notes(release):
            log.warning("%s", note)
        # The order of TARGETS, not the recipe's: stable job names across recipes.
        for target in TARGETS:
            if target in recipe.binary_packages:
                jobs.append({"recipe": name, "version": release, "target": target})
    if not jobs:
        raise PfbuildError(
            f"{recipe_name} {version} builds for no known target",
            f"pfbuild knows {', '.join(TARGETS)}",
            "list a known target in the recipe's binary_packages",
        )
    return {"include": jobs}


def with_revisions(
    matrix: dict[str, list[dict[str, str]]], revisions: list[Revision]
) -> dict[str, list[dict[str, str]]]:
    """Each job with the rebuild counter the live repository asks for."""
    by_job = {(r.recipe, r.target): r for r in revisions}
    jobs = [
        {**job, "rebuild": str(by_job[(job["recipe"], job["target"])].rebuild)}
        for job in matrix["include"]
    ]
    return {"include": jobs}


def run(ctx: Context, args: argparse.Namespace) -> int:
    matrix = release_matrix(args.recipe, args.version)
    if args.base:
        live = read_live(ctx, args.base, os.environ)
        version = next(j["version"] for j in matrix["include"] if j["recipe"] == args.recipe)
        builds = release_builds(args.recipe, version)
        revisions = plan_revisions(
            live.history, builds, list(TARGETS.values()), force=args.force_rebuild
        )
        for rev in revisions:
            log.info("%s %s: %s", rev.recipe, rev.version, rev.reason)
        if all(r.same for r in revisions):
            log.warning("nothing to do: %s has every build with the same inputs", args.base)
            return Exit.NOTHING_TO_DO
        matrix = with_revisions(matrix, revisions)
    if args.json:
        print(json.dumps(matrix, separators=(",", ":"), sort_keys=True))
    else:
        for job in matrix["include"]:
            print(f"{job['recipe']:<20} {job['version']:<10} {job['target']}")
    return 0
