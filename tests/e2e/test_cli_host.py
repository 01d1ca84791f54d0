"""The installed `pfbuild` command, run in a subprocess against the real host."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli import run_pfbuild
from tests.fixtures.keyrings import make_fake_keyring_deb

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_engine(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A DOCKER_HOST where no engine runs yet, and the workspace a private one would use."""
    sock = f"unix:///run/pfbuild-test-{os.getpid()}.sock"
    ws = tmp_path / "ws"
    yield sock, ws
    pidfile = ws / "dockerd" / "dockerd.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)


def test_doctor_reports_a_missing_engine_and_fix_starts_one(
    private_engine: tuple[str, Path],
) -> None:
    sock, ws = private_engine
    env = {"DOCKER_HOST": sock}
    down = run_pfbuild(ws, "doctor", env=env)
    assert down.returncode == 3
    rows = [r for r in down.stdout.splitlines() if "docker engine" in r]
    assert rows == [f"MISSING docker engine     not reachable at {sock}"]
    assert len(down.stderr.strip().splitlines()) == 1
    assert "doctor --fix" in down.stderr

    fixed = run_pfbuild(ws, "doctor", "--fix", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert any(r.startswith("ok      docker engine") for r in fixed.stdout.splitlines())
    assert (ws / "logs" / "dockerd.log").exists()
    info = subprocess.run(
        ["docker", "-H", sock, "info", "--format", "{{.DockerRootDir}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(ws / "dockerd" / "data") in info.stdout


def test_fake_archive_keyring_is_refused_with_nothing_written(tmp_path: Path) -> None:
    deb = make_fake_keyring_deb(tmp_path)
    ws = tmp_path / "ws"
    proc = run_pfbuild(ws, "--keyring-deb", f"resolute={deb}", "bootstrap", "--target", "resolute")
    assert proc.returncode == 3
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "does not hold the pinned key" in err[0]
    for folder in ("chroots", "keyrings", "images"):
        assert not (ws / folder).exists() or not any((ws / folder).iterdir()), folder


def test_unknown_target_fails_before_any_work(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = run_pfbuild(ws, "bootstrap", "--target", "sid")
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "unknown target 'sid'" in proc.stderr
    assert sorted(p.name for p in ws.iterdir()) == []
