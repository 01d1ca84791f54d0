"""Measure `pfbuild release` in one run on one machine and report ratios, never limits.

Usage: python -m bench.release [--workspace DIR] [--version 3.11.6] [--no-image]

1. a release into the workspace (cold when the workspace is new): seconds per stage;
2. the bare tool for the heaviest stage, plain sbuild on the same .dsc and build-deps chroot,
   against pfbuild's whole build action: the overhead ratio;
3. the warm no-op release;
4. the release after touching only an image template (docker/Dockerfile, restored after).
Prints a table and writes bench/results/release.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.build import time_plain_sbuild
from builder.build.depschroot import ensure_deps_chroot
from builder.build.sbuild import build_package
from builder.core.context import Context, prepare_workspace
from builder.model.distro import TRIXIE

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PFBUILD = str(Path(sys.executable).parent / "pfbuild")


def release(workspace: Path, version: str, *extra: str) -> tuple[float, list[dict[str, Any]]]:
    """Run the real CLI with --json; return wall time and its progress events."""
    started = time.monotonic()
    proc = subprocess.run(
        [PFBUILD, "--workspace", str(workspace), "release", version, "--json", *extra],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.monotonic() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if '"action"' in line]
    return seconds, events


def per_stage(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent per stage by actions that ran (reused ones cost nothing)."""
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event["state"] == "done":
            totals[event["stage"]] += event["seconds"]
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.mkdtemp(prefix="bench-")))
    parser.add_argument("--version", default="3.11.6")
    parser.add_argument("--no-image", action="store_true")
    args = parser.parse_args()
    extra = ("--no-image",) if args.no_image else ()
    ctx = Context(workspace=prepare_workspace(args.workspace))

    first_s, first = release(ctx.workspace, args.version, *extra)
    cold = not any(e["state"] == "reused" for e in first)
    stages = per_stage(first)

    dsc = next(ctx.source_dir("postfix", args.version, TRIXIE.name).glob("*.dsc"))
    deps = ensure_deps_chroot(ctx, TRIXIE, "postfix", dsc)
    plain = time_plain_sbuild(ctx, dsc, deps.path, TRIXIE.name)
    # pfbuild's build stage on the same .dsc and chroot, into a fresh folder so it really builds.
    with tempfile.TemporaryDirectory(prefix="bench-build-", dir=ctx.tmp_dir) as out:
        started = time.monotonic()
        build_package(ctx, "postfix", dsc, TRIXIE, Path(out) / "result", use_ccache=False)
        ours = time.monotonic() - started

    warm_s, warm = release(ctx.workspace, args.version, *extra)
    touched_s = float("nan")
    if not args.no_image:
        dockerfile = REPO / "docker" / "Dockerfile"
        original = dockerfile.read_text()
        try:
            dockerfile.write_text(original + "# bench: touched\n")
            touched_s, _ = release(ctx.workspace, args.version, *extra)
        finally:
            dockerfile.write_text(original)

    report = {
        "workspace": str(ctx.workspace),
        "first_release_cold": cold,
        "first_release_s": first_s,
        "stage_seconds": stages,
        "build_trixie": {"pfbuild_s": ours, "plain_sbuild_s": plain, "ratio": ours / plain},
        "warm_noop_s": warm_s,
        "warm_noop_all_reused": all(
            e["state"] == "reused" for e in warm if e["state"] != "started"
        ),
        "after_touching_image_template_s": touched_s,
    }
    rows = [
        ("first release" + (" (cold)" if cold else " (workspace was warm)"), f"{first_s:.1f} s"),
        *((f"  stage {k}", f"{v:.1f} s") for k, v in sorted(stages.items())),
        (
            "build trixie: pfbuild / plain sbuild",
            f"{ours:.1f} / {plain:.1f} s = {ours / plain:.3f}",
        ),
        ("warm no-op release", f"{warm_s:.1f} s"),
        ("after touching docker/Dockerfile", f"{touched_s:.1f} s"),
    ]
    for name, value in rows:
        print(f"{name:<45} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "release.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
