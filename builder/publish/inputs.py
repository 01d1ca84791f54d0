"""What publish takes in: the .debs of checked builds, each vouched for and fit for its suite."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from builder.core import run
from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.errors import CommandError, PfbuildError
from builder.model.distro import Distribution
from builder.publish.aptly import ARCHITECTURES

log = logging.getLogger("pfbuild")

# The files dpkg-deb reads: packages, installer packages and Ubuntu's debug symbol packages.
PACKAGE_SUFFIXES = (".deb", ".udeb", ".ddeb")


@dataclass(frozen=True)
class DebInfo:
    """The identity of one binary package file."""

    path: Path
    package: str
    version: str
    architecture: str


@dataclass(frozen=True)
class Build:
    """One build of a recipe version for a target, as the build stage left it."""

    recipe: str
    version: str
    path: Path


def checked_debs(build_dir: Path) -> list[Path]:
    """The .debs of a build directory, each listed in a .changes there with a matching SHA-256."""
    changes_files = sorted(build_dir.glob("*.changes"))
    if not changes_files:
        raise PfbuildError(
            f"no .changes file in {build_dir}",
            "pfbuild publishes only build results whose files a .changes vouches for",
            "run the build stage for this target again",
        )
    listed: dict[str, str] = {}
    for changes_file in changes_files:
        with changes_file.open() as handle:
            changes = deb822.Changes(handle)
        for entry in changes.get("Checksums-Sha256", []):
            listed[entry["name"]] = entry["sha256"]
    debs = sorted(build_dir.glob("*.deb"))
    for deb in debs:
        if deb.name not in listed:
            raise PfbuildError(
                f"{deb} is not listed in any .changes of its build",
                "a stray file must not reach the repository",
                f"remove it or rebuild into a clean {build_dir}",
            )
        if sha256_file(deb) != listed[deb.name]:
            raise PfbuildError(
                f"{deb} does not match the SHA-256 in its .changes",
                "the file changed after the build",
                "rebuild this target",
            )
    for name in listed:
        if name.endswith(".deb") and not (build_dir / name).is_file():
            raise PfbuildError(
                f"{build_dir} lacks {name}, which its .changes lists",
                fix="rebuild this target",
            )
    if not debs:
        raise PfbuildError(f"no .deb in {build_dir}", fix="run the build stage for this target")
    return debs


def deb_info(deb: Path) -> DebInfo:
    """Read Package, Version and Architecture from a .deb's control file."""
    text = run.output(["dpkg-deb", "--field", deb, "Package", "Version", "Architecture"])
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    try:
        return DebInfo(deb, fields["Package"], fields["Version"], fields["Architecture"])
    except KeyError:
        raise PfbuildError(f"{deb} has no complete control file") from None


def deb_read_cmdlines(deb: Path) -> list[list[str]]:
    """dpkg-deb calls that read a package's control member and data member to their ends."""
    # --info unpacks the whole control archive; --contents lists the data archive, so its
    # decompressor runs to the end and checks the stream (a truncated file fails here).
    return [["dpkg-deb", "--info", str(deb)], ["dpkg-deb", "--contents", str(deb)]]


def read_whole_deb(deb: Path) -> DebInfo:
    """Read a .deb (or .ddeb) whole with dpkg-deb; return its identity, refuse a damaged one."""
    try:
        for cmd in deb_read_cmdlines(deb):
            run.run(cmd)
        return deb_info(deb)
    except CommandError as exc:
        lines = exc.tail.strip().splitlines()
        raise PfbuildError(
            f"{deb.name} is not a readable Debian package",
            f"dpkg-deb: {lines[-1] if lines else 'no output'}",
            "do not use it: rebuild that target",
        ) from None


# ---- .changes and .buildinfo ------------------------------------------------------------------


def _records(build_dir: Path, suffix: str) -> Path:
    found = sorted(build_dir.glob(f"*{suffix}"))
    if len(found) != 1:
        raise PfbuildError(
            f"the build holds {len(found)} {suffix} files, not one",
            f"a build leaves exactly one {suffix} describing its packages",
            "take the build's files as sbuild left them",
        )
    return found[0]


def _listed_files(record: Path, doc: deb822.Deb822) -> dict[str, tuple[str, int]]:
    listed: dict[str, tuple[str, int]] = {}
    try:
        for entry in doc.get("Checksums-Sha256") or []:
            name = str(entry["name"])
            if not name or "/" in name or name.startswith("."):
                raise ValueError(name)
            listed[name] = (str(entry["sha256"]), int(entry["size"]))
    except (KeyError, ValueError, TypeError):
        raise PfbuildError(
            f"{record.name} has a malformed Checksums-Sha256 entry", fix="rebuild that target"
        ) from None
    return listed


def _identity(record: Path, doc: deb822.Deb822) -> tuple[str, str, frozenset[str]]:
    source = str(doc.get("Source") or "").split(" ")[0]
    version = str(doc.get("Version") or "")
    archs = frozenset(str(doc.get("Architecture") or "").split())
    if not source or not version or not archs:
        raise PfbuildError(
            f"{record.name} lacks Source, Version or Architecture", fix="rebuild that target"
        )
    return source, version, archs


def _describe(identity: tuple[str, str, frozenset[str]]) -> str:
    return f"{identity[0]} {identity[1]} ({' '.join(sorted(identity[2]))})"


