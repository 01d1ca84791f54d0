"""`pfbuild check-updates`: is there a reason to rebuild what the live repository holds?

Each reason comes with its evidence and what it calls for:

  upstream    a newer upstream release of the series than the published one      build
  packaging   Debian has a newer packaging revision of the published release      build
  inputs      the published builds were made from other inputs (templates,        build
              recipe, pfbuild): the next +pfN
  build-env   packages the published builds ran with (their .buildinfo's           build
              Installed-Build-Depends) that the target's signed archive now has
              at other versions (a point release): the next +pfN, on fresh chroots
  image-base  packages of the published image's base have other versions in the   image
              base image made today (security and point updates): the image is
              rebuilt and proven again on the same .debs
  age         the newest publish is older than --max-age-days                     build

What is compared comes from the live tree, verified by the pinned key (builder.publish.live,
builder.publish.verify), never from a file that only says so.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debian.debian_support import Version

from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.fetch.archive import ArchiveChain
from builder.model.distro import Distribution
from builder.model.recipe import Recipe
from builder.pipeline.revisions import plan_revisions, release_triples, revision
from builder.pipeline.updates import debian_versions, in_series, release_key, release_of
from builder.publish.history import BUILD_ENV, DATE_FORMAT, parse_build_env, split_key
from builder.publish.live import LiveTree
from builder.publish.sbom import BomSubject

KINDS = ("upstream", "packaging", "inputs", "build-env", "image-base", "age")
# The reasons that call for a rebuild of unchanged inputs (`--force-rebuild`).
FORCING = ("build-env", "age")
DEFAULT_MAX_AGE_DAYS = 30.0


@dataclass(frozen=True)
class Reason:
    """One reason to rebuild, what it calls for, and the evidence."""

    kind: str
    action: str  # "build" or "image"
    evidence: str


@dataclass(frozen=True)
class UpdateCheck:
    """The answer of check-updates."""

    recipe: str
    version: str
    published: str | None
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    @property
    def action(self) -> str:
        """ "build" (packages and images), "image" (images alone) or "none"."""
        actions = {r.action for r in self.reasons}
        return "build" if "build" in actions else "image" if actions else "none"

    def as_json(self) -> dict[str, Any]:
        """What `check-updates --json` prints (the workflow reads it)."""
        return {
            "recipe": self.recipe,
            "version": self.version,
            "published": self.published,
            "action": self.action,
            "reasons": [
                {"kind": r.kind, "action": r.action, "evidence": r.evidence} for r in self.reasons
            ],
        }


def published_release(live: LiveTree, recipe: Recipe) -> str | None:
    """The newest release of the recipe's series the live repository holds."""
    found: list[str] = []
    for suite, entries in live.index.items():
        names = set(recipe.binary_packages.get(suite, ())[:1])
        for key in entries:
            name, version, _arch = split_key(key)
            release = release_of(version) if name in names else None
            if release is not None and in_series(release, recipe.series):
                found.append(release)
    return max(found, key=release_key) if found else None


def upstream_reason(published: str | None, newest: str, found_at: str) -> Reason | None:
    """A newer upstream release than the published one."""
    if published is not None and release_key(newest) <= release_key(published):
        return None
    had = f"the published {published}" if published else "nothing published"
    return Reason("upstream", "build", f"{newest} at {found_at}, newer than {had}")


def packaging_reason(recipe: Recipe, release: str, versions: Sequence[str]) -> Reason | None:
    """A Debian revision of `release` newer than the one the recipe pins."""
    pinned = recipe.packaging_for(release)
    newer = [
        v
        for v in versions
        if Version(v).upstream_version == pinned.upstream_version
        and Version(v) > Version(pinned.version)
    ]
    if not newer:
        return None
    return Reason(
        "packaging",
        "build",
        f"Debian has {pinned.package} {newer[0]}, the recipe pins {pinned.version}: pin the new "
        f".dsc in the recipe",
    )


def debian_packaging(ctx: Context, recipe: Recipe) -> list[str]:
    """Every Debian version of the recipe's source in the signed Sources of its suites."""
    src = recipe.packaging[max(recipe.packaging, key=release_key)]
    chain = ArchiveChain(ctx, src.archive_url, Path(src.keyring))
    versions: set[str] = set()
    for suite in src.suites:
        versions.update(debian_versions(chain.sources_index(suite, src.component), src.package))
    return sorted(versions, key=Version, reverse=True)


