"""Importing verified artifacts: each proven again on a private copy, installed only if all pass.

The artifact's own claims (hashes, verdict) are checked in artifact.py; here the contents are
recomputed: the packages read whole, the build records compared, the hardening check run again.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from builder.check.hardening import check_build
from builder.check.report import HardeningReport, write_report
from builder.check.stage import recipe_expectations
from builder.core.atomic import atomic_dir, link_or_copy
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import TARGETS, Distribution
from builder.model.loader import load_recipe
from builder.model.recipe import Recipe
from builder.model.version import rebuild_counter, target_version
from builder.publish.artifact import (
    BUILD_LOG,
    CHECK_FIX,
    CLAIMED_PREFIX,
    QA_FILES,
    REPORT_FILES,
    Artifact,
    check_file,
    find_artifacts,
    verify_artifacts,
)
from builder.publish.inputs import PACKAGE_SUFFIXES, check_build_records, read_whole_deb

log = logging.getLogger("pfbuild")


@dataclass(frozen=True)
class StagedBuild:
    """An artifact copied out of its folder and proven there, ready to become a build."""

    artifact: Artifact
    build_dir: Path
    report_dir: Path
    report: HardeningReport


def _copy_out(artifact: Artifact, build_dir: Path, report_dir: Path) -> None:
    """Copy every file (no hard link: the folder may change later) and hash the copy."""
    for entry in artifact.files:
        if entry.name in (*REPORT_FILES, *QA_FILES):
            dest = report_dir / f"{CLAIMED_PREFIX}{entry.name}"
        else:
            dest = build_dir / entry.name
        shutil.copyfile(artifact.path / entry.name, dest)
        check_file(dest, entry)


def _check_packages(artifact: Artifact, recipe: Recipe, dist: Distribution, build_dir: Path) -> str:
    """Every package is readable whole and one of the recipe's, at its version and arch."""
    packages = sorted(p for p in build_dir.iterdir() if p.suffix in PACKAGE_SUFFIXES)
    if packages:
        # The live repository may have asked for a later +pfN (`pfbuild build --rebuild`).
        found = read_whole_deb(packages[0]).version
        recipe = replace(recipe, rebuild=rebuild_counter(recipe, artifact.version, dist, found))
    version = target_version(recipe, artifact.version, dist)
    binaries = recipe.binary_packages[dist.name]
    allowed = {*binaries, *(f"{name}-dbgsym" for name in binaries)}
    for path in sorted(p for p in build_dir.iterdir() if p.suffix in PACKAGE_SUFFIXES):
        info = read_whole_deb(path)
        if info.package not in allowed:
            raise PfbuildError(
                f"{path.name} holds the package {info.package!r}, which {recipe.name} does not "
                f"build for {dist.name}",
                f"its binary packages are {', '.join(binaries)} (and their -dbgsym)",
                CHECK_FIX,
            )
        if info.version != version or info.architecture not in (dist.arch, "all"):
            raise PfbuildError(
                f"{path.name} is {info.package} {info.version} for {info.architecture}, not "
                f"{version} for {dist.arch} or all",
                f"pfbuild builds {recipe.name} {artifact.version} for {dist.name} as {version}",
                CHECK_FIX,
            )
        plain = version.split(":", 1)[-1]
        if path.name != f"{info.package}_{plain}_{info.architecture}{path.suffix}":
            raise PfbuildError(
                f"{path.name} holds {info.package} {info.version} {info.architecture}",
                "a package's file name must be the one its control file gives",
                CHECK_FIX,
            )
    return version


def stage_artifact(ctx: Context, artifact: Artifact, staging: Path) -> StagedBuild:
    """Copy `artifact` into `staging`, prove its contents, and run the hardening check there."""
    recipe = load_recipe(artifact.recipe)
    dist = TARGETS[artifact.target]
    build_dir, report_dir = staging / "build", staging / "report"
    build_dir.mkdir(parents=True)
    report_dir.mkdir()
    try:
        _copy_out(artifact, build_dir, report_dir)
        version = _check_packages(artifact, recipe, dist, build_dir)
        check_build_records(build_dir, recipe.source_package, version, dist.arch)
        expected = recipe_expectations(recipe.name, dist)
        report = check_build(ctx, build_dir, dist, dist.arch, expected)
    except PfbuildError as exc:
        # Name the artifact, not the temporary copy the problem was found in.
        raise PfbuildError(f"artifact {artifact.path}: {exc.what}", exc.why, exc.fix) from None
    write_report(report, report_dir)
    if artifact.claimed is not None and artifact.claimed != report.verdict:
        raise PfbuildError(
            f"artifact {artifact.path}: its report says {artifact.claimed!r}, the hardening "
            f"check of its packages here says {report.verdict!r}",
            "the verdict an artifact carries is not what its packages show",
            CHECK_FIX,
        )
    return StagedBuild(artifact, build_dir, report_dir, report)


def _install(ctx: Context, staged: StagedBuild) -> None:
    """Make a proven artifact this workspace's build and report of its recipe and target."""
    artifact = staged.artifact
    build_names = sorted(p.name for p in staged.build_dir.iterdir())
    with atomic_dir(ctx.build_dir(artifact.recipe, artifact.version, artifact.target)) as tmp:
        for name in build_names:
            link_or_copy(staged.build_dir / name, tmp / name)
        result = {
            "key": f"artifact:{artifact.build_key}",
            "files": [n for n in build_names if n != BUILD_LOG],
            "target": artifact.target,
            "imported_from": str(artifact.path),
        }
        (tmp / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    with atomic_dir(ctx.report_dir(artifact.recipe, artifact.version, artifact.target)) as tmp:
        for path in sorted(staged.report_dir.iterdir()):
            link_or_copy(path, tmp / path.name)
    log.info(
        "%s: imported %s %s from %s (hardening check here: %s)",
        artifact.target, artifact.recipe, artifact.version, artifact.path, staged.report.verdict,
    )  # fmt: skip


def import_verified(
    ctx: Context, artifacts: Sequence[Artifact], *, allow_unchecked: bool = False
) -> list[StagedBuild]:
    """Prove every artifact on a copy, then install them all (none when one is refused)."""
    with tempfile.TemporaryDirectory(dir=ctx.tmp_dir, prefix="import-") as tmp:
        staged = [stage_artifact(ctx, a, Path(tmp) / str(i)) for i, a in enumerate(artifacts)]
        for build in staged:
            report, artifact = build.report, build.artifact
            if report.verdict == "pass":
                continue
            if not allow_unchecked:
                raise PfbuildError(
                    f"artifact {artifact.path}: {artifact.recipe} {artifact.version} for "
                    f"{artifact.target} fails its hardening check",
                    f"{len(report.failures)} problem(s), first: {report.failures[0]}",
                    "fix the build (or pass --allow-unchecked for a local experiment)",
                )
            log.warning("%s: importing %s despite its failed check", artifact.target, artifact.path)
        for build in staged:
            _install(ctx, build)
    return staged


def import_artifacts(
    ctx: Context, roots: Sequence[Path], *, allow_unchecked: bool = False
) -> list[Artifact]:
    """Verify every artifact under `roots`, then install them all (none when one is bad)."""
    artifacts = verify_artifacts(find_artifacts(roots))
    import_verified(ctx, artifacts, allow_unchecked=allow_unchecked)
    return artifacts
