"""The recipe model: what to fetch, how to verify it, how to package it; validated on load."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from builder.core.checkout import RECIPES_DIR, TEMPLATES_DIR
from builder.core.errors import PfbuildError, shorten

log = logging.getLogger("pfbuild")

# The hardening vocabulary, in the order reports show it (the check stage reports in it).
HARDENING_PROPERTIES = (
    "pie", "relro", "bindnow", "nxstack", "stackprotector", "fortify3", "stackclash", "cet",
)  # fmt: skip
# Only plain dotted release numbers: they end up in file names, URLs and shell-free argv.
VERSION_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def bad_field(recipe: str, field_name: str, why: str) -> PfbuildError:
    return PfbuildError(
        f"recipe {recipe!r} is invalid: field {field_name!r}",
        why,
        f"fix {field_name} in recipes/{recipe.replace('-', '_')}.py",
    )


@dataclass(frozen=True)
class UpstreamMirror:
    """One place an upstream release can be downloaded from; `{version}` is filled in."""

    tarball: str
    signature: str

    def urls(self, version: str) -> tuple[str, str]:
        """The tarball and signature URLs of `version` on this mirror."""
        return self.tarball.format(version=version), self.signature.format(version=version)


@dataclass(frozen=True)
class Upstream:
    """An upstream release verified by a detached OpenPGP signature from a pinned key."""

    tarball_name: str
    mirrors: tuple[UpstreamMirror, ...]
    signing_key: str
    fingerprint: str

    @property
    def key_path(self) -> Path:
        """The armored public key file shipped with the recipes."""
        return RECIPES_DIR / self.signing_key


@dataclass(frozen=True)
class ArchiveSource:
    """A Debian source package, verified through an archive's signed chain (or a pinned hash).

    The chain is InRelease (archive keyring) -> Sources index hash -> .dsc hash -> file hashes.
    `dsc_sha256` pins the .dsc for releases that no signed index lists any more.
    """

    package: str
    version: str
    archive_url: str
    suites: tuple[str, ...]
    component: str
    keyring: str
    dsc_sha256: str = ""

    @property
    def upstream_version(self) -> str:
        """The upstream part of the Debian version (no epoch, no revision)."""
        return self.version.split(":", 1)[-1].rsplit("-", 1)[0]

    @property
    def revision(self) -> str:
        """The Debian revision of the packaging."""
        return self.version.rsplit("-", 1)[1] if "-" in self.version else "0"


@dataclass(frozen=True)
class Replacement:
    """A per-target edit of one packaging file: `old` must occur, and becomes `new`."""

    path: str
    old: str
    new: str
    why: str


OVERLAY_MODES = frozenset({"maint-flags", "postconf", "replace"})


@dataclass(frozen=True)
class Overlay:
    """A jinja2 template from debian-templates/<recipe>/ applied to one packaging file.

    Modes: `maint-flags` replaces the DEB_*_MAINT_* lines of debian/rules with the rendered
    block; `postconf` sets the rendered `name = value` lines in a Postfix-style config, dropping
    earlier definitions of the same names; `replace` writes the whole file.
    """

    template: str
    path: str
    mode: str


@dataclass(frozen=True)
class HardeningFlags:
    """The DEB_*_MAINT_* values of debian/rules; `arch_cflags` only on the named architectures."""

    build_maint_options: str
    cppflags_append: tuple[str, ...]
    cflags_append: tuple[str, ...]
    ldflags_append: tuple[str, ...]
    ldflags_strip: tuple[str, ...] = ()
    arch_cflags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Map the build path at link time too (-ffile-prefix-map in LDFLAGS): needed for
    # reproducible builds when objects link with LDFLAGS alone under LTO, where code is made.
    map_build_path_at_link: bool = False

    def cflags_for(self, arch: str) -> tuple[str, ...]:
        """Every CFLAGS append that applies on `arch`."""
        return (*self.cflags_append, *self.arch_cflags.get(arch, ()))


@dataclass(frozen=True)
class Deviation:
    """A test of the packaging's own autopkgtests that our hardened defaults make fail, on purpose.

    `test` is `<autopkgtest>/<case>` (a case of a Python unittest run by that test); the check
    accepts the failure only when the case ends as `outcome` ("fail" or "error") with a detail
    that `match` (a regular expression) finds, and every other test and case passes.
    """

    test: str
    outcome: str
    match: str
    reason: str


DEVIATION_OUTCOMES = ("fail", "error")


@dataclass(frozen=True)
class Recipe:
    """One package pfbuild builds: sources, verification, packaging, expectations."""

    name: str
    series: str
    source_package: str
    maintainer: str
    packaging: Mapping[str, ArchiveSource]
    binary_packages: Mapping[str, tuple[str, ...]]
    expected_hardening: Mapping[str, Mapping[str, frozenset[str]]]
    hardening: HardeningFlags
    upstream: Upstream | None = None
    adjustments: Mapping[str, tuple[Replacement, ...]] = field(default_factory=dict)
    templates: str = ""
    overlays: tuple[Overlay, ...] = ()
    template_options: Mapping[str, Any] = field(default_factory=dict)
    changes: tuple[str, ...] = ()
    rebuild: int = 1
    # Other recipes a release of this one builds and publishes too: (name, version).
    companions: tuple[tuple[str, str], ...] = ()
    # Directory listings of the official release mirrors (`check-upstream` reads the newest
    # <source_package>-<series>.N.tar.gz from them), tried in order.
    release_listings: tuple[str, ...] = ()
    # Debian's own autopkgtests that fail by design with our defaults, each with its reason.
    autopkgtest_deviations: tuple[Deviation, ...] = ()
    # A Postfix recipe: the check also gates the configuration a new install writes (lint-config
    # with that build's `postconf -d`) and runs the install/upgrade/purge scenarios (lifecycle).
    postfix_qa: bool = False
    # A Postfix recipe built without Berkeley DB when False: `without_berkeley_db` are the
    # packaging edits that do it (no libdb in Build-Depends, so none in Depends), and the check
    # proves it on the built package (`postmap hash:` fails with Postfix's no-Berkeley-DB hint).
    berkeley_db: bool = True
    without_berkeley_db: tuple[Replacement, ...] = ()

    def packaging_edits(self, target: str) -> tuple[Replacement, ...]:
        """Every edit the source stage makes for `target` beyond the overlays."""
        extra = () if self.berkeley_db else self.without_berkeley_db
        return (*self.adjustments.get(target, ()), *extra)

    def __post_init__(self) -> None:
        # Freeze the mappings so a loaded recipe cannot change under a running build.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                object.__setattr__(self, f.name, MappingProxyType(value))
        validate_recipe(self)

    def validate_version(self, version: str) -> None:
        """Refuse a malformed version or one outside this recipe's series."""
        example = max(self.packaging, key=_vkey)
        if not VERSION_RE.fullmatch(version):
            raise PfbuildError(
                f"malformed version {shorten(version)} for {self.name}",
                "expected MAJOR.MINOR.PATCH, digits only",
                f"pass a release of the {self.series} series, e.g. {example}",
            )
        if version.rsplit(".", 1)[0] != self.series:
            raise PfbuildError(
                f"version {version} is outside the {self.name} {self.series} series",
                f"this recipe builds {self.series}.N releases only",
                f"pass a {self.series}.N version (e.g. {example}) or use a recipe for that series",
            )

    def packaging_for(self, version: str) -> ArchiveSource:
        """The base Debian packaging for `version`: its own pin, else the newest pin below it,
        else (a point release older than every pin) the oldest pin."""
        self.validate_version(version)
        if version in self.packaging:
            return self.packaging[version]
        if self.upstream is None:
            raise PfbuildError(
                f"{self.name} has no pinned Debian source package for {version}",
                f"pinned: {', '.join(sorted(self.packaging)) or 'none'}; without an upstream "
                "tarball of its own, this recipe builds exactly what is pinned",
                f"add a packaging entry for {version} to the recipe",
            )
        older = [v for v in self.packaging if _vkey(v) <= _vkey(version)]
        if older:
            return self.packaging[max(older, key=_vkey)]
        return self.packaging[min(self.packaging, key=_vkey)]

    def newest_pinned(self) -> str:
        """The newest release of the series this recipe pins packaging for."""
        return max(self.packaging, key=_vkey)

    def release_notes(self, version: str) -> tuple[str, ...]:
        """What a user should be told about building `version` (empty: nothing).

        Refuses what cannot be built at all (see packaging_for), so that every command that
        plans can call it before anything runs.
        """
        packaging = self.packaging_for(version)
        notes: list[str] = []
        if self.upstream is not None and _vkey(packaging.upstream_version) > _vkey(version):
            notes.append(
                f"{self.name} {version}: no pinned Debian packaging at or below it; using "
                f"{packaging.package} {packaging.version}'s, the nearest (dpkg-source decides "
                "whether its patches apply)"
            )
        newest = self.newest_pinned()
        if _vkey(newest) > _vkey(version):
            notes.append(
                f"{self.name} {version} is older than {newest}, the newest {self.series} "
                "release this recipe knows: later point releases carry fixes, security fixes "
                "among them"
            )
        return tuple(notes)


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _check_hardening(recipe: Recipe) -> None:
    if not recipe.expected_hardening:
        raise bad_field(recipe.name, "expected_hardening", "no target listed")
    for target, per_arch in recipe.expected_hardening.items():
        for arch, props in per_arch.items():
            unknown = set(props) - set(HARDENING_PROPERTIES)
            if unknown:
                raise bad_field(
                    recipe.name,
                    "expected_hardening",
                    f"{target}/{arch}: unknown properties {sorted(unknown)}; "
                    f"known: {sorted(HARDENING_PROPERTIES)}",
                )
    for text in (
        *recipe.hardening.cppflags_append,
        *recipe.hardening.cflags_append,
        *recipe.hardening.ldflags_append,
        *recipe.hardening.ldflags_strip,
        *(f for flags in recipe.hardening.arch_cflags.values() for f in flags),
    ):
        if not text.startswith("-") or any(c.isspace() or c in "$`\\'\"" for c in text):
            raise bad_field(recipe.name, "hardening", f"{text!r} is not one plain compiler flag")