def inputs_reasons(
    live: LiveTree, builds: Sequence[tuple[Recipe, str]], targets: Sequence[Distribution]
) -> list[Reason]:
    """The builds whose published version was made from other inputs."""
    return [
        Reason("inputs", "build", f"{r.recipe} {r.target}: {r.version}, {r.reason}")
        for r in plan_revisions(live.history, builds, targets)
        if not r.same and "not published" not in r.reason
    ]


# name -> the versions the target's archive has of each named package.
ArchivePackages = Callable[[Distribution, Collection[str]], Mapping[str, Collection[str]]]


def env_changes(recorded: Mapping[str, str], archive: Mapping[str, Collection[str]]) -> list[str]:
    """`name old -> new` for each package a build ran with that the archive no longer has."""
    changes = []
    for name, version in sorted(recorded.items()):
        now = archive.get(name, ())
        if version not in now:
            changes.append(f"{name} {version} -> {', '.join(sorted(now, key=Version)) or 'gone'}")
    return changes


def _shown(changes: Sequence[str]) -> str:
    more = f" and {len(changes) - 5} more" if len(changes) > 5 else ""
    return ", ".join(changes[:5]) + more


def build_env_reasons(
    live: LiveTree,
    builds: Sequence[tuple[Recipe, str]],
    targets: Sequence[Distribution],
    archive: ArchivePackages,
) -> list[Reason]:
    """Published builds whose build environment the target's archive has moved on from.

    Only builds the planner finds unchanged are compared (any other is rebuilt anyway), and
    only those whose history records the environment (older histories do not).
    """
    reasons = []
    for recipe, version, dist in release_triples(builds, targets):
        rev = revision(live.history, recipe, version, dist)
        builds_of = live.history.suite(dist.name).builds.get(recipe.source_package, {})
        recorded = builds_of.get(rev.version, {}).get(BUILD_ENV) if rev.same else None
        if recorded is None:
            continue
        packages = parse_build_env(recorded)
        changes = env_changes(packages, archive(dist, packages.keys()))
        if changes:
            reasons.append(
                Reason(
                    "build-env",
                    "build",
                    f"{recipe.name} {dist.name}: {rev.version} was built with packages the "
                    f"{dist.name} archive has moved on from: {_shown(changes)}",
                )
            )
    return reasons


def base_changes(bom: BomSubject, base: Mapping[str, str]) -> list[str]:
    """`name old -> new` for each package of the image SBOM that the base has at another version."""
    changes = []
    for component in bom.components:
        now = base.get(component.name)
        if now is not None and now != component.version:
            changes.append(f"{component.name} {component.version} -> {now}")
    return sorted(changes)


def image_reasons(
    boms: Mapping[str, BomSubject],
    targets: Sequence[Distribution],
    base_packages: Callable[[Distribution], Mapping[str, str]],
) -> list[Reason]:
    """Images whose base moved: packages in them that today's base image has at other versions."""
    reasons = []
    for dist in targets:
        bom = boms.get(dist.variant)
        if bom is None:
            continue
        changes = base_changes(bom, base_packages(dist))
        if changes:
            reasons.append(
                Reason(
                    "image-base",
                    "image",
                    f"image {dist.variant}: {_shown(changes)} in today's base",
                )
            )
    return reasons


def age_reason(live: LiveTree, max_age_days: float, now: float | None = None) -> Reason | None:
    """The newest publish is older than `max_age_days`."""
    dates = [
        state.date for suite in live.history.suites.values() for state in suite.states if state.date
    ]
    if not dates:
        return None
    newest = max(dates)
    try:
        then = calendar.timegm(time.strptime(newest, DATE_FORMAT))
    except ValueError:
        raise PfbuildError(f"the live history has an unreadable date {newest!r}") from None
    age = ((time.time() if now is None else now) - then) / 86400
    if age <= max_age_days:
        return None
    return Reason("age", "build", f"the newest publish ({newest}) is {age:.0f} days old")
