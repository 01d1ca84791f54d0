"""The build stage: one sbuild run per target, side by side if asked, failures kept apart."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builder.build.sbuild import BuildResult, build_package
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

PrepareSource = Callable[[Distribution], Path]


def jobs_per_build(jobs: int, parallel_targets: int) -> int:
    """Compiler jobs for each sbuild: as asked, else a share of the cores when builds run side
    by side, else 0 (no --jobs: the package's rules decide)."""
    if jobs or parallel_targets <= 1:
        return jobs
    return max(1, (os.cpu_count() or 1) // parallel_targets)


def build_target(
    ctx: Context,
    recipe: str,
    version: str,
    dsc: Path,
    dist: Distribution,
    *,
    jobs: int = 0,
    use_ccache: bool = True,
) -> BuildResult:
    """Build `dsc` for `dist` into the workspace's build folder (reused when already built)."""
    out_dir = ctx.build_dir(recipe, version, dist.name)
    return build_package(ctx, recipe, dsc, dist, out_dir, jobs=jobs, use_ccache=use_ccache)


def build_targets(
    ctx: Context,
    recipe: str,
    version: str,
    targets: list[Distribution],
    prepare_source: PrepareSource,
    *,
    jobs: int = 0,
    parallel: int = 1,
    use_ccache: bool = True,
) -> list[BuildResult]:
    """Build every target, `parallel` side by side; a failed target does not cost the others."""
    jobs = jobs_per_build(jobs, min(parallel, len(targets)))

    def one(dist: Distribution) -> BuildResult:
        dsc = prepare_source(dist)
        return build_target(ctx, recipe, version, dsc, dist, jobs=jobs, use_ccache=use_ccache)

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
