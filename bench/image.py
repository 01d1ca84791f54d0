"""Image size and start-to-banner time per variant, beside the previous image, in one run.

Usage: python -m bench.image [--name pfbuild-postfix] [--previous pfbuild-postfix-previous]
                             [--variant debian] [--rounds 7] [--locked-down]
Measures already built images (`pfbuild image` first; the previous image is the same command
run from the previous checkout with `--name pfbuild-postfix-previous`). Each round starts a
fresh container (fresh anonymous volumes, so the first-start work is included) with host
networking on a free 127.0.0.1 port and times `docker start` to the 220 banner; the two images
take turns, so both see the same machine. Ratios are new over previous. Writes
bench/results/image.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import docker.errors

import docker
from builder.image import build as image
from builder.image.container import start_postfix

RESULTS = Path(__file__).resolve().parent / "results"
# The image this replaces, as measured by its users.
REPLACED = {"size_mb": 277.0, "banner_ms": 400.0}


def banner_ms(client: docker.DockerClient, tag: str, scratch: Path, locked_down: bool) -> float:
    """One fresh container of `tag`: milliseconds from `docker start` to its 220 banner."""
    where = Path(tempfile.mkdtemp(dir=scratch))
    running = start_postfix(client, tag, scratch=where, locked_down=locked_down)
    try:
        return running.banner_seconds * 1000
    finally:
        running.remove()


def summary(client: docker.DockerClient, tag: str, times: list[float]) -> dict[str, float]:
    """Size of `tag` and the median/min/max of its start-to-banner times."""
    size = int(client.images.get(tag).attrs["Size"])
    return {
        "size_mb": round(size / 1e6, 1),
        "banner_ms_median": round(statistics.median(times), 1),
        "banner_ms_min": round(min(times), 1),
        "banner_ms_max": round(max(times), 1),
    }


def measure(
    client: docker.DockerClient, tags: dict[str, str], rounds: int, scratch: Path, locked: bool
) -> dict[str, dict[str, float]]:
    """Each of `tags` (label -> tag) measured `rounds` times, taking turns."""
    times: dict[str, list[float]] = {label: [] for label in tags}
    for _ in range(rounds):
        for label, tag in tags.items():
            times[label].append(banner_ms(client, tag, scratch, locked))
    return {label: summary(client, tags[label], times[label]) for label in tags}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default=image.DEFAULT_NAME)
    parser.add_argument("--previous", default=f"{image.DEFAULT_NAME}-previous")
    parser.add_argument("--variant", action="append", choices=image.variants(), default=[])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--locked-down", action="store_true", help="start them locked down")
    args = parser.parse_args()
    client = docker.from_env()
    rows: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pfbuild-bench-image-") as tmp:
        for variant in args.variant or image.variants():
            tags = {"new": f"{args.name}:{variant}"}
            try:
                client.images.get(f"{args.previous}:{variant}")
                tags["previous"] = f"{args.previous}:{variant}"
            except docker.errors.ImageNotFound:
                print(f"{args.previous}:{variant} not found: measuring {tags['new']} alone")
            rows[variant] = measure(client, tags, args.rounds, Path(tmp), args.locked_down)
    print(f"{'variant':8} {'image':8}  {'size (MB)':>9}  {'banner ms (median)':>18}  {'min':>6}  "
          f"{'max':>6}")  # fmt: skip
    ratios: dict[str, dict[str, float]] = {}
    for variant, by_label in rows.items():
        for label, row in by_label.items():
            print(
                f"{variant:8} {label:8}  {row['size_mb']:>9.1f}  {row['banner_ms_median']:>18.0f}"
                f"  {row['banner_ms_min']:>6.0f}  {row['banner_ms_max']:>6.0f}"
            )
        if "previous" in by_label:
            new, old = by_label["new"], by_label["previous"]
            ratios[variant] = {
                "size": round(new["size_mb"] / old["size_mb"], 3),
                "banner_ms_median": round(new["banner_ms_median"] / old["banner_ms_median"], 3),
            }
            print(f"{variant:8} {'ratio':8}  {ratios[variant]['size']:>9.2f}  "
                  f"{ratios[variant]['banner_ms_median']:>18.2f}")  # fmt: skip
    print(f"{'seed':8} {'':8}  {REPLACED['size_mb']:>9.1f}  {REPLACED['banner_ms']:>18.0f}")
    RESULTS.mkdir(exist_ok=True)
    report = {
        "rounds": args.rounds,
        "locked_down": args.locked_down,
        "variants": rows,
        "ratios_new_over_previous": ratios,
        "replaced_image": REPLACED,
    }
    (RESULTS / "image.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
