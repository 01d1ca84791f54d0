"""Independent release actions side by side, in a pfbuild process of its own, killed and resumed.

The graph is a tiny one (tests/fixtures/tinyrelease.py: two recipes fetched and built, one
publish; each action a sleeping process), run by the same lock, planner, executor and state
store as `pfbuild release`, so a run takes seconds: the real graph needs sbuild and docker.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from builder.core.context import Context
from tests.fixtures import tinyrelease

pytestmark = pytest.mark.integration

WAIT = 30.0  # seconds for an event that should come within one or two


class Release:
    """A tiny release running beside the test, its --json events read as they come."""

    def __init__(self, workspace: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            tinyrelease.cmdline(workspace, "--json", *args),
            cwd=tinyrelease.REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,  # its sleeping processes in a group the test can clean up
        )  # fmt: skip
        self.events: list[tuple[str, str]] = []
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, *wanted: tuple[str, str]) -> None:
        """Read events until every one of `wanted` has come."""
        deadline = time.monotonic() + WAIT
        while not set(wanted) <= set(self.events):
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"ended before {wanted}: {self.events}"
            record: dict[str, Any] = json.loads(line)  # every line one whole JSON object
            self.events.append((record["action"], record["state"]))

    def finish(self) -> int:
        """Read the remaining events; return the exit status."""
        while (line := self._lines.get(timeout=WAIT)) is not None:
            record = json.loads(line)
            self.events.append((record["action"], record["state"]))
        return self.proc.wait(WAIT)

    def states(self) -> dict[str, str]:
        return dict(self.events)

    def before(self, first: tuple[str, str], then: tuple[str, str]) -> bool:
        return self.events.index(first) < self.events.index(then)

    def clean_up(self) -> None:
        """Kill what is left of it: the process, and the sleeping processes of its actions."""
        for kill in (self.proc.kill, lambda: os.killpg(self.proc.pid, signal.SIGKILL)):
            with suppress(ProcessLookupError):
                kill()
        self.proc.wait(WAIT)


@pytest.fixture
def releases() -> Iterator[list[Release]]:
    started: list[Release] = []
    yield started
    for release in started:
        release.clean_up()


def recorded(workspace: Path) -> set[str]:
    """The actions the state store holds a record of."""
    return {p.stem for p in (workspace / "state" / "release").glob("*.json")}


def action_processes(workspace: Path) -> list[str]:
    """Processes that actions of a release on `workspace` started and that still run."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if tinyrelease.MARKER.encode() in argv and str(workspace).encode() in argv:
                found.append(cmdline.parent.name)
    return found


def test_independent_actions_run_at_once_and_a_killed_release_resumes(
    tmp_path: Path, releases: list[Release]
) -> None:
    ws = tmp_path / "ws"
    first = Release(ws, "--parallel", "2", "--seconds", "build beta=60")
    releases.append(first)
    first.wait_for(("build alpha", "done"), ("build beta", "started"))
    # Two at once: each fetch started before either was done, and the builds overlapped too.
    assert first.before(("fetch beta", "started"), ("fetch alpha", "done"))
    assert first.before(("fetch alpha", "started"), ("fetch beta", "done"))
    assert first.before(("build beta", "started"), ("build alpha", "done"))
    # A dependent waits for what it needs.
    assert first.before(("fetch alpha", "done"), ("build alpha", "started"))
    assert first.before(("fetch beta", "done"), ("build beta", "started"))
    assert "publish" not in first.states()

    first.proc.kill()  # SIGKILL while build beta runs
    assert first.proc.wait(WAIT) == -signal.SIGKILL
    assert recorded(ws) == {"fetch_alpha", "fetch_beta", "build_alpha"}
    assert not tinyrelease.output_path(Context(workspace=ws), "build beta").exists()
    first.clean_up()  # the orphaned sleeper of build beta

    started = time.monotonic()
    second = Release(ws, "--parallel", "2")
    releases.append(second)
    assert second.finish() == 0
    assert second.states() == {
        "fetch alpha": "reused",
        "fetch beta": "reused",
        "build alpha": "reused",
        "build beta": "done",
        "publish": "done",
    }
    assert second.events.count(("build beta", "started")) == 1
    assert second.before(("build beta", "done"), ("publish", "started"))
    assert recorded(ws) == {"fetch_alpha", "fetch_beta", "build_alpha", "build_beta", "publish"}
    assert json.loads((ws / "tiny" / "published.json").read_text()) == sorted(second.states())
    assert time.monotonic() - started < WAIT


def test_sigterm_stops_running_actions_and_their_processes_cleanly(
    tmp_path: Path, releases: list[Release]
) -> None:
    ws = tmp_path / "ws"
    slow = ("--seconds", "build alpha=60", "--seconds", "build beta=60")
    first = Release(ws, "--parallel", "2", *slow)
    releases.append(first)
    first.wait_for(("build alpha", "started"), ("build beta", "started"))
    deadline = time.monotonic() + WAIT
    while len(action_processes(ws)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the event comes just before the action starts its process
    assert len(action_processes(ws)) == 2
    first.proc.send_signal(signal.SIGTERM)  # to pfbuild alone, as `kill PID` sends it
    assert first.finish() == 130
    assert first.states()["build alpha"] == first.states()["build beta"] == "failed"
    assert action_processes(ws) == []
    assert recorded(ws) == {"fetch_alpha", "fetch_beta"}
    assert not list((ws / "state" / "release").glob(".*"))  # no half-written record

    second = Release(ws, "--parallel", "2")
    releases.append(second)
    assert second.finish() == 0
    reran = [action for action, state in second.events if state == "started"]
    assert reran == ["build alpha", "build beta", "publish"]
