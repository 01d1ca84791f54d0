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
