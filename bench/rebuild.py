"""The common second build: postfix after a packaging-only change, with and without ccache.

Usage: python -m bench.rebuild [--workspace DIR] [--version 3.11.6] [--target trixie]
Needs a workspace where a release built postfix (its builds filled the compiler cache). First
the cold build: the same .dsc in a fresh workspace (chroot tarball, build-deps chroot and an
empty compiler cache made there, as a first release's build action does). Then the .dsc is
changed in debian/ only (a comment in debian/rules, a new changelog entry: what a template
change or a +pf2 bump does) and built twice in the given workspace: with the compiler cache
and without it. The .debs of both rebuilds are compared byte for byte.
Writes bench/results/rebuild.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from builder.build.sbuild import build_package
from builder.core.context import Context, prepare_workspace
from builder.model.distro import get_target

RESULTS = Path(__file__).resolve().parent / "results"


def packaging_only_change(dsc: Path, where: Path) -> Path:
    """A copy of `dsc` whose debian/ differs (rules comment, changelog entry); same upstream."""
    tree = where / "tree"
    subprocess.run(["dpkg-source", "-x", str(dsc), str(tree)], check=True, capture_output=True)
    rules = tree / "debian" / "rules"
    rules.write_text(rules.read_text() + "\n# bench: a template-only change\n")
    subprocess.run(
        ["dch", "--local", "+bench", "--force-distribution", "bench: template-only change"],
        cwd=tree, check=True, capture_output=True,
        env={"DEBFULLNAME": "pfbuild bench", "DEBEMAIL": "bench@pfbuild.invalid",
             "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    subprocess.run(["dpkg-source", "-b", "tree"], cwd=where, check=True, capture_output=True)
    return next(p for p in where.glob("*.dsc") if p.name != dsc.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=Path("/var/tmp/pfbuild-test-work"))  # noqa: S108
    parser.add_argument("--version", default="3.11.6")
    parser.add_argument("--target", default="trixie")
    args = parser.parse_args()
    ctx = Context(workspace=prepare_workspace(args.workspace))
    dist = get_target(args.target)
    dsc = next(ctx.source_dir("postfix", args.version, dist.name).glob("*.dsc"))
    with tempfile.TemporaryDirectory(prefix="pfbuild-bench-cold-", dir="/var/tmp") as cold:
        cold_ctx = Context(workspace=prepare_workspace(Path(cold) / "ws"))
        started = time.monotonic()
        build_package(cold_ctx, "postfix", dsc, dist, Path(cold) / "out")
        cold_s = time.monotonic() - started
        # A folder closed to the build user gets its compiler cache outside it: remove it too.
        shutil.rmtree(cold_ctx.ccache_fallback_dir(dist.name, dist.arch), ignore_errors=True)
    rows: dict[str, float] = {"cold_build_s": cold_s}
    with tempfile.TemporaryDirectory(prefix="pfbuild-bench-rebuild-", dir=ctx.tmp_dir) as tmp:
        changed = packaging_only_change(dsc, Path(tmp))
        results = {}
        for label, use_ccache in (("ccache", True), ("no_ccache", False)):
            out = Path(tmp) / label
            started = time.monotonic()
            result = build_package(ctx, "postfix", changed, dist, out, use_ccache=use_ccache)
            rows[f"rebuild_{label}_s"] = time.monotonic() - started
            results[label] = result
        stats = results["ccache"].ccache
        same = all(
            (Path(tmp) / "ccache" / n).read_bytes() == (Path(tmp) / "no_ccache" / n).read_bytes()
            for n in results["ccache"].files
            if n.endswith(".deb")
        )
    report = {
        **rows,
        "ratio_ccache_to_cold": rows["rebuild_ccache_s"] / cold_s,
        "ratio_no_ccache_to_cold": rows["rebuild_no_ccache_s"] / cold_s,
        "ratio_ccache_to_no_ccache": rows["rebuild_ccache_s"] / rows["rebuild_no_ccache_s"],
        "ccache": {"hits": stats.hits, "misses": stats.misses} if stats else None,
        "debs_identical": same,
    }
    for name, value in report.items():
        print(f"{name:<28} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rebuild.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