def _check_deviations(recipe: Recipe) -> None:
    seen = set()
    for deviation in recipe.autopkgtest_deviations:
        test, _, case = deviation.test.partition("/")
        if not NAME_RE.fullmatch(test) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", case):
            raise bad_field(
                recipe.name, "autopkgtest_deviations", f"{deviation.test!r} is not TEST/CASE"
            )
        if deviation.test in seen:
            raise bad_field(recipe.name, "autopkgtest_deviations", f"{deviation.test} twice")
        seen.add(deviation.test)
        if deviation.outcome not in DEVIATION_OUTCOMES:
            raise bad_field(
                recipe.name,
                "autopkgtest_deviations",
                f"{deviation.test}: outcome {deviation.outcome!r} not in {DEVIATION_OUTCOMES}",
            )
        try:
            re.compile(deviation.match)
        except re.error as exc:
            raise bad_field(
                recipe.name, "autopkgtest_deviations", f"{deviation.test}: match: {exc}"
            ) from None
        if not deviation.reason.strip():
            raise bad_field(
                recipe.name, "autopkgtest_deviations", f"{deviation.test}: no reason given"
            )


def validate_recipe(recipe: Recipe) -> None:
    """Raise a PfbuildError naming the first field that is wrong."""
    if not NAME_RE.fullmatch(recipe.name):
        raise bad_field(recipe.name, "name", "lowercase letters, digits, '.', '+', '-' only")
    if not re.fullmatch(r"[0-9]+\.[0-9]+", recipe.series):
        raise bad_field(recipe.name, "series", f"{recipe.series!r} is not MAJOR.MINOR")
    if not NAME_RE.fullmatch(recipe.source_package):
        raise bad_field(recipe.name, "source_package", f"{recipe.source_package!r} is not a name")
    if "<" not in recipe.maintainer or not recipe.maintainer.endswith(">"):
        raise bad_field(recipe.name, "maintainer", "expected 'Name <email>'")
    if not recipe.packaging:
        raise bad_field(recipe.name, "packaging", "no base Debian source package pinned")
    for version, src in recipe.packaging.items():
        if not VERSION_RE.fullmatch(version) or version.rsplit(".", 1)[0] != recipe.series:
            raise bad_field(recipe.name, "packaging", f"key {version!r} is not a {recipe.series}.N")
        if not src.suites or not src.archive_url or not src.keyring:
            raise bad_field(
                recipe.name, "packaging", f"{version}: suites, archive_url, keyring needed"
            )
        if src.dsc_sha256 and not SHA256_RE.fullmatch(src.dsc_sha256):
            raise bad_field(recipe.name, "packaging", f"{version}: dsc_sha256 is not a sha256")
    if not recipe.berkeley_db and not (recipe.postfix_qa and recipe.without_berkeley_db):
        why = "False needs a Postfix recipe with without_berkeley_db edits"
        raise bad_field(recipe.name, "berkeley_db", why)
    if recipe.upstream is not None:
        up = recipe.upstream
        if not FINGERPRINT_RE.fullmatch(up.fingerprint):
            raise bad_field(recipe.name, "upstream.fingerprint", "40 uppercase hex digits expected")
        if not up.mirrors:
            raise bad_field(recipe.name, "upstream.mirrors", "no mirror listed")
        if not up.key_path.is_file():
            raise bad_field(recipe.name, "upstream.signing_key", f"{up.key_path} does not exist")
        if "{version}" not in up.tarball_name:
            raise bad_field(recipe.name, "upstream.tarball_name", "must contain {version}")
    if not recipe.binary_packages:
        raise bad_field(recipe.name, "binary_packages", "no target listed")
    if set(recipe.binary_packages) != set(recipe.expected_hardening):
        raise bad_field(
            recipe.name, "binary_packages", "must list the same targets as expected_hardening"
        )
    unknown_targets = set(recipe.adjustments) - set(recipe.binary_packages)
    if unknown_targets:
        raise bad_field(recipe.name, "adjustments", f"unknown targets {sorted(unknown_targets)}")
    _check_hardening(recipe)
    if recipe.rebuild < 1:
        raise bad_field(recipe.name, "rebuild", "the rebuild counter starts at 1")
    for companion in recipe.companions:
        if (
            len(companion) != 2
            or not NAME_RE.fullmatch(companion[0])
            or companion[0] == recipe.name
        ):
            raise bad_field(
                recipe.name, "companions", f"{companion!r} is not (other-recipe, version)"
            )
    for listing in recipe.release_listings:
        if not re.match(r"^(https?|file)://[^\s]+/$", listing):
            raise bad_field(
                recipe.name, "release_listings", f"{listing!r} is not an http(s):// folder URL"
            )
    _check_deviations(recipe)
    if recipe.templates and not (template_root() / recipe.templates).is_dir():
        raise bad_field(recipe.name, "templates", f"debian-templates/{recipe.templates} is missing")
    for overlay in recipe.overlays:
        if overlay.mode not in OVERLAY_MODES:
            raise bad_field(
                recipe.name, "overlays", f"mode {overlay.mode!r} not in {OVERLAY_MODES}"
            )
        if not overlay.path.startswith("debian/") or ".." in overlay.path.split("/"):
            raise bad_field(recipe.name, "overlays", f"{overlay.path} is not a file under debian/")
        if template_file(recipe, overlay.template) is None:
            raise bad_field(recipe.name, "overlays", f"template {overlay.template} does not exist")


def template_root() -> Path:
    """The folder of jinja2 packaging overlays (debian-templates/)."""
    return TEMPLATES_DIR


def template_dirs(recipe: Recipe) -> list[Path]:
    """Where a recipe's templates are looked up: its own folder first, then common/."""
    return [template_root() / recipe.templates, template_root() / "common"]


def template_file(recipe: Recipe, name: str) -> Path | None:
    """The template file `name` resolves to for `recipe`, or None."""
    for folder in template_dirs(recipe):
        if (folder / name).is_file():
            return folder / name
    return None
