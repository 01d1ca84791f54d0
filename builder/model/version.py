"""The version scheme of our packages: one rule for every target, e.g. 3.11.6-1+pf1~trixie."""

from __future__ import annotations

import dataclasses
import re

from debian.debian_support import Version

from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.model.recipe import Recipe

SUFFIX_RE = re.compile(r"~[a-z][a-z0-9]*")


def package_version(upstream: str, base_version: str, rebuild: int, suffix: str) -> str:
    """Our version of `upstream` built on Debian's `base_version` for the target `suffix`.

    `+pfN` sorts above Debian's own revision (3.11.6-1 < 3.11.6-1+pf1~trixie < 3.11.6-2), the
    rebuild counter N makes a rebuild newer, and the per-target `~suffix` gives every target its
    own file names, so one shared pool never sees one name with two contents. When upstream is
    newer than the base packaging, the revision is 0: there is no Debian revision of it yet.
    """
    if rebuild < 1:
        raise PfbuildError(f"rebuild counter {rebuild} is below 1", fix="start counting at 1")
    if not SUFFIX_RE.fullmatch(suffix):
        raise PfbuildError(f"version suffix {suffix!r} is not ~name", fix="fix the target data")
    base = Version(base_version)
    revision = base.debian_revision if base.upstream_version == upstream else "0"
    epoch = f"{base.epoch}:" if base.epoch else ""
    return f"{epoch}{upstream}-{revision or '0'}+pf{rebuild}{suffix}"


def is_newer(candidate: str, than: str) -> bool:
    """dpkg --compare-versions `candidate` gt `than`."""
    return bool(Version(candidate) > Version(than))


def target_version(recipe: Recipe, version: str, dist: Distribution) -> str:
    """The Debian version of `recipe` `version` on `dist`: what the source stage writes."""
    src = recipe.packaging_for(version)
    upstream = version if recipe.upstream is not None else src.upstream_version
    return package_version(upstream, src.version, recipe.rebuild, dist.version_suffix)


def rebuild_counter(recipe: Recipe, version: str, dist: Distribution, debian_version: str) -> int:
    """The rebuild counter N of `debian_version` if it is `recipe` `version` for `dist` at +pfN.

    N may be above the recipe's own counter: the live repository asks for the next one when a
    version was published from other inputs. Anything else gives the recipe's counter, whose
    version then fails the caller's comparison with a clear message.
    """
    match = re.search(rf"\+pf([1-9][0-9]{{0,5}}){re.escape(dist.version_suffix)}$", debian_version)
    if match:
        n = int(match.group(1))
        bumped = dataclasses.replace(recipe, rebuild=n)
        if n >= recipe.rebuild and target_version(bumped, version, dist) == debian_version:
            return n
    return recipe.rebuild
