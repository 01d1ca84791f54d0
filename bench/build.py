"""Time `pfbuild build` against plain sbuild on the same .dsc and the same chroot, in one run.

Usage: python -m bench.build [--dsc PATH] [--target trixie] [--workspace DIR] [--rounds N]
Without --dsc a tiny test package is made. Prints a table and writes bench/results/build.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from builder.build.depschroot import ensure_deps_chroot
from builder.build.sbuild import build_package, dsc_files, sbuild_cmdline
from builder.build.stagedir import make_stage_dir
from builder.core import run
from builder.core.atomic import link_or_copy
from builder.core.context import Context, prepare_workspace
from builder.model.distro import get_target
from tests.fixtures.packages import make_source_package

RESULTS = Path(__file__).resolve().parent / "results"


def time_plain_sbuild(ctx: Context, dsc: Path, chroot: Path, target: str) -> float:
    """The bare tool: sbuild on a staged copy of the .dsc, as the build user."""
    dist = get_target(target)
    stage = make_stage_dir(ctx, "bench-plain")
    try:
        for path in dsc_files(dsc):
            link_or_copy(path, stage / path.name)
        out = stage / "out"
        out.mkdir()
        for path in [*stage.iterdir()]:
            shutil.chown(path, user=ctx.build_user, group=ctx.build_user)
        started = time.monotonic()
        run.run(
            sbuild_cmdline(stage / dsc.name, dist, chroot, out),
            user=ctx.build_user,
            cwd=stage,
            log_path=stage / "sbuild.log",
        )
        return time.monotonic() - started
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsc", type=Path)
    parser.add_argument("--target", default="trixie")
    parser.add_argument("--workspace", type=Path, default=Path("/var/tmp/pfbuild-test-work"))  # noqa: S108
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    ctx = Context(workspace=prepare_workspace(args.workspace))
    dist = get_target(args.target)
    with tempfile.TemporaryDirectory(prefix="pfbuild-bench-") as tmp:
        dsc = args.dsc or make_source_package(Path(tmp), version="9.0", distribution=dist.name)
        recipe = dsc.name.split("_")[0]
        deps = ensure_deps_chroot(ctx, dist, recipe, dsc)
        rows: list[dict[str, float]] = []
        for _ in range(args.rounds):
            plain = time_plain_sbuild(ctx, dsc, deps.path, dist.name)
            out = Path(tmp) / f"out-{len(rows)}"
            started = time.monotonic()
            # Without the compiler cache: this measures the orchestration, not ccache.
            build_package(ctx, recipe, dsc, dist, out, use_ccache=False)
            ours = time.monotonic() - started
            rows.append({"plain_sbuild_s": plain, "pfbuild_build_s": ours, "ratio": ours / plain})
    print(f"{'round':>5}  {'sbuild (s)':>10}  {'pfbuild (s)':>11}  {'ratio':>6}")
    for i, row in enumerate(rows, 1):
        print(
            f"{i:>5}  {row['plain_sbuild_s']:>10.1f}  {row['pfbuild_build_s']:>11.1f}"
            f"  {row['ratio']:>6.3f}"
        )
    RESULTS.mkdir(exist_ok=True)
    report = {"dsc": dsc.name, "target": dist.name, "rounds": rows}
    (RESULTS / "build.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
