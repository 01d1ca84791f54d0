"""What a build is made of, and which +pfN it gets when the live repository already has one.

A published version is immutable. The inputs of every build published are kept in the
repository's signed history (builder.publish.history); a new build of a version the repository
has is compared with them: the same inputs need no build, other inputs get the next rebuild
counter (+pf1 -> +pf2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from debian import deb822

from builder.build import depschroot, sbuild, stage, stagedir
from builder.core import unpack
from builder.core.context import Context
from builder.core.digest import code_digest, data_digest
from builder.model import version as version_scheme
from builder.model.distro import Distribution
from builder.model.loader import available_recipes, load_recipe
from builder.model.recipe import Recipe
from builder.model.version import rebuild_counter, target_version
from builder.pipeline.provenance import templates_sha256
from builder.publish.history import BUILD_ENV, History, SuiteHistory, split_key
from builder.source import package as source_package


def recipe_digest(recipe: Recipe) -> str:
    """The recipe's data as the engine sees it."""
    return data_digest(recipe)


def templates_digest(recipe: Recipe) -> str:
    """Every template the recipe renders (its own folder and the shared ones)."""
    return templates_sha256(recipe)[:20]


def dist_digest(dist: Distribution) -> str:
    """The target's data (archive, components, keyring, suffix)."""
    return data_digest(dist)


def source_code_digest() -> str:
    """The code that makes a source package."""
    return code_digest(source_package, version_scheme, unpack)


def build_code_digest() -> str:
    """The code that builds it."""
    return code_digest(sbuild, depschroot, stagedir, stage)


def build_inputs(recipe: Recipe, version: str, dist: Distribution) -> dict[str, str]:
    """What a build of `recipe` `version` for `dist` is made of, whatever its rebuild counter."""
    return {
        "upstream": version,
        "recipe": recipe_digest(dataclasses.replace(recipe, rebuild=1)),
        "templates": templates_digest(recipe),
        "target": dist_digest(dist),
        "source-code": source_code_digest(),
        "build-code": build_code_digest(),
    }


def _known(builds: Sequence[tuple[str | None, str | None]]) -> Iterator[tuple[Recipe, str]]:
    """The named builds of recipes this checkout has (no other has inputs to compare later)."""
    known = set(available_recipes())
    for name, version in builds:
        if name is not None and version is not None and name in known:
            yield load_recipe(name), version


def published_inputs(
    targets: Sequence[Distribution],
    builds: Sequence[tuple[str | None, str | None]],
    rebuilds: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, list[tuple[str, str, Mapping[str, str]]]]:
    """Per suite, the (source, Debian version, inputs) of the named builds, for the history."""
    found: dict[str, list[tuple[str, str, Mapping[str, str]]]] = {}
    for recipe, version in _known(builds):
        for dist in targets:
            if dist.name not in recipe.binary_packages:
                continue
            rebuild = (rebuilds or {}).get((recipe.name, dist.name), recipe.rebuild)
            found.setdefault(dist.name, []).append(
                (
                    recipe.source_package,
                    target_version(with_rebuild(recipe, rebuild), version, dist),
                    build_inputs(recipe, version, dist),
                )
            )
    return found


def built_rebuilds(
    ctx: Context, targets: Sequence[Distribution], builds: Sequence[tuple[str | None, str | None]]
) -> dict[tuple[str, str], int]:
    """The +pfN each (recipe, target) build in the workspace carries, from its .changes.

    A build made with `build --rebuild N` (or handed off from one) is recorded under the
    version it has, not the recipe's own.
    """
    found: dict[tuple[str, str], int] = {}
    for recipe, version in _known(builds):
        for dist in targets:
            changes = sorted(ctx.build_dir(recipe.name, version, dist.name).glob("*.changes"))
            if len(changes) == 1:
                debian = str(deb822.Changes(changes[0].read_text()).get("Version", ""))
                found[(recipe.name, dist.name)] = rebuild_counter(recipe, version, dist, debian)
    return found


