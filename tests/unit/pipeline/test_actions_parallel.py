"""Independent actions side by side: dependents wait, a failure stops new starts, resume works."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from builder.core import run
from builder.core.errors import PfbuildError
from builder.pipeline.actions import Action, Progress, StateStore, execute, plan

pytestmark = pytest.mark.unit

Run = Callable[[Mapping[str, Mapping[str, Any]]], Mapping[str, Any]]
WAIT = 10.0  # seconds a test waits for an event that should come at once


class Log:
    """What the fake actions did, in order, from every thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[str] = []

    def add(self, entry: str) -> None:
        with self.lock:
            self.entries.append(entry)


def step(name: str, log: Log, body: Callable[[], object] = lambda: None) -> Run:
    def run_step(deps: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
        log.add(f"start {name}")
        body()
        log.add(f"end {name}")
        return {"made": name, "from": sorted(deps)}

    return run_step


def diamond(log: Log, bodies: Mapping[str, Callable[[], object]] | None = None) -> list[Action]:
    """fetch → a, b (independent) → join; `bodies` gives a step something to do."""
    bodies = bodies or {}

    def act(name: str, needs: tuple[str, ...] = ()) -> Action:
        return Action(name, name, {"v": "1"}, needs, run=step(name, log, bodies.get(name, _nop)))

    return [act("fetch"), act("a", ("fetch",)), act("b", ("fetch",)), act("join", ("a", "b"))]


def _nop() -> None:
    pass


def run_plan(
    actions: list[Action], state: StateStore, parallel: int, *, as_json: bool = False
) -> list[str]:
    out = io.StringIO()
    execute(plan(actions, state), state, Progress(out, as_json=as_json), parallel=parallel)
    return out.getvalue().splitlines()


def test_two_independent_actions_run_at_once_and_their_dependent_waits(tmp_path: Path) -> None:
    log = Log()
    # Each of a and b waits at the barrier for the other: it only opens if both run at once.
    both = threading.Barrier(2, timeout=WAIT)
    graph = diamond(log, {"a": both.wait, "b": both.wait})
    lines = run_plan(graph, StateStore(tmp_path), parallel=2, as_json=True)
    events = [(e["action"], e["state"]) for e in map(json.loads, lines)]
    assert events[:3] == [("fetch", "started"), ("fetch", "done"), ("a", "started")]
    first_done = min(events.index(("a", "done")), events.index(("b", "done")))
    assert events.index(("b", "started")) < first_done
    assert events[-2:] == [("join", "started"), ("join", "done")]
    entries = log.entries
    assert entries.index("start join") > max(entries.index("end a"), entries.index("end b"))


def test_parallel_one_runs_the_plan_in_order_with_the_same_lines(tmp_path: Path) -> None:
    log = Log()
    lines = run_plan(diamond(log), StateStore(tmp_path), parallel=1)
    order = ("fetch", "a", "b", "join")
    assert log.entries == [f"{e} {n}" for n in order for e in ("start", "end")]
    pattern = r"\[{}/4\] {:<40} done    \d+\.\d s"
    for i, (line, name) in enumerate(zip(lines, order, strict=True), 1):
        assert re.fullmatch(pattern.format(i, name), line), line
    again = run_plan(diamond(log), StateStore(tmp_path), parallel=1)
    assert again == [
        f"[{i}/4] {name:<40} reused  (same inputs as the finished run)"
        for i, name in enumerate(order, 1)
    ]


def test_ready_actions_start_in_plan_order(tmp_path: Path) -> None:
    log = Log()
    actions = [Action(n, "s", {}, run=step(n, log)) for n in ("one", "two", "three", "four")]
    lines = run_plan(actions, StateStore(tmp_path), parallel=4, as_json=True)
    started = [e["action"] for e in map(json.loads, lines) if e["state"] == "started"]
    assert started == ["one", "two", "three", "four"]


def test_a_failure_starts_nothing_new_and_lets_the_running_one_finish(tmp_path: Path) -> None:
    log = Log()
    b_running = threading.Event()
    a_failing = threading.Event()

    def fail_a() -> None:
        assert b_running.wait(WAIT)
        a_failing.set()
        raise PfbuildError("a broke")

    def slow_b() -> None:
        b_running.set()
        assert a_failing.wait(WAIT)
        time.sleep(0.3)  # the scheduler sees a's failure while b still runs

    actions = [
        Action("a", "s", {}, run=step("a", log, fail_a)),
        Action("b", "s", {}, run=step("b", log, slow_b)),
        Action("c", "s", {}, run=step("c", log)),
        Action("d", "s", {}, ("a",), run=step("d", log)),
    ]
    state = StateStore(tmp_path)
    out = io.StringIO()
    with pytest.raises(PfbuildError, match="a broke"):
        execute(plan(actions, state), state, Progress(out, as_json=True), parallel=2)
    events = [(e["action"], e["state"]) for e in map(json.loads, out.getvalue().splitlines())]
    assert events == [("a", "started"), ("b", "started"), ("a", "failed"), ("b", "done")]
    assert "start c" not in log.entries and "start d" not in log.entries
    assert state.get("b") is not None and state.get("a") is None

    # Resume: what finished, even after the failure, is reused; the rest runs.
    log.entries.clear()
    fixed = [Action("a", "s", {}, run=step("a", log)), *actions[1:]]
    lines = run_plan(fixed, state, parallel=2, as_json=True)
    states = {e["action"]: e["state"] for e in map(json.loads, lines)}
    assert states == {"a": "done", "b": "reused", "c": "done", "d": "done"}
    assert "start b" not in log.entries


def test_any_exception_is_a_failure_with_a_final_event(tmp_path: Path) -> None:
    def broken(_deps: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
        raise KeyError("bug")

    state = StateStore(tmp_path)
    out = io.StringIO()
    with pytest.raises(KeyError, match="bug"):
        execute(plan([Action("x", "s", {}, run=broken)], state), state, Progress(out), parallel=3)
    assert re.fullmatch(r"\[1/1\] x {39} failed  \d+\.\d s\n", out.getvalue())
    assert state.get("x") is None


def test_json_lines_stay_whole_while_many_actions_report(tmp_path: Path) -> None:
    log = Log()
    names = [f"action-{i}" for i in range(24)]
    actions = [Action(n, "s", {"i": n}, run=step(n, log, lambda: time.sleep(0.01))) for n in names]
    lines = run_plan(actions, StateStore(tmp_path), parallel=8, as_json=True)
    events = [json.loads(line) for line in lines]
    assert len(events) == 48
    for name in names:
        assert [e["state"] for e in events if e["action"] == name] == ["started", "done"]


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so progress draws its status line."""

    def isatty(self) -> bool:
        return True


def test_status_line_lists_running_actions_and_never_splits_an_event_line(
    tmp_path: Path,
) -> None:
    log = Log()
    both = threading.Barrier(2, timeout=WAIT)

    def together() -> None:
        both.wait()
        time.sleep(1.3)  # long enough for the status line to be drawn twice

    actions = [Action(n, "s", {}, run=step(n, log, together), long=True) for n in ("left", "right")]
    out = Terminal()
    state = StateStore(tmp_path)
    execute(plan(actions, state), state, Progress(out), parallel=2)
    text = out.getvalue()
    assert re.search(r"\r\x1b\[K[|/\\-] left +\d+ s  right +\d+ s", text), repr(text)
    # Each line, after the last status line cleared on it, is one whole event line.
    lines = [line.rsplit("\r\x1b[K", 1)[-1] for line in text.split("\n")[:-1]]
    assert sorted(line.split()[1] for line in lines) == ["left", "right"], lines
    assert all(re.fullmatch(r"\[\d/2\] \S+ +done +\d+\.\d s", line) for line in lines), lines


def test_an_interrupt_stops_the_running_actions_processes(tmp_path: Path) -> None:
    started = threading.Event()

    def sleeper(_deps: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
        started.set()
        run.run([sys.executable, "-c", "import time; time.sleep(30)"])
        return {}

    def interrupt(_deps: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
        assert started.wait(WAIT)
        time.sleep(0.2)  # the sleeping process has started
        os.kill(os.getpid(), signal.SIGTERM)
        return {"sent": True}

    actions = [
        Action("sleeper", "s", {}, run=sleeper),
        Action("interrupt", "s", {}, run=interrupt),
        Action("later", "s", {}, ("interrupt",)),
    ]
    state = StateStore(tmp_path)
    out = io.StringIO()
    begun = time.monotonic()
    with pytest.raises(KeyboardInterrupt), run.interrupt_on_sigterm():
        execute(plan(actions, state), state, Progress(out, as_json=True), parallel=2)
    assert time.monotonic() - begun < WAIT, "the sleeping process was not stopped"
    events = [(e["action"], e["state"]) for e in map(json.loads, out.getvalue().splitlines())]
    assert ("sleeper", "failed") in events and ("later", "started") not in events
    assert state.get("sleeper") is None
    assert run.child_processes() == []


@pytest.mark.parametrize("parallel", [0, -1])
def test_parallel_below_one_is_refused(tmp_path: Path, parallel: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        execute([], StateStore(tmp_path), Progress(io.StringIO()), parallel=parallel)
