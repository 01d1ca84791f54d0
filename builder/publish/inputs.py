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
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.publish.aptly import ARCHITECTURES

log = logging.getLogger("pfbuild")


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