# ---- the next revision ------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """The rebuild counter one (recipe, target) gets, and why."""

    recipe: str
    target: str
    rebuild: int
    version: str
    # True when the live repository has this version built from the same inputs.
    same: bool
    reason: str


def _published_versions(suite: SuiteHistory, recipe: Recipe, dist: Distribution) -> set[str]:
    """Every version of the recipe's packages the suite ever published."""
    versions = set(suite.builds.get(recipe.source_package, {}))
    names = set(recipe.binary_packages.get(dist.name, ()))
    for key in suite.files:
        name, version, _arch = split_key(key)
        if name in names:
            versions.add(version)
    return versions


def _changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    return sorted(k for k in new.keys() | old.keys() if old.get(k) != new.get(k))


def revision(history: History, recipe: Recipe, version: str, dist: Distribution) -> Revision:
    """The rebuild counter of `recipe` `version` on `dist` against the live history."""
    suite = history.suite(dist.name)
    published = _published_versions(suite, recipe, dist)
    ours = target_version(recipe, version, dist)
    if ours not in published:
        return Revision(recipe.name, dist.name, recipe.rebuild, ours, False, "not published yet")
    used = [
        n
        for n in range(recipe.rebuild, recipe.rebuild + 1000)
        if target_version(dataclasses.replace(recipe, rebuild=n), version, dist) in published
    ]
    newest_n = max(used)
    newest = target_version(dataclasses.replace(recipe, rebuild=newest_n), version, dist)
    recorded = suite.builds.get(recipe.source_package, {}).get(newest)
    if recorded is not None:
        # What the build ran with is no input the planner can compute: check-updates compares
        # it with the target's archive, and a rebuild for it is a forced one.
        recorded = {k: v for k, v in recorded.items() if k != BUILD_ENV}
    inputs = build_inputs(recipe, version, dist)
    if recorded == inputs:
        return Revision(
            recipe.name, dist.name, newest_n, newest, True, f"{newest} has the same inputs"
        )
    nxt = newest_n + 1
    why = (
        f"{newest} was built from other {', '.join(_changed(recorded, inputs))}"
        if recorded is not None
        else f"{newest} has no record of its inputs"
    )
    bumped = target_version(dataclasses.replace(recipe, rebuild=nxt), version, dist)
    return Revision(recipe.name, dist.name, nxt, bumped, False, why)


def plan_revisions(
    history: History,
    builds: Sequence[tuple[Recipe, str]],
    targets: Sequence[Distribution],
    *,
    force: bool = False,
) -> list[Revision]:
    """The revisions of a release's builds: all the same as published, or all new.

    A release is one unit: its image and attestations name every build of it. When anything
    differs from the live repository, every build whose version is published moves to its next
    rebuild counter (a version is never built twice), the unchanged ones with it. `force`
    moves them all even when nothing differs (a scheduled rebuild by age, on fresh chroots).
    """
    triples = release_triples(builds, targets)
    found = [revision(history, recipe, version, dist) for recipe, version, dist in triples]
    if all(r.same for r in found) and not force:
        return found
    changed = [r for r in found if not r.same]
    cause = changed[0].reason if changed else "a rebuild was asked for"
    result = []
    for rev, (recipe, version, dist) in zip(found, triples, strict=True):
        if rev.same:
            nxt = rev.rebuild + 1
            bumped = target_version(dataclasses.replace(recipe, rebuild=nxt), version, dist)
            rev = Revision(
                rev.recipe, rev.target, nxt, bumped, False, f"rebuilt with the release ({cause})"
            )
        result.append(rev)
    return result


def release_triples(
    builds: Sequence[tuple[Recipe, str]], targets: Sequence[Distribution]
) -> list[tuple[Recipe, str, Distribution]]:
    """(recipe, version, target) of every build a release makes."""
    return [
        (recipe, version, dist)
        for recipe, version in builds
        for dist in targets
        if dist.name in recipe.binary_packages
    ]


def with_rebuild(recipe: Recipe, rebuild: int) -> Recipe:
    """The recipe with another rebuild counter (the one the live repository asks for)."""
    return recipe if rebuild == recipe.rebuild else dataclasses.replace(recipe, rebuild=rebuild)
