"""`pfbuild check-updates`: does the live repository need a rebuild, and why?"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from builder.bootstrap.buildenv import ensure_base_image
from builder.bootstrap.keyring import ensure_keyring
from builder.commands.common import (
    add_base_argument,
    add_listing_arguments,
    add_target_argument,
    selected_targets,
)
from builder.commands.exits import Exit
from builder.core.atomic import pid_temp_dir
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.core.errors import PfbuildError
from builder.fetch.archive import ArchiveChain
from builder.image.sbom import image_packages_installed
from builder.model.distro import Distribution
from builder.model.loader import load_recipe
from builder.pipeline import triggers
from builder.pipeline.release import release_builds
from builder.pipeline.updates import check_upstream, index_versions, newest_from_debian
from builder.publish.attestations import release_name
from builder.publish.live import LiveTree, fetch_live, pinned_fingerprint
from builder.publish.sbom import BomSubject
from builder.publish.verify import verify_release

NAME = "check-updates"
HELP = (
    "say whether the live repository needs a rebuild and why (newer upstream or Debian "
    f"packaging, changed inputs, a moved build environment, image base updates, age); exit 0 "
    f"when it does, "
    f"{int(Exit.NOTHING_TO_DO)} when not"
)

log = logging.getLogger("pfbuild")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_base_argument(parser, "what is compared")
    parser.add_argument("--recipe", default="postfix", help="the main recipe (default postfix)")
    add_target_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=triggers.KINDS,
        help="check only this kind of reason (repeatable; default: all)",
    )
    parser.add_argument(
        "--max-age-days",
        dest="rebuild_age_days",
        type=float,
        default=triggers.DEFAULT_MAX_AGE_DAYS,
        metavar="DAYS",
        help="rebuild when the newest publish is older (default %(default)g)",
    )
    add_listing_arguments(parser)


def _base_packages(ctx: Context) -> Callable[[Distribution], Mapping[str, str]]:
    def packages(dist: Distribution) -> Mapping[str, str]:
        tag = ensure_base_image(ctx, dist)
        records = image_packages_installed(docker_client(ctx), tag)
        return {r.name: r.version for r in records}

    return packages


def _archive_packages(ctx: Context) -> triggers.ArchivePackages:
    """The versions the target's signed archive (its release suite, as the chroots use it) has."""

    def packages(dist: Distribution, names: Collection[str]) -> Mapping[str, set[str]]:
        chain = ArchiveChain(ctx, dist.archive_url, ensure_keyring(ctx, dist))
        found: dict[str, set[str]] = {}
        for component in dist.components:
            index = chain.packages_index(dist.name, component, dist.arch)
            for name, versions in index_versions(index, names).items():
                found.setdefault(name, set()).update(versions)
        return found

    return packages


def _image_boms(
    location: str, fingerprint: str, release: str, cache: Path
) -> dict[str, BomSubject]:
    boms: dict[str, BomSubject] = {}
    name, links = verify_release(location, fingerprint, release=release, boms=boms, cache=cache)
    failed = [link for link in links if not link.ok]
    if failed:
        raise PfbuildError(
            f"the live release {name} does not verify: {failed[0].name}: {failed[0].why}",
            "the image SBOM it holds cannot be believed",
            f"run `pfbuild verify --repo {location} --key {fingerprint}` for every link",
        )
    return boms


def _check(
    ctx: Context,
    args: argparse.Namespace,
    live: LiveTree,
    fingerprint: str,
    tree: Path,
) -> triggers.UpdateCheck:
    """Every reason of the kinds asked for; `tree` holds the live files already fetched."""
    kinds = set(args.only or triggers.KINDS)
    recipe = load_recipe(args.recipe)
    targets = selected_targets(ctx, args)
    published = triggers.published_release(live, recipe)
    version = published
    reasons: list[triggers.Reason] = []
    if "upstream" in kinds:
        listings = tuple(args.listing_url) or recipe.release_listings
        found = check_upstream(
            ctx, recipe, listings, timeout=args.timeout, fallback=newest_from_debian
        )
        reason = triggers.upstream_reason(published, found.version, found.found_at)
        if reason is not None:
            reasons.append(reason)
            version = found.version
    if version is None:
        raise PfbuildError(
            f"the live repository holds no {recipe.name} {recipe.series}.N",
            "there is nothing to compare with",
            "publish a first release (`pfbuild release VERSION`), or check with --only upstream",
        )
    if published is None:  # only the upstream check has something to compare with
        return triggers.UpdateCheck(recipe.name, version, published, tuple(reasons))
    if "packaging" in kinds:
        reason = triggers.packaging_reason(
            recipe, published, triggers.debian_packaging(ctx, recipe)
        )
        if reason is not None:
            reasons.append(reason)
    builds = release_builds(recipe.name, published)
    if "inputs" in kinds:
        reasons += triggers.inputs_reasons(live, builds, targets)
    if "build-env" in kinds:
        reasons += triggers.build_env_reasons(live, builds, targets, _archive_packages(ctx))
    if "image-base" in kinds:
        release = release_name(recipe.name, published)
        boms = _image_boms(args.base, fingerprint, release, cache=tree)
        reasons += triggers.image_reasons(boms, targets, _base_packages(ctx))
    if "age" in kinds:
        reason = triggers.age_reason(live, args.rebuild_age_days)
        if reason is not None:
            reasons.append(reason)
    return triggers.UpdateCheck(recipe.name, version, published, tuple(reasons))


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.base is None:
        raise PfbuildError(
            "check-updates needs the live repository",
            fix="pass --base URL|DIR (what clients use), or set PFBUILD_BASE",
        )
    if args.rebuild_age_days < 0:
        raise PfbuildError("--max-age-days must not be negative", fix="pass a number of days")
    fingerprint = pinned_fingerprint(ctx, os.environ)
    with pid_temp_dir(ctx.tmp_dir, "live-") as scratch:
        tree = scratch / "tree"
        live = fetch_live(args.base, tree, fingerprint)
        result = _check(ctx, args, live, fingerprint, tree)
    if args.json:
        print(json.dumps(result.as_json(), sort_keys=True))
    else:
        for reason in result.reasons:
            print(f"{reason.kind:12}{reason.action:7}{reason.evidence}")
        published = result.published or "nothing"
        print(f"{result.action:19}{result.recipe} {result.version} (published: {published})")
    return Exit.OK if result.action != "none" else Exit.NOTHING_TO_DO
