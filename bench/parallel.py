"""A cold release with its actions one after another, then side by side, on the same machine.

Usage: python -m bench.parallel [--version 3.11.6] [--parallel N] [--no-image] [--keep]
Each release runs in a fresh workspace (chroots, deps chroots, builds, testbeds: all made
again; Docker's layer cache and the base images' records are the workspace's, so images are
rebuilt too). The serial one runs with --parallel 1, the other with --parallel N (default:
pfbuild's own default for this machine). Writes bench/results/parallel.json with the wall
times, the ratio, and the seconds per stage of each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from bench.release import RESULTS, per_stage, release
from builder.commands.common import host_parallel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", default="3.11.6")
    parser.add_argument("--parallel", type=int, default=0, help="default: pfbuild's default")
    parser.add_argument("--no-image", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the two workspaces")
    args = parser.parse_args()
    parallel = args.parallel or int(host_parallel())
    extra = ("--no-image",) if args.no_image else ()
    report: dict[str, object] = {"version": args.version, "parallel": parallel}
    times: dict[str, float] = {}
    for label, n in (("serial", 1), ("parallel", parallel)):
        workspace = Path(tempfile.mkdtemp(prefix=f"pfbuild-bench-{label}-", dir="/var/tmp"))
        try:
            seconds, events = release(workspace, args.version, "--parallel", str(n), *extra)
        finally:
            if not args.keep:
                shutil.rmtree(workspace, ignore_errors=True)
        times[label] = seconds
        report[label] = {"seconds": seconds, "stage_seconds": per_stage(events)}
        print(f"{label:<9} --parallel {n}: {seconds:7.1f} s")
    report["ratio_parallel_to_serial"] = times["parallel"] / times["serial"]
    print(f"ratio parallel/serial: {report['ratio_parallel_to_serial']:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parallel.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
