"""Base build environments for real: mmdebstrap chroots used by sbuild, images used by docker."""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from builder.bootstrap.buildenv import bootstrap, chroot_tarball_path, ensure_base_image
from builder.build.depschroot import build_depends, ensure_deps_chroot
from builder.build.sbuild import build_package
from builder.core.context import Context
from builder.model.distro import TRIXIE, Distribution
from tests.conftest import UBUNTU_KEYRING_DEB
from tests.fixtures.packages import make_source_package

pytestmark = pytest.mark.integration


def test_bootstrap_twice_reuses_everything(
    shared_ctx: Context, target: Distribution, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap(shared_ctx, [target])
    tarball = chroot_tarball_path(shared_ctx, target)
    before = tarball.stat().st_mtime_ns
    caplog.set_level(logging.INFO, logger="pfbuild")
    caplog.clear()
    made = bootstrap(shared_ctx, [target])
    assert tarball.stat().st_mtime_ns == before
    assert "making" not in caplog.text
    assert f"{target.name}: chroot tarball reused" in caplog.text
    assert f"{target.name}: base image reused" in caplog.text
    assert made[target.name]["image"].startswith(f"pfbuild-base:{target.name}-")


def test_base_image_runs_apt_update_with_host_network(
    shared_ctx: Context, target: Distribution
) -> None:
    tag = ensure_base_image(shared_ctx, target)
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", tag, "apt-get", "update", "--error-on=any"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert target.archive_url in proc.stdout


def test_sbuild_builds_a_tiny_package_in_the_chroot(
    shared_ctx: Context, target: Distribution, tmp_path: Path
) -> None:
    dsc = make_source_package(tmp_path, version="1.0", distribution=target.name)
    out = tmp_path / "result"
    result = build_package(shared_ctx, "pfbuild-hello", dsc, target, out)
    assert not result.reused
    debs = sorted(out.glob("pfbuild-hello_1.0_amd64.deb"))
    assert debs, sorted(p.name for p in out.iterdir())
    info = subprocess.run(
        ["dpkg-deb", "--field", str(debs[0]), "Version", "Architecture"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Version: 1.0" in info
    log = (out / "build.log").read_text()
    assert f"Distribution: {target.name}" in log
    assert "Status: successful" in log


def test_resolute_bootstrap_from_a_private_workspace(tmp_path: Path) -> None:
    """A workspace under a 0700 folder (a clone in /root, pytest's tmp) still bootstraps.

    mmdebstrap's unshared apt runs as a subordinate uid that cannot enter such a folder; the
    keyring it needs must be staged where that uid can read it. apt itself is the oracle: an
    unreadable keyring makes it call the archive unsigned.
    """
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    workspace = private / "ws"
    proc = subprocess.run(
        [sys.executable, "-m", "builder", "--workspace", str(workspace),
         "--keyring-deb", f"resolute={UBUNTU_KEYRING_DEB}",
         "bootstrap", "--target", "resolute", "--no-image"],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tarball = Path(proc.stdout.split()[-1])
    assert tarball.is_file() and tarball.is_relative_to(workspace)
    with tarfile.open(tarball) as tar:
        assert "./etc/os-release" in tar.getnames()


def _satisfied_by_dpkg(tarball: Path, depends: str, where: Path) -> bool:
    """dpkg-checkbuilddeps' verdict on `depends` against the chroot's own dpkg status."""
    admin = where / "admin"
    admin.mkdir()
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("./var/lib/dpkg/status")
        assert member is not None
        (admin / "status").write_bytes(member.read())
    control = where / "control"
    control.write_text("Source: probe\n\nPackage: probe\nArchitecture: all\n")
    done = subprocess.run(
        ["dpkg-checkbuilddeps", f"--admindir={admin}", "-d", depends, str(control)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def test_a_deps_chroot_serves_a_recipe_whose_build_deps_it_has(
    shared_ctx: Context, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_source_package(tmp_path / "a", version="6.0", distribution="trixie")
    made = ensure_deps_chroot(shared_ctx, TRIXIE, "pfbuild-hello", first)
    # Other build-deps, all of them in that chroot already (debhelper provides the compat).
    other = tmp_path / "other_1.0.dsc"
    wanted = "debhelper (>= 13), debhelper-compat (= 13), make"
    other.write_text(
        f"Format: 3.0 (native)\nSource: other\nVersion: 1.0\nBuild-Depends: {wanted}\n"
    )
    before = sorted(shared_ctx.chroots_dir.glob("*.tar"))
    caplog.set_level(logging.INFO, logger="pfbuild")
    shared = ensure_deps_chroot(shared_ctx, TRIXIE, "other", other)
    assert sorted(shared_ctx.chroots_dir.glob("*.tar")) == before, "a new chroot was made"
    assert "making build-deps chroot" not in caplog.text
    assert _satisfied_by_dpkg(shared.path, build_depends(other, "amd64"), tmp_path)
    # The smallest chroot that has them: nothing bigger than the one made for hello.
    assert len(shared.resolved) <= len(made.resolved)
    # And one it lacks is refused by the same oracle, so the check above could fail.
    (tmp_path / "x").mkdir()
    assert not _satisfied_by_dpkg(shared.path, "pfbuild-no-such-package", tmp_path / "x")
