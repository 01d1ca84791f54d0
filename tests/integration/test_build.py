"""The build stage with real sbuild: caching, no-op rebuilds, deps reuse, failures kept apart."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.build.sbuild import build_package
from builder.build.stage import build_targets
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TRIXIE, Distribution
from tests.fixtures.packages import make_source_package

pytestmark = pytest.mark.integration


def _unpacked(log: str) -> list[str]:
    return re.findall(r"^Unpacking (\S+) \(", log, flags=re.MULTILINE)


def test_same_inputs_do_nothing_and_a_changelog_change_installs_nothing(
    shared_ctx: Context, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = make_source_package(tmp_path / "a", version="2.0", distribution="trixie")
    built = build_package(shared_ctx, "pfbuild-hello", first, TRIXIE, out)
    again = build_package(shared_ctx, "pfbuild-hello", first, TRIXIE, out)
    assert again.reused and again.key == built.key
    assert (out / "build.log").stat().st_mtime_ns == built.log_path.stat().st_mtime_ns

    changed = make_source_package(
        tmp_path / "b", version="2.0", distribution="trixie", changes=("Only the changelog moved.",)
    )
    rebuilt = build_package(shared_ctx, "pfbuild-hello", changed, TRIXIE, out)
    assert not rebuilt.reused and rebuilt.key != built.key
    log = (out / "build.log").read_text()
    # Build-deps come from the cached chroot: apt installs nothing but sbuild's own dummy.
    assert _unpacked(log) == ["sbuild-build-depends-main-dummy"], _unpacked(log)
    assert "Only the changelog moved." in log


def test_ccache_hits_after_a_changelog_change_and_changes_no_byte(
    shared_ctx: Context, tmp_path: Path
) -> None:
    name = "pfbuild-ccache"
    first = make_source_package(tmp_path / "a", name, version="5.0", distribution="trixie")
    built = build_package(shared_ctx, name, first, TRIXIE, tmp_path / "first")
    assert built.ccache is not None and built.ccache.compilations >= 1, built.ccache
    cache = Path(built.ccache.dir)
    assert any(p.is_file() for p in cache.rglob("*")), "ccache stored nothing"

    changed = make_source_package(
        tmp_path / "b", name, version="5.0", distribution="trixie",
        changes=("Only the changelog moved.",),
    )  # fmt: skip
    cached = build_package(shared_ctx, name, changed, TRIXIE, tmp_path / "cached")
    assert cached.ccache is not None and cached.ccache.hits >= 1, cached.ccache
    # The compiler really ran through ccache in the chroot (sbuild's log names the mount).
    assert "/var/cache/pfbuild-ccache" in (tmp_path / "cached" / "build.log").read_text()

    plain = build_package(shared_ctx, name, changed, TRIXIE, tmp_path / "plain", use_ccache=False)
    assert plain.ccache is None
    debs = [n for n in cached.files if n.endswith((".deb", ".ddeb"))]
    assert debs and sorted(debs) == sorted(n for n in plain.files if n.endswith((".deb", ".ddeb")))
    for deb in debs:
        a, b = tmp_path / "cached" / deb, tmp_path / "plain" / deb
        assert a.read_bytes() == b.read_bytes(), f"{deb} differs with and without ccache"


def _source(dsc: Path) -> Callable[[Distribution], Path]:
    return lambda _dist: dsc


def test_a_failed_build_keeps_the_previous_results_and_names_the_log(
    shared_ctx: Context, tmp_path: Path
) -> None:
    good = make_source_package(tmp_path / "good", version="3.0", distribution="trixie")
    bad = make_source_package(
        tmp_path / "bad", version="3.0", distribution="trixie", fail_build=True
    )
    out = shared_ctx.build_dir("pfbuild-hello", "3.0", "trixie")
    build_targets(shared_ctx, "pfbuild-hello", "3.0", [TRIXIE], _source(good))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "pfbuild-hello_3.0_amd64.deb" in before
    with pytest.raises(PfbuildError) as exc:
        build_targets(shared_ctx, "pfbuild-hello", "3.0", [TRIXIE], _source(bad))
    line = exc.value.one_line()
    assert "build failed for trixie" in line
    assert str(shared_ctx.logs_dir / "sbuild-pfbuild-hello-trixie.log") in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_one_failing_target_does_not_lose_the_other(shared_ctx: Context, tmp_path: Path) -> None:
    good = make_source_package(tmp_path / "good", version="4.0", distribution="trixie")
    bad = make_source_package(
        tmp_path / "bad", version="4.0", distribution="resolute", fail_build=True
    )
    by_target = {TRIXIE.name: good, RESOLUTE.name: bad}
    with pytest.raises(PfbuildError) as exc:
        build_targets(
            shared_ctx,
            "pfbuild-hello",
            "4.0",
            [TRIXIE, RESOLUTE],
            lambda dist: by_target[dist.name],
            parallel=2,
        )
    assert "build failed for resolute (built: trixie)" in exc.value.one_line()
    trixie_out = shared_ctx.build_dir("pfbuild-hello", "4.0", "trixie")
    assert (trixie_out / "pfbuild-hello_4.0_amd64.deb").is_file()
    assert not shared_ctx.build_dir("pfbuild-hello", "4.0", "resolute").exists()
