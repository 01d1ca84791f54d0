"""ccache for sbuild builds: one cache per target and architecture, mounted into the chroot.

sbuild's unshare mode bind-mounts the cache folder (UNSHARE_BIND_MOUNTS) and sets CCACHE_DIR
in the build's environment (BUILD_ENVIRONMENT, which sbuild does not filter): debhelper's
compat 13 points HOME at a temporary folder, so a ccache that looks under HOME never hits.

What a hit returns is ccache's own recomputed answer: the key is the hash of the compiler (by
content), its arguments, the working directory and the preprocessed input, and ccache checks
each stored result's checksum before using it. The build path is fixed (BUILD_PATH) so that
the same source compiles with the same arguments and working directory every time.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.build.stagedir import is_readable_by
from builder.core.atomic import remove_path
from builder.core.context import Context
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

MOUNT = "/var/cache/pfbuild-ccache"
# sbuild's default PATH with ccache's compiler links first.
BUILD_PATH_ENV = "/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_SIZE = "3G"
# The package the deps chroot must hold for the links in /usr/lib/ccache to exist.
PACKAGE = "ccache"
HIT_COUNTERS = ("direct_cache_hit", "preprocessed_cache_hit", "remote_cache_hit")
MISS_COUNTERS = ("cache_miss",)


@dataclass(frozen=True)
class CcacheStats:
    """What ccache did during one build, from its per-build statistics log."""

    hits: int
    misses: int
    uncached: int
    dir: str
    # The calls ccache passed through, by ccache's reason (called_for_link, ...).
    uncached_by_reason: Mapping[str, int] = field(default_factory=dict)

    @property
    def compilations(self) -> int:
        return self.hits + self.misses


def cache_dir(ctx: Context, dist: Distribution) -> Path:
    """The cache folder of `dist`, made writable for the chroot's build user.

    That user is a subordinate uid outside the namespace, so the folder is world-writable;
    it lives in the workspace, or beside the stage root when the build user cannot reach the
    workspace (a clone under /root).
    """
    for path in (
        ctx.ccache_dir(dist.name, dist.arch),
        ctx.ccache_fallback_dir(dist.name, dist.arch),
    ):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        if os.geteuid() != 0 or is_readable_by(ctx.build_user, path):
            return path
    raise AssertionError("the fallback cache folder is outside the workspace and readable")


def perl_string(text: str) -> str:
    """`text` as a Perl single-quoted string (for sbuild's configuration files)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sbuild_config(host_dir: Path, stats_name: str) -> str:
    """sbuild configuration lines (Perl) that mount `host_dir` and point ccache at it."""
    env = {
        "CCACHE_DIR": MOUNT,
        "CCACHE_COMPILERCHECK": "content",
        "CCACHE_MAXSIZE": MAX_SIZE,
        "CCACHE_STATSLOG": f"{MOUNT}/{stats_name}",
    }
    pairs = ", ".join(f"{perl_string(k)} => {perl_string(v)}" for k, v in env.items())
    return (
        f"$unshare_bind_mounts = [ {{ directory => {perl_string(str(host_dir))}, "
        f"mountpoint => {perl_string(MOUNT)} }} ];\n"
        f"$build_environment = {{ {pairs} }};\n"
        f"$path = {perl_string(BUILD_PATH_ENV)};\n"
    )


def parse_stats_log(text: str, where: str) -> CcacheStats:
    """Count one build's compiler calls by outcome (ccache's stats_log: "# file" then counters)."""
    counts = Counter(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    hits = sum(counts[c] for c in HIT_COUNTERS)
    misses = sum(counts[c] for c in MISS_COUNTERS)
    uncached = sum(counts.values()) - hits - misses
    reasons = {
        name: n for name, n in sorted(counts.items()) if name not in (*HIT_COUNTERS, *MISS_COUNTERS)
    }
    return CcacheStats(hits, misses, uncached, where, reasons)


def recorded_stats(data: object) -> CcacheStats | None:
    """The statistics an earlier build recorded in its result.json, if it recorded any."""
    if not isinstance(data, dict):
        return None
    try:
        return CcacheStats(**data)
    except TypeError:
        return None


def collect_stats(host_dir: Path, stats_name: str) -> CcacheStats:
    """Read and remove the statistics log of one build (none: ccache never ran)."""
    path = host_dir / stats_name
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        text = ""
    remove_path(path)
    stats = parse_stats_log(text, str(host_dir))
    log.info(
        "ccache: %d hits, %d misses, %d not cacheable (%s)",
        stats.hits, stats.misses, stats.uncached, host_dir,
    )  # fmt: skip
    return stats
