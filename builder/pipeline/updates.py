"""Is there a newer upstream release? Mirror listings first, Debian's signed Sources second."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian import deb822
from debian.debian_support import Version

from builder.core.context import Context
from builder.core.download import DEFAULT_TIMEOUT, DownloadError, fetch_bytes
from builder.core.errors import PfbuildError
from builder.fetch.archive import ArchiveChain
from builder.image.build import published_versions
from builder.model.recipe import Recipe

log = logging.getLogger("pfbuild")

# The leading MAJOR.MINOR.PATCH of an upstream version (2.0.9 of 2.0.9+ds).
RELEASE_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?![0-9])")
# A listing may come from anywhere on the network: never read more than a sane index.
MAX_LISTING_BYTES = 4 << 20


@dataclass(frozen=True)
class UpstreamCheck:
    """The newest release found, where it was found, and the last one published."""

    recipe: str
    series: str
    version: str
    found_at: str
    published: str | None

    @property
    def is_newer(self) -> bool:
        """True when `version` is above the last published release (or none was published)."""
        return self.published is None or release_key(self.version) > release_key(self.published)

    def as_json(self) -> dict[str, Any]:
        """The shape `check-upstream --json` prints (workflows read it)."""
        return {
            "recipe": self.recipe,
            "series": self.series,
            "version": self.version,
            "found_at": self.found_at,
            "published": self.published,
            "newer": self.is_newer,
        }


def release_key(version: str) -> tuple[int, ...]:
    """A sort key for MAJOR.MINOR.PATCH."""
    return tuple(int(p) for p in version.split("."))


def release_of(debian_version: str) -> str | None:
    """3.11.6 of 3.11.6-1+pf1~trixie, 2.0.9 of 2.0.9+ds-2; None when there is no such prefix."""
    upstream = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    match = RELEASE_RE.match(upstream)
    return match.group(0) if match else None


def in_series(version: str, series: str) -> bool:
    """True when `version` is a release of `series` (3.11.7 of 3.11, not 3.110.1)."""
    return version.rsplit(".", 1)[0] == series


def listing_versions(text: str, package: str, series: str) -> list[str]:
    """Every <package>-<series>.N.tar.gz a directory listing names, newest first."""
    pattern = re.compile(
        rf"(?<![\w.+-]){re.escape(package)}-({re.escape(series)}\.(?:0|[1-9][0-9]*))"
        # The tarball itself, not its .gpg2/.sig companions or a longer version number.
        r"\.tar\.gz(?![\w.-])"
    )
    found = {m.group(1) for m in pattern.finditer(text)}
    return sorted(found, key=release_key, reverse=True)


_PACKAGE_FIELD = re.compile(r"^Package: (\S+)$", re.MULTILINE)


def index_versions(index_text: str, names: Collection[str]) -> dict[str, set[str]]:
    """Every Version of each named package in a Sources or Packages index."""
    found: dict[str, set[str]] = {}
    # A full parse of a whole index is slow; pick the paragraphs by name first.
    for para_text in index_text.split("\n\n"):
        match = _PACKAGE_FIELD.search(para_text)
        if match is None or match.group(1) not in names:
            continue
        para = deb822.Deb822(para_text)
        if para.get("Package") == match.group(1) and "Version" in para:
            found.setdefault(match.group(1), set()).add(para["Version"])
    return found


def debian_versions(index_text: str, package: str) -> list[str]:
    """Every Version of source `package` in a Sources index, newest first."""
    return sorted(index_versions(index_text, {package}).get(package, ()), key=Version, reverse=True)


def sources_versions(index_text: str, package: str, series: str) -> list[str]:
    """Every release of `series` a Sources index has for source `package`, newest first."""
    releases = {release_of(v) for v in debian_versions(index_text, package)}
    found = {r for r in releases if r is not None and in_series(r, series)}
    return sorted(found, key=release_key, reverse=True)


def newest_from_listing(url: str, recipe: Recipe, timeout: float) -> str:
    """The newest release of the recipe's series in one mirror's listing."""
    # The cap applies while the listing streams in: a huge or endless answer is cut off at it,
    # not read whole first.
    data = fetch_bytes(url, timeout=timeout, max_bytes=MAX_LISTING_BYTES)
    text = data.decode("utf-8", errors="replace")
    versions = listing_versions(text, recipe.source_package, recipe.series)
    if not versions:
        raise PfbuildError(
            f"{url} lists no {recipe.source_package}-{recipe.series}.N.tar.gz",
            "the page is not a release listing, or the mirror changed its layout",
        )
    return versions[0]


def newest_from_debian(ctx: Context, recipe: Recipe) -> tuple[str, str]:
    """The newest release of the series in the signed Sources of the recipe's packaging suites."""
    newest_pin = max(recipe.packaging, key=release_key)
    src = recipe.packaging[newest_pin]
    chain = ArchiveChain(ctx, src.archive_url, Path(src.keyring))
    best: tuple[str, str] | None = None
    for suite in src.suites:
        index = chain.sources_index(suite, src.component)
        versions = sources_versions(index, src.package, recipe.series)
        if versions and (best is None or release_key(versions[0]) > release_key(best[0])):
            best = (versions[0], f"{chain.archive_url} {suite} Sources")
    if best is None:
        raise PfbuildError(
            f"no signed Sources index of {', '.join(src.suites)} has {src.package} "
            f"{recipe.series}.N"
        )
    return best


