"""Actions keyed by the hash of their inputs: a pure planner, an executor, a state store."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from builder.core.atomic import write_text
from builder.core.errors import PfbuildError

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
    """One line per action with its state and time; a spinner on a terminal; JSON on request."""

    def __init__(self, stream: TextIO = sys.stderr, *, as_json: bool = False) -> None:
        self.stream = stream
        self.as_json = as_json
        self.live = stream.isatty() and not as_json
        self._stop = threading.Event()

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
            print(json.dumps(record), file=self.stream, flush=True)
            return
        if state == "started":
            return
        note = f"({planned.reason})" if state == "reused" else f"{secs:.1f} s"
        print(
            f"[{index}/{total}] {planned.action.name:<40} {state:<7} {note}",
            file=self.stream,
            flush=True,
        )

    @contextmanager
    def spinner(self, label: str) -> Iterator[None]:
        """A live elapsed-time indicator for long steps, only on a terminal."""
        if not self.live:
            yield
            return
        self._stop.clear()
        started = time.monotonic()

        def spin() -> None:
            frames = "|/-\\"
            i = 0
            while not self._stop.wait(0.5):
                elapsed = time.monotonic() - started
                print(
                    f"\r{frames[i % 4]} {label} {elapsed:5.0f} s",
                    end="",
                    file=self.stream,
                    flush=True,
                )
                i += 1
            print("\r\033[K", end="", file=self.stream, flush=True)

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


def execute(
    planned: Sequence[PlannedAction], state: StateStore, progress: Progress
) -> dict[str, Outputs]:
    """Run what the plan says runs, in order; record each finished action at once."""
    outputs: dict[str, Outputs] = {}
    total = len(planned)
    for index, item in enumerate(planned, 1):
        action = item.action
        if item.reuse:
            record = state.get(action.name) or {}
            outputs[action.name] = record.get("outputs", {})
            progress.event(index, total, item, "reused", 0.0)
            continue
        progress.event(index, total, item, "started", 0.0)
        started = time.monotonic()
        deps = {n: outputs[n] for n in action.needs}
        try:
            if action.long:
                with progress.spinner(action.name):
                    result = action.run(deps)
            else:
                result = action.run(deps)
        except PfbuildError:
            progress.event(index, total, item, "failed", time.monotonic() - started)
            raise
        seconds = time.monotonic() - started
        outputs[action.name] = dict(result)
        state.put(action, item.key, result, seconds)
        progress.event(index, total, item, "done", seconds)
    return outputs
