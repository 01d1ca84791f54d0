"""Archive keyrings are accepted only with the pinned fingerprint (real gpg, local files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.bootstrap.keyring import (
    ensure_keyring,
    is_world_readable,
    keyring_path,
    unshare_readable,
)
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE
from tests.conftest import UBUNTU_KEYRING_DEB

pytestmark = pytest.mark.unit


def make_fake_keyring_deb(where: Path) -> Path:
    """An 'ubuntu-keyring' package whose keyring holds a freshly made, untrusted key."""
    home = where / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Fake Archive <f@x.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    tree = where / "deb"
    keyrings = tree / "usr/share/keyrings"
    keyrings.mkdir(parents=True)
    exported = subprocess.run(["gpg", "--export"], env=env, check=True, capture_output=True)
    (keyrings / "ubuntu-archive-keyring.gpg").write_bytes(exported.stdout)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        "Package: ubuntu-keyring\nVersion: 9999\nArchitecture: all\n"
        "Maintainer: nobody <n@x.invalid>\nDescription: fake\n"
    )
    deb = where / "ubuntu-keyring_9999_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def test_fake_keyring_is_refused_and_nothing_is_kept(tmp_path: Path, ctx: Context) -> None:
    deb = make_fake_keyring_deb(tmp_path)
    fake_ctx = Context(workspace=ctx.workspace, keyring_debs=(("resolute", deb),))
    with pytest.raises(PfbuildError) as exc:
        ensure_keyring(fake_ctx, RESOLUTE)
    assert "F6ECB3762474EDA9D21B7022871920D1991BC93C" in exc.value.one_line()
    assert not keyring_path(fake_ctx, RESOLUTE).exists()


def test_genuine_keyring_package_is_accepted_offline(ctx: Context) -> None:
    local_ctx = Context(workspace=ctx.workspace, keyring_debs=(("resolute", UBUNTU_KEYRING_DEB),))
    path = ensure_keyring(local_ctx, RESOLUTE)
    assert path == keyring_path(local_ctx, RESOLUTE)
    assert path.stat().st_size > 0


def test_a_private_keyring_is_staged_world_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    keyring = private / "archive.gpg"
    keyring.write_bytes(b"keyring bytes")
    monkeypatch.setenv("PFBUILD_STAGE_ROOT", str(tmp_path / "stage"))
    ctx = Context(workspace=private)
    assert not is_world_readable(keyring)
    staged = unshare_readable(ctx, keyring)
    assert staged != keyring and staged.read_bytes() == b"keyring bytes"
    assert staged.stat().st_mode & 0o777 == 0o644
    assert unshare_readable(ctx, keyring) == staged
    public = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if public.is_file():
        assert unshare_readable(ctx, public) == public