def build_environment(build_dir: Path) -> tuple[str, str, dict[str, str]] | None:
    """Source, version and the packages (name -> version) a build ran with, from its .buildinfo.

    None when the build has no single .buildinfo to say so (a hand-made build published
    unchecked): its environment is unknown, not empty.
    """
    found = sorted(build_dir.glob("*.buildinfo"))
    if len(found) != 1:
        return None
    with found[0].open() as handle:
        buildinfo = deb822.BuildInfo(handle)
    source, version, _archs = _identity(found[0], buildinfo)
    packages = {
        rel["name"]: rel["version"][1]
        for alternatives in buildinfo.relations["installed-build-depends"] or ()
        for rel in alternatives
        if rel.get("version") and rel["version"][0] == "="
    }
    return source, version, packages


def check_build_records(build_dir: Path, source: str, version: str, arch: str) -> None:
    """Refuse unless .changes and .buildinfo agree with each other and with every package file."""
    changes_path = _records(build_dir, ".changes")
    buildinfo_path = _records(build_dir, ".buildinfo")
    with changes_path.open() as handle:
        changes = deb822.Changes(handle)
    with buildinfo_path.open() as handle:
        buildinfo = deb822.BuildInfo(handle)
    identity = _identity(changes_path, changes)
    other = _identity(buildinfo_path, buildinfo)
    if identity != other:
        raise PfbuildError(
            f"{changes_path.name} and {buildinfo_path.name} describe different builds",
            f"{_describe(identity)} against {_describe(other)}",
            "take the build's files as sbuild left them",
        )
    if identity[:2] != (source, version) or not identity[2] <= {arch, "all"}:
        raise PfbuildError(
            f"{changes_path.name} is for {_describe(identity)}, not {source} {version} ({arch})",
            "the build records must describe the build of this recipe and target",
            "rebuild that target with pfbuild",
        )
    packages = {p.name for p in build_dir.iterdir() if p.suffix in PACKAGE_SUFFIXES}
    for record, doc, want in (
        (changes_path, changes, packages | {buildinfo_path.name}),
        (buildinfo_path, buildinfo, packages),
    ):
        listed = _listed_files(record, doc)
        unlisted, extra = sorted(want - set(listed)), sorted(set(listed) - want)
        if unlisted or extra:
            raise PfbuildError(
                f"{record.name} does not list the build's files: "
                + ", ".join([*(f"{n} missing" for n in unlisted), *(f"{n} extra" for n in extra)]),
                "every package file must be vouched for by both build records",
                "take the build's files as sbuild left them",
            )
        for name, (sha256, size) in sorted(listed.items()):
            path = build_dir / name
            if path.stat().st_size != size or sha256_file(path) != sha256:
                raise PfbuildError(
                    f"{name} does not match the SHA-256 and size {record.name} gives",
                    "the file or its build record changed after the build",
                    "do not use it: rebuild that target",
                )


def check_deb_for_target(info: DebInfo, dist: Distribution) -> None:
    """Refuse a .deb that does not belong in `dist`'s suite."""
    if not info.version.endswith(dist.version_suffix):
        # The pool is shared by the suites: the per-target suffix keeps file names distinct.
        raise PfbuildError(
            f"{info.path.name} has version {info.version}, not ending in {dist.version_suffix}",
            f"every {dist.name} package carries its target's suffix, so the suites' shared "
            "pool never holds two different files under one name",
            "build it with pfbuild for this target",
        )
    if info.architecture not in ARCHITECTURES:
        raise PfbuildError(
            f"{info.path.name} is for architecture {info.architecture}",
            f"the repository carries {', '.join(ARCHITECTURES)}",
        )


def find_builds(
    ctx: Context, dist: Distribution, recipe: str | None, version: str | None
) -> list[Build]:
    """The builds to publish for `dist`: one named build, or every build there is."""
    if recipe is not None and version is not None:
        path = ctx.build_dir(recipe, version, dist.name)
        if not path.is_dir():
            raise PfbuildError(
                f"no {dist.name} build of {recipe} {version} in {path}",
                fix=f"run `pfbuild build {recipe} {version} --target {dist.name}`, "
                "or publish only the targets you built with --target",
            )
        return [Build(recipe, version, path)]
    # builds/<recipe>/<version>/<target>: every build of this target in the workspace.
    builds_root = ctx.build_dir("_", "_", dist.name).parents[2]
    found = sorted(p for p in builds_root.glob(f"*/*/{dist.name}") if p.is_dir())
    return [Build(p.parent.parent.name, p.parent.name, p) for p in found]


def require_checked(ctx: Context, build: Build, dist: Distribution) -> None:
    """Refuse a build whose hardening check did not pass (or never ran)."""
    report = ctx.report_dir(build.recipe, build.version, dist.name) / "hardening.json"
    check = f"pfbuild check {build.recipe} {build.version} --target {dist.name}"
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        raise PfbuildError(
            f"the {dist.name} build of {build.recipe} {build.version} has not been checked",
            f"there is no readable {report}",
            f"run `{check}` (or pass --allow-unchecked for a local experiment)",
        ) from None
    verdict = data.get("verdict") if isinstance(data, dict) else None
    if verdict != "pass":
        raise PfbuildError(
            f"the {dist.name} build of {build.recipe} {build.version} failed its check",
            f"{report} says verdict {verdict!r}",
            f"fix the build and run `{check}` again",
        )


def collect_debs(
    ctx: Context,
    dist: Distribution,
    recipe: str | None,
    version: str | None,
    *,
    allow_unchecked: bool = False,
) -> list[Path]:
    """Every checked .deb to publish for `dist`, validated before aptly sees any of them."""
    debs: list[Path] = []
    for build in find_builds(ctx, dist, recipe, version):
        if allow_unchecked:
            log.warning("%s: publishing %s without a passed check", dist.name, build.path)
        else:
            require_checked(ctx, build, dist)
        for deb in checked_debs(build.path):
            check_deb_for_target(deb_info(deb), dist)
            debs.append(deb)
    return debs
