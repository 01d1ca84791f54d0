"""sbuild and build-deps chroot command lines and build-dependency resolution, as data."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from builder.build import depschroot, stage
from builder.build.depschroot import build_depends, deps_chroot_cmdline, satisfies
from builder.build.sbuild import BuildResult, sbuild_cmdline
from builder.core.context import Context
from builder.model.distro import TRIXIE
from builder.model.loader import load_recipe
from builder.pipeline.runners import build_runner

pytestmark = pytest.mark.unit

DSC = """\
Format: 3.0 (quilt)
Source: demo
Binary: demo
Architecture: any
Version: 1.0-1
Build-Depends: debhelper-compat (= 13), libfoo-dev [amd64] | libbar-dev, libarm-dev [armhf],
 libnotamd64-dev [!amd64], check <!nocheck>, docs-tool <pkg.demo.docs>,
 python3:any
Build-Depends-Indep: texinfo
Files:
 00000000000000000000000000000000 10 demo_1.0.orig.tar.gz
"""


def test_build_depends_applies_arch_and_profiles(tmp_path: Path) -> None:
    dsc = tmp_path / "demo_1.0-1.dsc"
    dsc.write_text(DSC)
    assert build_depends(dsc, "amd64") == (
        "build-essential, fakeroot, ccache, debhelper-compat (= 13), libfoo-dev | libbar-dev, "
        "check, python3:any, texinfo"
    )


def test_sbuild_keeps_network_off_and_runs_unshare(tmp_path: Path) -> None:
    cmd = sbuild_cmdline(tmp_path / "x.dsc", TRIXIE, tmp_path / "c.tar", tmp_path / "out", jobs=2)
    assert cmd[0] == "sbuild"
    assert "--chroot-mode=unshare" in cmd
    assert f"--chroot={tmp_path / 'c.tar'}" in cmd
    assert "--dist=trixie" in cmd and "--arch-all" in cmd and "--jobs=2" in cmd
    assert "--no-apt-update" in cmd
    assert not any(a.startswith("--enable-network") for a in cmd)
    assert cmd[-1] == str(tmp_path / "x.dsc")


def test_deps_chroot_installs_build_deps_with_apt_satisfy(tmp_path: Path) -> None:
    base = tmp_path / "base dir" / "trixie-amd64.tar"
    cmd = deps_chroot_cmdline(TRIXIE, Path("/k.gpg"), tmp_path / "o.tar", "a (>= 1), b | c", base)
    assert cmd[0] == "mmdebstrap"
    hook = next(a for a in cmd if a.startswith("--customize-hook="))
    assert "apt-get satisfy" in hook and "'a (>= 1), b | c'" in hook
    assert "--skip=cleanup/apt/lists" in cmd
    # Made on top of the base tarball, not bootstrapped again.
    assert "--variant=custom" in cmd and not any(a.startswith("--include=") for a in cmd)
    setup = next(a for a in cmd if a.startswith("--setup-hook="))
    assert f"-xf '{base}'" in setup and "--exclude=./dev/*" in setup
    assert "--dpkgopt=force-unsafe-io" in cmd
    assert cmd[-3:] == ["trixie", str(tmp_path / "o.tar"), TRIXIE.archive_url]


def test_the_build_command_and_the_release_runner_share_one_stage_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = Context(workspace=tmp_path / "ws")
    calls: list[tuple[Path, int, bool]] = []

    def fake_build(*args: Any, jobs: int = 0, use_ccache: bool = True) -> BuildResult:
        _ctx, _recipe, _dsc, dist, out_dir = args
        calls.append((out_dir, jobs, use_ccache))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "postfix_1_amd64.deb").write_text("deb")
        (out_dir / "build.log").write_text("log")
        return BuildResult(dist.name, out_dir, "k", ("postfix_1_amd64.deb",), False)

    monkeypatch.setattr(stage, "build_package", fake_build)
    dsc = tmp_path / "postfix_3.11.6-1.dsc"
    (built,) = stage.build_targets(ctx, "postfix", "3.11.6", [TRIXIE], lambda _dist: dsc)
    run_build = build_runner(ctx, load_recipe("postfix"), "3.11.6", TRIXIE, 3)
    outputs = run_build({"source postfix 3.11.6 trixie": {"dsc": str(dsc)}})
    out = ctx.build_dir("postfix", "3.11.6", "trixie")
    assert built.out_dir == out
    assert [c[0] for c in calls] == [out, out] and calls[1][1] == 3
    assert outputs["dir"] == str(out) and outputs["log"] == str(out / "build.log")
    assert [f["path"] for f in outputs["files"]] == [str(out / "postfix_1_amd64.deb")]
    assert len(outputs["files"][0]["sha256"]) == 64


RESOLVED = ("build-essential=12.12", "ccache=4.11.2-2", "debhelper=13.24.2", "cmake=3.31.6-2")
PROVIDES = ("debhelper-compat=13", "debhelper-compat=9", "dh-sequence-installsysusers")


@pytest.mark.parametrize(
    ("depends", "expected"),
    [
        ("build-essential, ccache, debhelper-compat (= 13), cmake (>= 3.18)", True),
        ("debhelper-compat (= 14)", False),
        ("cmake (>> 3.31.6-2)", False),
        ("cmake (<< 4), dh-sequence-installsysusers", True),
        ("libfoo-dev | cmake", True),
        ("libfoo-dev", False),
        ("dh-sequence-installsysusers (>= 1)", False),
        ("build-essential:native, ccache:any", True),
    ],
)
def test_a_deps_chroot_satisfies_what_it_has_installed_or_provides(
    depends: str, expected: bool
) -> None:
    assert satisfies(RESOLVED, PROVIDES, depends) is expected


def test_installed_packages_and_provides_come_from_the_dpkg_status(tmp_path: Path) -> None:
    status = (
        b"Package: debhelper\nStatus: install ok installed\nVersion: 13.24.2\n"
        b"Provides: debhelper-compat (= 13), dh-sequence-foo\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        b"Package: cmake\nStatus: install ok installed\nVersion: 3.31.6-2\n"
    )
    tarball = tmp_path / "c.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(status)
        tar.addfile(info, io.BytesIO(status))
    resolved, provides = depschroot._installed_packages(tarball)
    assert resolved == ("cmake=3.31.6-2", "debhelper=13.24.2")
    assert provides == ("debhelper-compat=13", "dh-sequence-foo")


def _chroot(ctx: Context, deps_id: str, status: bytes, record: dict[str, Any]) -> Path:
    tarball = ctx.chroots_dir / f"trixie-amd64-deps-{deps_id}.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(status)
        tar.addfile(info, io.BytesIO(status))
    tarball.with_suffix(".json").write_text(json.dumps({"key": deps_id, **record}))
    return tarball


def test_a_shared_deps_chroot_is_chosen_by_its_own_status_not_its_record(tmp_path: Path) -> None:
    ctx = Context(workspace=tmp_path / "ws")
    cmake = b"Package: cmake\nStatus: install ok installed\nVersion: 3.31.6-2\n"
    claims = {"base": "b", "resolved": ["cmake=3.31.6-2"], "provides": []}
    # The record says cmake is there; the tarball says nothing is installed: not chosen.
    _chroot(ctx, "aaaa", b"", claims)
    assert depschroot._satisfying_chroot(ctx, TRIXIE, "b", "cmake") is None
    honest = _chroot(ctx, "bbbb", cmake, claims)
    chosen = depschroot._satisfying_chroot(ctx, TRIXIE, "b", "cmake (>= 3.18)")
    assert chosen is not None and chosen.path == honest
    # Another base: never chosen.
    assert depschroot._satisfying_chroot(ctx, TRIXIE, "other", "cmake") is None
