"""verify-reproducible: build one .dsc twice, the second time deliberately different, compare.

Build A is the normal build (reused when the workspace already holds it). Build B runs sbuild
again on the same .dsc and chroot with another build path, job count, build user (name, uid,
home), clock, time zone, locale and umask (variation.py). Every .deb is compared byte for
byte; diffoscope explains the pairs that differ (compare.py). What each build really saw is
read back from its log (buildlog.py), so a variation that did not take effect is reported as
not applied instead of being claimed (record.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from builder.build.buildlog import observe
from builder.build.compare import compare_debs, explain_differences
from builder.build.record import REPORTS_DIR, Verification, make_record, write_record
from builder.build.sbuild import BuildResult, SbuildVariant, build_package
from builder.build.stagedir import make_stage_dir
from builder.build.variation import VARIANT_NAME, b_jobs, variant_args, write_variation_files
from builder.core.atomic import remove_path
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")


# build_package, or a stand-in with its signature (tests replace sbuild with one).
Builder = Callable[..., BuildResult]


def scratch_dir(ctx: Context, recipe: str, version: str, target: str) -> Path:
    """Where build B's results go: beside, never inside, the normal build's folder."""
    return ctx.reproducible_dir(recipe, version, target) / VARIANT_NAME


def build_variant(
    ctx: Context,
    recipe: str,
    version: str,
    dsc: Path,
    dist: Distribution,
    jobs: int,
    build: Builder,
) -> BuildResult:
    """Build B: the same .dsc with every variation, into the scratch folder."""
    where = make_stage_dir(ctx, f"variation-{recipe}-{dist.name}")
    try:
        config = write_variation_files(ctx, where)
        variant = SbuildVariant(VARIANT_NAME, variant_args(), (("SBUILD_CONFIG", str(config)),))
        out = scratch_dir(ctx, recipe, version, dist.name)
        log.info("%s: build B of %s with variations into %s", dist.name, dsc.name, out)
        return build(ctx, recipe, dsc, dist, out, jobs=jobs, variant=variant)
    finally:
        remove_path(where)


def verify_reproducible(
    ctx: Context,
    recipe: str,
    version: str,
    dsc: Path,
    dist: Distribution,
    *,
    build: Builder = build_package,
) -> Verification:
    """Build `dsc` twice (A normal, B varied), compare every .deb, record the result."""
    # As `pfbuild release` builds it (no --jobs), so a release reuses it and the other way round.
    a = observe(build(ctx, recipe, dsc, dist, ctx.build_dir(recipe, version, dist.name)))
    if a.result.reused:
        log.info(
            "%s: build A is the normal build already in %s (same key)", dist.name, a.result.out_dir
        )
    b = observe(build_variant(ctx, recipe, version, dsc, dist, b_jobs(a.facts.jobs), build))
    pairs = compare_debs(a.result.out_dir, a.result.files, b.result.out_dir, b.result.files)
    if not pairs:
        raise PfbuildError(
            f"the build of {dsc.name} for {dist.name} made no .deb",
            f"see {a.result.log_path}",
            "check the package's debian/control",
        )
    findings, no_diffoscope = explain_differences(
        ctx,
        f"{recipe}-{dist.name}",
        pairs,
        a.result.out_dir,
        b.result.out_dir,
        ctx.report_dir(recipe, version, dist.name) / REPORTS_DIR,
    )
    record = make_record(
        recipe,
        version,
        dist.name,
        dsc,
        a=a,
        b=b,
        pairs=pairs,
        findings=findings,
        no_diffoscope=no_diffoscope,
    )
    report, manifest = write_record(ctx, record)
    verdict = record["verdict"]
    return Verification(
        dist.name, verdict, tuple(pairs), findings, no_diffoscope, report, manifest, record
    )
