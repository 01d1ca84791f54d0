"""Archive keyrings are accepted only with the pinned fingerprint (real gpg, local files)."""

from __future__ import annotations

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
from tests.fixtures.keyrings import make_fake_keyring_deb

# ensure_keyring unpacks with dpkg-deb and checks the fingerprint with gpg.
pytestmark = pytest.mark.integration


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


@pytest.mark.unit
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