def last_published(ctx: Context, recipe: Recipe) -> str | None:
    """The newest release of the recipe in the published tree or the release manifests."""
    found: list[str] = []
    tree = ctx.apt_tree
    for target, binaries in recipe.binary_packages.items():
        if not binaries or not (tree / "dists" / target).is_dir():
            continue
        version = published_versions(tree, target).get(binaries[0])
        release = release_of(version) if version else None
        if release is not None and in_series(release, recipe.series):
            found.append(release)
    # `pfbuild release` writes its manifest after publishing, so a manifest is a release.
    for path in sorted(ctx.manifests_dir.glob(f"{recipe.name}-*.json")):
        try:
            version = json.loads(path.read_text()).get("version", "")
        except (OSError, ValueError, AttributeError):
            log.warning("ignoring unreadable release manifest %s", path)
            continue
        if (
            isinstance(version, str)
            and RELEASE_RE.fullmatch(version)
            and in_series(version, recipe.series)
        ):
            found.append(version)
    return max(found, key=release_key) if found else None


DebianLookup = Callable[[Context, Recipe], tuple[str, str]]


def check_upstream(
    ctx: Context,
    recipe: Recipe,
    listings: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    fallback: DebianLookup | None = newest_from_debian,
) -> UpstreamCheck:
    """Find the newest release of the recipe's series and compare it with the last published."""
    problems: list[str] = []
    found: tuple[str, str] | None = None
    # The first mirror that answers wins: they mirror one another, and every dead one costs a
    # whole timeout.
    for url in listings:
        try:
            found = (newest_from_listing(url, recipe, timeout), url)
            break
        except DownloadError as exc:
            problems.append(f"{url}: {exc.reason}")
            log.info("release listing %s: %s", url, exc.reason)
        except PfbuildError as exc:
            problems.append(exc.one_line())
            log.info("%s", exc.one_line())
    if found is None and fallback is not None:
        try:
            found = fallback(ctx, recipe)
        except PfbuildError as exc:
            problems.append(f"Debian Sources: {exc.one_line()}")
    if found is None:
        raise PfbuildError(
            f"cannot find the newest {recipe.name} {recipe.series}.N release",
            "; ".join(problems) or "no release listing configured and no fallback",
            "check the mirrors (recipe release_listings, --listing-url) and the network",
        )
    published = last_published(ctx, recipe)
    return UpstreamCheck(recipe.name, recipe.series, found[0], found[1], published)
