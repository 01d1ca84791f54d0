"""The release engine: keys chain through the graph, finished work is reused."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from builder.core.digest import hash_tree
from builder.core.errors import PfbuildError
from builder.pipeline.actions import Action, Progress, StateStore, execute, plan

pytestmark = pytest.mark.unit


def graph(flags: str, template: str, calls: list[str], fail: str = "") -> list[Action]:
    def step(name: str) -> Any:
        def run(deps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
            if name == fail:
                raise PfbuildError(f"{name} broke")
            calls.append(name)
            return {"made": name, "from": sorted(deps)}

        return run

    return [
        Action("fetch", "fetch", {"version": "3.11.6"}, run=step("fetch")),
        Action("source", "source", {"flags": flags}, ("fetch",), run=step("source")),
        Action("build", "build", {}, ("source",), run=step("build")),
        Action("publish", "publish", {}, ("build",), run=step("publish")),
        Action("image", "image", {"template": template}, ("publish",), run=step("image")),
    ]


def run_all(actions: list[Action], state: StateStore) -> list[str]:
    out = io.StringIO()
    execute(plan(actions, state), state, Progress(out))
    return out.getvalue().splitlines()


def test_second_run_reuses_everything(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    calls: list[str] = []
    run_all(graph("-O3", "t1", calls), state)
    assert calls == ["fetch", "source", "build", "publish", "image"]
    calls.clear()
    lines = run_all(graph("-O3", "t1", calls), state)
    assert calls == []
    assert all(" reused " in line for line in lines)


def test_template_change_reruns_only_the_image(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    run_all(graph("-O3", "t1", []), state)
    calls: list[str] = []
    planned = plan(graph("-O3", "t2", calls), state)
    assert [p.action.name for p in planned if not p.reuse] == ["image"]
    assert planned[-1].reason == "changed: template"


def test_flag_change_reruns_source_and_everything_after(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    run_all(graph("-O3", "t1", []), state)
    calls: list[str] = []
    run_all(graph("-O2", "t1", calls), state)
    assert calls == ["source", "build", "publish", "image"]


def test_failure_resumes_from_the_first_unfinished_action(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    calls: list[str] = []
    with pytest.raises(PfbuildError):
        run_all(graph("-O3", "t1", calls, fail="build"), state)
    assert calls == ["fetch", "source"]
    calls.clear()
    run_all(graph("-O3", "t1", calls), state)
    assert calls == ["build", "publish", "image"]


def test_plan_is_pure(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state")
    plan(graph("-O3", "t1", []), state)
    assert not (tmp_path / "state").exists()


def test_json_progress_is_one_object_per_event(tmp_path: Path) -> None:
    out = io.StringIO()
    state = StateStore(tmp_path)
    execute(plan(graph("-O3", "t1", []), state), state, Progress(out, as_json=True))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["state"] for e in events[:2]] == ["started", "done"]
    assert {e["action"] for e in events} == {"fetch", "source", "build", "publish", "image"}


def test_hash_tree_sees_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    first = hash_tree(tmp_path)
    (tmp_path / "a").write_text("2")
    assert hash_tree(tmp_path) != first
