"""Image size and start-to-banner time per variant, against the image this one replaces.

Usage: python -m bench.image [--name pfbuild-postfix] [--variant debian] [--rounds 5]
Measures already built images (`pfbuild image` first). Each round starts a fresh container
(fresh anonymous volumes, so the first-start work is included) with host networking on a free
127.0.0.1 port and times `docker start` to the 220 banner. Writes bench/results/image.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import docker
from builder.image import build as image
from builder.image.container import start_postfix

RESULTS = Path(__file__).resolve().parent / "results"
# The image this replaces, as measured by its users.
REPLACED = {"size_mb": 277.0, "banner_ms": 400.0}


def measure(client: docker.DockerClient, tag: str, rounds: int, scratch: Path) -> dict[str, float]:
    """Size of `tag` and the median/min/max time from `docker start` to its banner."""
    size = int(client.images.get(tag).attrs["Size"])
    times = []
    for _ in range(rounds):
        running = start_postfix(client, tag, scratch=Path(tempfile.mkdtemp(dir=scratch)))
        try:
            times.append(running.banner_seconds * 1000)
        finally:
            running.remove()
    return {
        "size_mb": round(size / 1e6, 1),
        "banner_ms_median": round(statistics.median(times), 1),
        "banner_ms_min": round(min(times), 1),
        "banner_ms_max": round(max(times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default=image.DEFAULT_NAME)
    parser.add_argument("--variant", action="append", choices=image.variants(), default=[])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    client = docker.from_env()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pfbuild-bench-image-") as tmp:
        for variant in args.variant or image.variants():
            rows[variant] = measure(client, f"{args.name}:{variant}", args.rounds, Path(tmp))
    print(f"{'variant':8}  {'size (MB)':>9}  {'banner ms (median)':>18}  {'min':>6}  {'max':>6}")
    for variant, row in rows.items():
        print(
            f"{variant:8}  {row['size_mb']:>9.1f}  {row['banner_ms_median']:>18.0f}"
            f"  {row['banner_ms_min']:>6.0f}  {row['banner_ms_max']:>6.0f}"
        )
    print(f"{'replaced':8}  {REPLACED['size_mb']:>9.1f}  {REPLACED['banner_ms']:>18.0f}")
    RESULTS.mkdir(exist_ok=True)
    report = {"rounds": args.rounds, "variants": rows, "replaced_image": REPLACED}
    (RESULTS / "image.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
