"""The workspace lock: one holder at a time, the next one told who holds it (or waiting for it)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.core.errors import PfbuildError
from builder.core.lock import resource_lock, workspace_lock

pytestmark = pytest.mark.unit


def test_a_second_holder_in_another_process_is_told_who_holds_it(tmp_path: Path) -> None:
    lock = tmp_path / "release.lock"
    with workspace_lock(lock, "release"):
        code = (
            "import sys; from pathlib import Path\n"
            "from builder.core.lock import workspace_lock\n"
            "from builder.core.errors import PfbuildError\n"
            "try:\n"
            f"    with workspace_lock(Path({str(lock)!r}), 'release'): pass\n"
            "except PfbuildError as e: print(e.one_line()); sys.exit(3)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
    assert proc.returncode == 3
    assert "another release is running" in proc.stdout
    assert f"held by pid {os.getpid()} on " in proc.stdout
    assert "waited" not in proc.stdout


def test_a_second_holder_waits_up_to_its_timeout_then_fails(tmp_path: Path) -> None:
    lock = tmp_path / "publish.lock"
    naps: list[float] = []
    # flock conflicts between two open file descriptions, even in one process.
    with (
        workspace_lock(lock, "publish", timeout=10),
        pytest.raises(PfbuildError, match=rf"held by pid {os.getpid()} on .*waited 0\.3 s"),
        workspace_lock(lock, "publish", timeout=0.3, sleep=naps.append),
    ):
        pass
    assert naps, "the second holder should have waited before giving up"
    with workspace_lock(lock, "publish"):
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")


def test_a_second_holder_gets_the_lock_once_the_first_lets_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = tmp_path / "publish.lock"
    caplog.set_level("INFO", logger="pfbuild")
    released = threading.Event()
    holding = threading.Event()

    def first() -> None:
        with workspace_lock(lock, "publish"):
            holding.set()
            time.sleep(0.3)
        released.set()

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(5)
    with workspace_lock(lock, "publish", timeout=10):
        assert released.is_set()
    thread.join()
    assert "waiting for the publish lock held by pid" in caplog.text


def test_a_resource_lock_waits_for_its_holder_as_long_as_it_takes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = tmp_path / "locks" / "chroot-trixie-amd64.lock"
    caplog.set_level("INFO", logger="pfbuild")
    order: list[str] = []
    holding = threading.Event()

    def maker() -> None:
        with resource_lock(lock, "trixie-amd64.tar"):
            holding.set()
            time.sleep(0.3)
            order.append("made")

    thread = threading.Thread(target=maker)
    thread.start()
    assert holding.wait(5)
    # Another thread of the same process waits too: flock excludes open file descriptions.
    with resource_lock(lock, "trixie-amd64.tar"):
        order.append("used")
    thread.join()
    assert order == ["made", "used"]
    assert f"waiting for trixie-amd64.tar, locked by pid {os.getpid()} on " in caplog.text
