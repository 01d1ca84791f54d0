"""Base environments that actions running side by side share are made once (mmdebstrap faked)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from builder.bootstrap import buildenv
from builder.core import run
from builder.core.context import Context
from builder.model.distro import TRIXIE

pytestmark = pytest.mark.unit


def test_two_builds_of_one_target_at_once_make_its_chroot_tarball_once(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = ctx.workspace / "keyring.gpg"
    keyring.write_bytes(b"pinned keys")
    made: list[str] = []

    def mmdebstrap(cmd: Sequence[str], **_options: Any) -> None:
        made.append(threading.current_thread().name)
        time.sleep(0.3)  # the other thread asks meanwhile
        Path(cmd[-2]).write_bytes(b"a chroot")

    monkeypatch.setattr(buildenv, "ensure_keyring", lambda _ctx, _dist: keyring)
    monkeypatch.setattr(buildenv, "unshare_readable", lambda _ctx, path: path)
    monkeypatch.setattr(buildenv, "mmdebstrap_version", lambda: "mmdebstrap 1.5")
    monkeypatch.setattr(run, "run", mmdebstrap)
    tarballs: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: tarballs.append(buildenv.ensure_chroot_tarball(ctx, TRIXIE))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert tarballs == [buildenv.chroot_tarball_path(ctx, TRIXIE)] * 2
    assert tarballs[0].read_bytes() == b"a chroot"
