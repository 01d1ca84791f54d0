"""What each release action runs: a stage function, its outputs recorded for the manifest."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from builder.build.sbuild import dsc_files
from builder.build.stage import build_target
from builder.check.autopkgtest import AUTOPKGTEST_JSON, require_autopkgtest_passed
from builder.check.config.packaged import CONFIG_JSON, require_clean
from builder.check.lifecycle import LIFECYCLE_JSON, require_lifecycle_passed
from builder.check.report import REPORT_JSON, require_passed
from builder.check.stage import (
    autopkgtest_target,
    check_target,
    config_gate_target,
    lifecycle_target,
)
from builder.core.atomic import pid_temp_dir
from builder.core.checkout import git_revision
from builder.core.context import Context
from builder.core.digest import file_entry
from builder.fetch.sources import fetch
from builder.image import build as image
from builder.image.stage import build_variant_image, prove_variant
from builder.model.distro import Distribution
from builder.model.recipe import Recipe
from builder.pipeline.actions import Outputs
from builder.pipeline.attest import attest_release
from builder.pipeline.request import ReleaseRequest
from builder.pipeline.revisions import published_inputs
from builder.publish import repo as publish
from builder.publish import signing
from builder.publish.live import fetch_live
from builder.source.package import prepare_source

log = logging.getLogger("pfbuild")


def fetch_runner(
    ctx: Context, recipe: Recipe, version: str
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_fetch(_deps: Mapping[str, Outputs]) -> Outputs:
        result = fetch(ctx, recipe, version)
        return {
            "files": [
                {
                    "role": f.role,
                    "name": f.name,
                    "path": str(f.path),
                    "sha256": f.sha256,
                    "url": f.url,
                    "verified_by": f.verified_by,
                }
                for f in result.files
            ]
        }

    return run_fetch


def source_runner(
    ctx: Context, recipe: Recipe, version: str, dist: Distribution
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_source(_deps: Mapping[str, Outputs]) -> Outputs:
        dsc = prepare_source(ctx, recipe, version, dist)
        return {"dsc": str(dsc), "files": [file_entry(p) for p in dsc_files(dsc)]}

    return run_source


def build_runner(
    ctx: Context,
    recipe: Recipe,
    version: str,
    dist: Distribution,
    jobs: int,
    *,
    use_ccache: bool = True,
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_build(deps: Mapping[str, Outputs]) -> Outputs:
        (source,) = deps.values()
        dsc = Path(source["dsc"])
        result = build_target(
            ctx, recipe.name, version, dsc, dist, jobs=jobs, use_ccache=use_ccache
        )
        return {
            "dir": str(result.out_dir),
            "files": [file_entry(result.out_dir / name) for name in result.files],
            "log": str(result.log_path),
            "ccache": asdict(result.ccache) if result.ccache else None,
        }

    return run_build


def check_runner(
    ctx: Context, recipe: Recipe, version: str, dist: Distribution
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_check(_deps: Mapping[str, Outputs]) -> Outputs:
        report, report_dir = check_target(ctx, recipe.name, version, dist)
        require_passed(report, report_dir)
        tests, _ = autopkgtest_target(ctx, recipe.name, version, dist)
        require_autopkgtest_passed(tests, report_dir)
        gate = config_gate_target(ctx, recipe.name, version, dist)
        if gate is not None:
            require_clean(gate, dist.name)
        cycle = lifecycle_target(ctx, recipe.name, version, dist)
        if cycle is not None:
            require_lifecycle_passed(cycle, report_dir)
        return {
            "lifecycle": None
            if cycle is None
            else {
                "verdict": cycle.verdict,
                "report": str(report_dir / LIFECYCLE_JSON),
                "steps": len(cycle.steps),
                "notes": list(cycle.notes),
            },
            "config_gate": None
            if gate is None
            else {
                "findings": len(gate.findings),
                "report": str(report_dir / CONFIG_JSON),
            },
            "verdict": report.verdict,
            "report": str(report_dir / REPORT_JSON),
            "autopkgtest": {
                "verdict": tests.verdict,
                "report": str(report_dir / AUTOPKGTEST_JSON),
                "tests": {t.name: t.outcome for t in tests.tests},
                "deviations": list(tests.deviations),
            },
        }

    return run_check


def publish_runner(
    ctx: Context, request: ReleaseRequest, builds: Sequence[tuple[str, str]]
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_publish(_deps: Mapping[str, Outputs]) -> Outputs:
        key = signing.ensure_signing_key(ctx, signing.SigningConfig.from_env(os.environ))
        try:
            options = publish.PublishOptions(url=request.repo_url)
            with pid_temp_dir(ctx.tmp_dir, "live-") as scratch:
                # Fetched again, not the tree the plan read: another run may have published
                # since.
                base = (
                    fetch_live(request.base, scratch / "tree", key.fingerprint)
                    if request.base
                    else None
                )
                states = publish.publish_repo(
                    ctx,
                    request.targets,
                    key,
                    options,
                    builds=builds,
                    base=base,
                    inputs=published_inputs(request.targets, builds, request.rebuilds),
                )
        finally:
            signing.stop_agent(ctx, key)
        tree = ctx.apt_tree.resolve()
        changed = {s.suite: s.snapshot for s in states}
        suites = {}
        for dist in request.targets:
            # Through the live link, not the generation: later flips (attest adds one) keep the
            # suites' InRelease as it is but drop old generations.
            inrelease = ctx.apt_tree / "dists" / dist.name / "InRelease"
            suites[dist.name] = {
                "snapshot": changed.get(dist.name, "unchanged"),
                "inrelease": file_entry(inrelease),
            }
        return {"tree": str(tree), "key": key.fingerprint, "suites": suites}

    return run_publish


def source_date_epoch(build_files: Sequence[Mapping[str, str]]) -> int:
    """SOURCE_DATE_EPOCH as the build recorded it in its .buildinfo (0 when absent)."""
    for entry in build_files:
        if entry["path"].endswith(".buildinfo"):
            text = Path(entry["path"]).read_text()
            match = re.search(r'SOURCE_DATE_EPOCH="?(\d+)"?', text)
            if match:
                return int(match.group(1))
    return 0


def image_runner(
    ctx: Context, version: str, variant: str, build_action: str
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_image(deps: Mapping[str, Outputs]) -> Outputs:
        config = image.ImageConfig(
            version=version,
            revision=git_revision(),
            created_epoch=source_date_epoch(deps[build_action]["files"]),
        )
        built = build_variant_image(ctx, config, variant)
        return {"image_id": built.image_id, "tags": list(built.tags), "size": built.size}

    return run_image


def image_test_runner(ctx: Context, variant: str) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_image_test(deps: Mapping[str, Outputs]) -> Outputs:
        (built,) = deps.values()
        proofs = prove_variant(ctx, variant, built["tags"][0])
        return {"proofs": [{"name": p.name, "ok": p.ok, "detail": p.detail} for p in proofs]}

    return run_image_test


def attest_runner(
    ctx: Context, request: ReleaseRequest, recipes: Sequence[tuple[Recipe, str]]
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    # Made when the release is planned: the provenance's startedOn is this invocation's start.
    started = time.time()

    def run_attest(deps: Mapping[str, Outputs]) -> Outputs:
        key = signing.ensure_signing_key(ctx, signing.SigningConfig())
        try:
            return attest_release(ctx, request, recipes, deps, key, started)
        finally:
            signing.stop_agent(ctx, key)

    return run_attest
