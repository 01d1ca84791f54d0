"""The build stage: one sbuild run per target, side by side if asked, failures kept apart."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builder.core.context import Context
from builder.model.distro import Distribution
from builder.core.errors import PfbuildError
from builder.build.sbuild import BuildResult, build_package

log = logging.getLogger("pfbuild")

PrepareSource = Callable[[Distribution], Path]


def make_jobs_per_build(parallel_targets: int) -> int:
    """Compiler jobs for each sbuild so that side-by-side builds share the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, parallel_targets))


def build_targets(
    ctx: Context,
    recipe: str,
    version: str,
    targets: list[Distribution],
    prepare_source: PrepareSource,
    *,
    parallel: int = 1,
) -> list[BuildResult]:
    """Build every target; a failed target does not cost the others their results."""
    jobs = make_jobs_per_build(min(parallel, len(targets)))

    def one(dist: Distribution) -> BuildResult:
        dsc = prepare_source(dist)
        out = ctx.build_dir(recipe, version, dist.name)
        return build_package(ctx, recipe, dsc, dist, out, jobs=jobs)

    results: list[BuildResult] = []
    failures: list[tuple[str, PfbuildError]] = []
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {dist.name: pool.submit(one, dist) for dist in targets}
        for name, future in futures.items():
            try:
                results.append(future.result())
            except PfbuildError as exc:
                log.error("%s: %s", name, exc.one_line())
                if exc.details:
                    log.error("%s: last lines of the log:\n%s", name, exc.details)
                failures.append((name, exc))
    if failures:
        built = ", ".join(r.target for r in results) or "none"
        raise PfbuildError(
            f"build failed for {', '.join(n for n, _ in failures)} (built: {built})",
            "; ".join(f"{n}: {e.why or e.what}" for n, e in failures),
            "read the build log named above; finished targets are kept",
        )
    return results
