"""ccache's sbuild configuration and statistics, as data; Perl checks the configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.build import ccache
from builder.build.sbuild import (
    BUILD_PATH,
    is_session_failure,
    remove_stale_unpacks,
    remove_unpacks_of,
    sbuild_cmdline,
    sbuild_config,
    unpack_template,
)
from builder.model.distro import TRIXIE

pytestmark = pytest.mark.unit

STATS_LOG = """\
# /build/reproducible-path/demo-1.0/a.c
direct_cache_hit
# /build/reproducible-path/demo-1.0/b.c
preprocessed_cache_hit
# /build/reproducible-path/demo-1.0/c.c
cache_miss
# /build/reproducible-path/demo-1.0/c.c
called_for_link
# conftest.c
compiler_produced_no_output
"""


def test_stats_log_is_counted_by_outcome() -> None:
    stats = ccache.parse_stats_log(STATS_LOG, "/cache")
    assert (stats.hits, stats.misses, stats.uncached) == (2, 1, 2)
    assert stats.compilations == 3
    assert stats.uncached_by_reason == {"called_for_link": 1, "compiler_produced_no_output": 1}


def test_no_stats_log_means_no_compiler_call(tmp_path: Path) -> None:
    stats = ccache.collect_stats(tmp_path, "stats-none.log")
    assert (stats.hits, stats.misses, stats.uncached) == (0, 0, 0)


def test_collected_log_is_removed(tmp_path: Path) -> None:
    (tmp_path / "stats-x.log").write_text(STATS_LOG)
    assert ccache.collect_stats(tmp_path, "stats-x.log").hits == 2
    assert not (tmp_path / "stats-x.log").exists()


def test_recorded_stats_tolerate_foreign_records() -> None:
    assert ccache.recorded_stats(None) is None
    assert ccache.recorded_stats({"hits": 1}) is None
    stats = ccache.recorded_stats({"hits": 1, "misses": 2, "uncached": 0, "dir": "/c"})
    assert stats is not None and stats.misses == 2


def perl_values(config: Path, *expressions: str) -> list[str]:
    """What Perl finds in the configuration file: one line per expression."""
    dump = f"do $ARGV[0] or die $@ || $!; print join(qq(\\n), {', '.join(expressions)}), qq(\\n);"
    done = subprocess.run(["perl", "-e", dump, str(config)], check=True, capture_output=True)
    return done.stdout.decode().splitlines()


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
def test_sbuild_config_is_valid_perl_with_the_mount_and_environment(tmp_path: Path) -> None:
    # A quote in the folder name must not end the Perl string.
    odd = tmp_path / "it's a cache"
    config = tmp_path / "sbuild.conf"
    template = "/dev/shm/pfbuild-sbuild-1-XXXXXXXXXX"
    config.write_text(sbuild_config(ccache.sbuild_config(odd, "stats-demo.log"), template))
    out = perl_values(
        config,
        "$unshare_bind_mounts->[0]{directory}",
        "$unshare_bind_mounts->[0]{mountpoint}",
        "$build_environment->{CCACHE_DIR}",
        "$build_environment->{CCACHE_STATSLOG}",
        "$path",
        "$unshare_tmpdir_template",
    )
    assert out == [
        str(odd),
        ccache.MOUNT,
        ccache.MOUNT,
        f"{ccache.MOUNT}/stats-demo.log",
        ccache.BUILD_PATH_ENV,
        template,
    ]
    assert out[-2].startswith("/usr/lib/ccache:")


def test_every_build_uses_the_same_build_path(tmp_path: Path) -> None:
    cmd = sbuild_cmdline(tmp_path / "x.dsc", TRIXIE, tmp_path / "c.tar", tmp_path / "out")
    assert f"--build-path={BUILD_PATH}" in cmd
    # A variant's own --build-path comes later and wins (sbuild takes the last one).
    varied = sbuild_cmdline(
        tmp_path / "x.dsc", TRIXIE, tmp_path / "c.tar", tmp_path / "out",
        extra_args=("--build-path=/build/other",),
    )  # fmt: skip
    assert varied.index("--build-path=/build/other") > varied.index(f"--build-path={BUILD_PATH}")


def test_chroots_unpack_in_memory_only_with_room_and_stale_ones_go(tmp_path: Path) -> None:
    template = unpack_template("postfix-trixie", tmp_path, min_free=0)
    assert template == str(tmp_path / f"pfbuild-sbuild-{os.getpid()}-postfix-trixie-XXXXXXXXXX")
    assert unpack_template("x", tmp_path, min_free=1 << 62) is None
    assert unpack_template("x", tmp_path / "absent", min_free=0) is None
    # A failed run's leftover goes; another build's stays.
    (tmp_path / f"pfbuild-sbuild-{os.getpid()}-postfix-trixie-abcdefghij").mkdir()
    (tmp_path / f"pfbuild-sbuild-{os.getpid()}-mimalloc-trixie-abcdefghij").mkdir()
    remove_unpacks_of("postfix-trixie", tmp_path)
    assert [p.name.split("-")[3] for p in tmp_path.iterdir()] == ["mimalloc"]
    assert is_session_failure("x\nFail-Stage: create-session\ny")
    assert not is_session_failure("x\nFail-Stage: build\ny")
    # A dead process's chroot goes; a live one's (ours) stays.
    dead = tmp_path / "pfbuild-sbuild-999999999-abcdefghij"
    (dead / "etc").mkdir(parents=True)
    live = tmp_path / f"pfbuild-sbuild-{os.getpid()}-abcdefghij"
    live.mkdir()
    remove_stale_unpacks(tmp_path)
    assert not dead.exists() and live.exists()


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
def test_a_variants_own_configuration_is_kept(tmp_path: Path) -> None:
    # verify-reproducible's build B brings its SBUILD_CONFIG (build user, a mounted wrapper).
    theirs = (
        "$build_user = 'pfbuild-b';\n"
        "$unshare_bind_mounts = [ { directory => '/w', mountpoint => '/m' } ];\n1;\n"
    )
    config = tmp_path / "sbuild.conf"
    config.write_text(sbuild_config(theirs, "/dev/shm/pfbuild-sbuild-1-XXXXXXXXXX"))
    out = perl_values(
        config, "$build_user", "$unshare_bind_mounts->[0]{mountpoint}", "$unshare_tmpdir_template"
    )
    assert out == ["pfbuild-b", "/m", "/dev/shm/pfbuild-sbuild-1-XXXXXXXXXX"]
