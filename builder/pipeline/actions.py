"""Actions keyed by the hash of their inputs: a pure planner, a parallel executor, a state store."""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from builder.core.atomic import write_text
from builder.core.errors import PfbuildError
from builder.core.run import terminate_children

log = logging.getLogger("pfbuild")

Outputs = Mapping[str, Any]


@dataclass(frozen=True)
class Action:
    """One unit of a release: what it is, what it needs, what makes its result stale."""

    name: str
    stage: str
    inputs: Mapping[str, str]
    needs: tuple[str, ...] = ()
    run: Callable[[Mapping[str, Outputs]], Outputs] = field(
        default=lambda _deps: {}, compare=False, repr=False
    )
    long: bool = False


def fingerprint(inputs: Mapping[str, str], dep_keys: Sequence[str]) -> str:
    """The action's key: its own inputs plus the keys of every action it needs."""
    data = json.dumps({"inputs": dict(sorted(inputs.items())), "deps": list(dep_keys)})
    return hashlib.sha256(data.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class PlannedAction:
    """An action with its key and whether it runs or its recorded result is reused (and why)."""

    action: Action
    key: str
    reuse: bool
    reason: str


class StateStore:
    """Finished actions as one JSON file each: key, outputs, when, how long."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.root / f"{safe}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._path(name).read_text())
            return data
        except (OSError, ValueError):
            return None

    def put(self, action: Action, key: str, outputs: Outputs, seconds: float) -> None:
        record = {
            "key": key,
            "inputs": dict(action.inputs),
            "outputs": outputs,
            "finished": time.time(),
            "seconds": seconds,
        }
        name = action.name
        write_text(self._path(name), json.dumps(record, indent=2, sort_keys=True, default=str))


def plan(actions: Sequence[Action], state: StateStore) -> list[PlannedAction]:
    """Decide, without side effects, which actions run and which are reused."""
    keys: dict[str, str] = {}
    planned: list[PlannedAction] = []
    running: set[str] = set()
    for action in actions:
        missing = [n for n in action.needs if n not in keys]
        if missing:
            raise PfbuildError(
                f"action {action.name!r} needs {', '.join(missing)}, planned later or not at all",
                fix="this is a bug in the release graph",
            )
        key = fingerprint(action.inputs, [keys[n] for n in action.needs])
        keys[action.name] = key
        record = state.get(action.name)
        if any(n in running for n in action.needs):
            reuse, reason = False, "an input action runs"
        elif record is None:
            reuse, reason = False, "never finished"
        elif record.get("key") != key:
            before = record.get("inputs", {})
            changed = sorted(k for k, v in action.inputs.items() if before.get(k) != v)
            what = ", ".join(changed) if changed else "an input action's result"
            reuse, reason = False, f"changed: {what}"
        else:
            reuse, reason = True, "same inputs as the finished run"
        if not reuse:
            running.add(action.name)
        planned.append(PlannedAction(action, key, reuse, reason))
    return planned


class Progress:
    """One line per action with its state and time; a status line on a terminal; JSON on request.

    Thread-safe: every write holds one lock, so lines of actions running side by side never mix.
    """

    def __init__(self, stream: TextIO = sys.stderr, *, as_json: bool = False) -> None:
        self.stream = stream
        self.as_json = as_json
        self.live = stream.isatty() and not as_json
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}
        self._status_thread: threading.Thread | None = None
        self._status_shown = False
        self._quiet_until = 0.0

    def _write(self, text: str) -> None:
        with self._lock:
            self._clear_status()
            print(text, file=self.stream, flush=True)

    def event(
        self, index: int, total: int, planned: PlannedAction, state: str, secs: float
    ) -> None:
        """Report one action's state change."""
        if self.as_json:
            record = {
                "action": planned.action.name,
                "stage": planned.action.stage,
                "state": state,
                "seconds": round(secs, 2),
                "key": planned.key,
                "reason": planned.reason,
            }
            self._write(json.dumps(record))
            return
        if state == "started":
            return
        note = f"({planned.reason})" if state == "reused" else f"{secs:.1f} s"
        self._write(f"[{index}/{total}] {planned.action.name:<40} {state:<7} {note}")

    def note(self, text: str) -> None:
        """A line about the run as a whole (not in JSON: stdout stays one event per line)."""
        if not self.as_json:
            self._write(text)

    @contextmanager
    def spinner(self, label: str) -> Iterator[None]:
        """Show `label` with its elapsed time in the status line while the block runs."""
        if not self.live:
            yield
            return
        with self._lock:
            self._running[label] = time.monotonic()
            if self._status_thread is None:
                log.addFilter(self._before_log)
                self._status_thread = threading.Thread(target=self._spin, daemon=True)
                self._status_thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(label, None)

    def _clear_status(self) -> None:
        if self._status_shown:
            print("\r\033[K", end="", file=self.stream, flush=True)
            self._status_shown = False

    def _spin(self) -> None:
        """Redraw one status line of every running long action until none runs."""
        frames = "|/-\\"
        i = 0
        while True:
            time.sleep(0.5)
            with self._lock:
                if not self._running:
                    self._clear_status()
                    log.removeFilter(self._before_log)
                    self._status_thread = None
                    return
                if time.monotonic() < self._quiet_until:
                    continue
                now = time.monotonic()
                shown = "  ".join(f"{n} {now - t:5.0f} s" for n, t in self._running.items())
                # One physical line: a wrapped one would not be overwritten by the next.
                width = max(20, shutil.get_terminal_size().columns - 1)
                line = f"{frames[i % 4]} {shown}"[:width]
                print(f"\r\033[K{line}", end="", file=self.stream, flush=True)
                self._status_shown = True
            i += 1

    def _before_log(self, _record: logging.LogRecord) -> bool:
        """Clear the status line before a log line is written to the same terminal."""
        with self._lock:
            self._clear_status()
            # The log line is written just after this returns: no redraw in between.
            self._quiet_until = time.monotonic() + 0.2
        return True


@dataclass(frozen=True)
class _Finished:
    """What a worker thread hands back: the action's outputs or its error, and its time."""

    name: str
    outputs: Outputs | None
    error: BaseException | None
    seconds: float


def _work(
    item: PlannedAction,
    deps: Mapping[str, Outputs],
    progress: Progress,
    finished: queue.SimpleQueue[_Finished],
) -> None:
    """Run one action in a worker thread; whatever happens, report to the scheduler."""
    started = time.monotonic()
    try:
        if item.action.long:
            with progress.spinner(item.action.name):
                result = dict(item.action.run(deps))
        else:
            result = dict(item.action.run(deps))
    except BaseException as exc:  # handed to the scheduler, which re-raises the first one
        finished.put(_Finished(item.action.name, None, exc, time.monotonic() - started))
        return
    finished.put(_Finished(item.action.name, result, None, time.monotonic() - started))


class _Scheduler:
    """Starts ready actions in plan order, at most `parallel` at once, and records each result."""

    def __init__(
        self, planned: Sequence[PlannedAction], state: StateStore, progress: Progress, parallel: int
    ) -> None:
        self.state = state
        self.progress = progress
        self.parallel = parallel
        self.total = len(planned)
        self.index = {p.action.name: i for i, p in enumerate(planned, 1)}
        self.pending = list(planned)
        self.running: dict[str, PlannedAction] = {}
        self.workers: list[threading.Thread] = []
        self.outputs: dict[str, Outputs] = {}
        self.finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.interrupted = False

    def start_ready(self) -> None:
        """Start (or reuse) the first ready actions in plan order while a slot is free."""
        while self.error is None and len(self.running) < self.parallel:
            ready = (p for p in self.pending if all(n in self.outputs for n in p.action.needs))
            item = next(ready, None)
            if item is None:
                return
            self.pending.remove(item)
            name = item.action.name
            if item.reuse:
                record = self.state.get(name) or {}
                self.outputs[name] = record.get("outputs", {})
                self.progress.event(self.index[name], self.total, item, "reused", 0.0)
                continue
            self.progress.event(self.index[name], self.total, item, "started", 0.0)
            deps = {n: self.outputs[n] for n in item.action.needs}
            # A daemon: a second interrupt may leave while it runs (its record is never written).
            worker = threading.Thread(
                target=_work,
                args=(item, deps, self.progress, self.finished),
                name=f"pfbuild: {name}",
                daemon=True,
            )
            self.running[name] = item
            self.workers.append(worker)
            worker.start()

    def wait_one(self) -> None:
        """Wait for a running action to end; record it at once if it succeeded."""
        self.record(self.finished.get())

    def record(self, done: _Finished) -> None:
        """Record a finished action (if it succeeded) and report it."""
        item = self.running.pop(done.name)
        index = self.index[done.name]
        if done.outputs is not None:
            self.outputs[done.name] = done.outputs
            self.state.put(item.action, item.key, done.outputs, done.seconds)
            self.progress.event(index, self.total, item, "done", done.seconds)
            return
        self.progress.event(index, self.total, item, "failed", done.seconds)
        if self.error is None:
            self.error = done.error
            if self.running:
                self.progress.note(
                    f"{done.name} failed: starting nothing new, waiting for "
                    f"{', '.join(self.running)}"
                )
        elif not self.interrupted:
            log.error("%s failed too: %s", done.name, _one_line(done.error))

    def drain_after_interrupt(self) -> None:
        """Stop: start nothing, end running actions' processes; a second interrupt leaves."""
        self.interrupted = True
        self.error = self.error or KeyboardInterrupt()
        if not self.running:
            return
        self.progress.note(
            f"interrupted: stopping {', '.join(self.running)} (interrupt again to leave now)"
        )
        terminate_children()
        # The interrupt may have come between taking a result and recording it: wait for the
        # workers, not for a result of each running action.
        with suppress(KeyboardInterrupt):
            while any(w.is_alive() for w in self.workers) or not self.finished.empty():
                with suppress(queue.Empty):
                    self.record(self.finished.get(timeout=0.2))


def _one_line(error: BaseException | None) -> str:
    if isinstance(error, PfbuildError):
        return error.one_line()
    return f"{type(error).__name__}: {error}"


def execute(
    planned: Sequence[PlannedAction],
    state: StateStore,
    progress: Progress,
    *,
    parallel: int = 1,
) -> dict[str, Outputs]:
    """Run what the plan says runs, up to `parallel` side by side; record each as it finishes.

    An action starts once every action it needs is done, ready ones in plan order. After the
    first failure nothing new starts; running actions finish (and are recorded), then the
    first error is raised. An interrupt (Ctrl-C, SIGTERM) stops running actions' processes.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    run = _Scheduler(planned, state, progress, parallel)
    try:
        while True:
            run.start_ready()
            if not run.running:
                break
            run.wait_one()
    except KeyboardInterrupt:
        run.drain_after_interrupt()
        raise
    if run.error is not None:
        raise run.error
    if run.pending:
        names = ", ".join(p.action.name for p in run.pending)
        raise PfbuildError(f"actions never became ready: {names}", fix="a bug in the release graph")
    return run.outputs
