"""Build-deps chroot time per recipe: the previous way against today's, side by side.

Usage: python -m bench.depschroot [--workspace DIR] [--version 3.11.6] [--target trixie]
                                  [--rounds 1]
Needs a workspace where `pfbuild source` (or a release) made the .dsc files. The previous way
bootstrapped the buildd variant again for every deps chroot (mmdebstrap, the tree on disk,
dpkg's fsyncs, man-db's index); today's unpacks the target's base tarball in memory and
installs only the build-deps. Both run here, in turns, into throwaway tarballs. Writes
bench/results/depschroot.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from pathlib import Path

from builder.bootstrap.buildenv import ensure_chroot_tarball, mmdebstrap_cmdline
from builder.bootstrap.keyring import ensure_keyring, unshare_readable
from builder.build import depschroot
from builder.core import run
from builder.core.context import Context, prepare_workspace
from builder.model.distro import Distribution, get_target

RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = ("postfix", "mimalloc-secure")


def previous_cmdline(dist: Distribution, keyring: Path, output: Path, depends: str) -> list[str]:
    """The deps chroot as it was made before: a fresh buildd bootstrap plus apt-get satisfy."""
    base = mmdebstrap_cmdline(dist, variant="buildd", keyring=keyring, output=output)
    hook = (
        'chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get satisfy -y -q '
        f"--no-install-recommends {shlex.quote(depends)}"
    )
    return [base[0], f"--customize-hook={hook}", "--skip=cleanup/apt/lists", *base[1:]]


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    started = time.monotonic()
    run.run(cmd, env=env or None, log_path=log)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, default=Path("/var/tmp/pfbuild-test-work"))  # noqa: S108
    parser.add_argument("--version", default="3.11.6")
    parser.add_argument("--mimalloc-version", default="2.0.9")
    parser.add_argument("--target", default="trixie")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    ctx = Context(workspace=prepare_workspace(args.workspace))
    dist = get_target(args.target)
    keyring = unshare_readable(ctx, ensure_keyring(ctx, dist))
    base = ensure_chroot_tarball(ctx, dist)
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pfbuild-bench-deps-", dir=ctx.tmp_dir) as tmp:
        staged = depschroot.readable_base(ctx, base, "bench")
        try:
            for recipe in RECIPES:
                version = args.version if recipe == "postfix" else args.mimalloc_version
                dsc = next(ctx.source_dir(recipe, version, dist.name).glob("*.dsc"))
                depends = depschroot.build_depends(dsc, dist.arch)
                times: dict[str, list[float]] = {"previous": [], "now": []}
                for i in range(args.rounds):
                    out = Path(tmp) / f"{recipe}-{i}.tar"
                    log = Path(tmp) / f"{recipe}-{i}.log"
                    cmd = previous_cmdline(dist, keyring, out, depends)
                    times["previous"].append(timed(cmd, {}, log))
                    out.unlink()
                    cmd = depschroot.deps_chroot_cmdline(dist, keyring, out, depends, staged)
                    times["now"].append(timed(cmd, depschroot.scratch_env(), log))
                    out.unlink()
                rows[recipe] = times
        finally:
            if staged != base:
                staged.unlink()
    print(f"{'recipe':<18} {'previous (s)':>12} {'now (s)':>8} {'ratio':>6}")
    report: dict[str, dict[str, float]] = {}
    for recipe, times in rows.items():
        before, now = min(times["previous"]), min(times["now"])
        report[recipe] = {"previous_s": before, "now_s": now, "ratio": now / before}
        print(f"{recipe:<18} {before:>12.1f} {now:>8.1f} {now / before:>6.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "depschroot.json").write_text(
        json.dumps({"target": dist.name, "rounds": args.rounds, "recipes": report}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
