"""sbuild command lines and build-dependency resolution, compared as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build.sbuild import build_depends, deps_chroot_cmdline, sbuild_cmdline
from builder.model.distro import TRIXIE

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
        "build-essential, fakeroot, debhelper-compat (= 13), libfoo-dev | libbar-dev, check, "
        "python3:any, texinfo"
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
    cmd = deps_chroot_cmdline(TRIXIE, Path("/k.gpg"), tmp_path / "o.tar", "a (>= 1), b | c")
    assert cmd[0] == "mmdebstrap"
    hook = next(a for a in cmd if a.startswith("--customize-hook="))
    assert "apt-get satisfy" in hook and "'a (>= 1), b | c'" in hook
    assert "--skip=cleanup/apt/lists" in cmd
    assert cmd[-3:] == ["trixie", str(tmp_path / "o.tar"), TRIXIE.archive_url]
