"""The cache index and sources.json are checked against their schema when read back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.fetch import cache as sources
from builder.fetch.cache import index_path, write_provenance
from builder.fetch.sources import fetch
from tests.fixtures.sources import ORIG, file_mirror, offline_postfix

pytestmark = pytest.mark.unit


def _fetch(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> int:
    recipe = offline_postfix((file_mirror(ORIG.parent),))
    monkeypatch.setattr("builder.commands.fetch.load_recipe", lambda name: recipe)
    return cli.main(["-q", "--workspace", str(ctx.workspace), "fetch", "postfix", "3.11.6"])


def _plant_index(ctx: Context, data: object) -> None:
    index_path(ctx).parent.mkdir(parents=True, exist_ok=True)
    index_path(ctx).write_text(json.dumps(data))


def _victim(ctx: Context) -> Path:
    victim = ctx.workspace / "victim"
    victim.write_text("not pfbuild's to delete\n")
    return victim


def _hostile_entry() -> list[dict[str, str]]:
    # Names that, joined to the cache folder, point at the workspace's own files.
    return [{"role": "dsc", "name": "../victim", "sha256": "..", "url": "x", "how": "x"}]


def test_a_hostile_index_entry_cannot_reach_outside_the_cache(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = _victim(ctx)
    _plant_index(ctx, {"postfix 3.11.6": _hostile_entry()})
    assert _fetch(ctx, monkeypatch) == 0
    assert victim.read_text() == "not pfbuild's to delete\n"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pfbuild: cache index {index_path(ctx)} is malformed: ")
    assert err[0].endswith("it is rewritten")
    # Rewritten: the next run reads it without a word and serves from the cache.
    assert "postfix 3.11.6" not in json.loads(index_path(ctx).read_text())
    assert _fetch(ctx, monkeypatch) == 0
    assert capsys.readouterr().err == ""


def test_a_hostile_entry_under_the_right_key_is_dropped_too(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = _victim(ctx)
    recipe = offline_postfix((file_mirror(ORIG.parent),))
    fetch(ctx, recipe, "3.11.6")
    index = json.loads(index_path(ctx).read_text())
    ((key, entry),) = index.items()
    assert entry["anchor"] == sources.trust_anchor(recipe, "3.11.6")
    entry["files"] = _hostile_entry()
    _plant_index(ctx, index)
    assert _fetch(ctx, monkeypatch) == 0
    assert victim.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"entry '{key}' is malformed" in err[0]
    assert json.loads(index_path(ctx).read_text())[key]["files"][0]["name"] != "../victim"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"postfix"'])
def test_an_unreadable_index_is_a_warning_and_is_rewritten(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    index_path(ctx).parent.mkdir(parents=True)
    index_path(ctx).write_text(text)
    assert _fetch(ctx, monkeypatch) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pfbuild: cache index {index_path(ctx)} is ")
    assert isinstance(json.loads(index_path(ctx).read_text()), dict)


def test_sources_json_round_trips(ctx: Context, tmp_path: Path) -> None:
    result = fetch(ctx, offline_postfix((file_mirror(ORIG.parent),)), "3.11.6")
    path = tmp_path / "sources.json"
    write_provenance(path, result)
    back = sources.read_provenance(path)
    assert back.files == result.files
    assert back.anchor == result.anchor
    assert json.loads(path.read_text())["anchor"]["upstream_fingerprint"] == (
        "622C7C012254C186677469C50C0B590E80CA15A7"
    )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["files"][0].update(sha256="0" * 63), "files[0].sha256"),
        (lambda d: d["files"][0].update(name="../../etc/passwd"), "files[0].name"),
        (lambda d: d.pop("anchor"), "the top level"),
        (lambda d: d.update(files=[]), "files"),
        (lambda d: d.update(extra=1), "the top level"),
    ],
    ids=["short-sha", "path-name", "no-anchor", "no-files", "unknown-key"],
)
def test_a_malformed_sources_json_is_one_line(
    ctx: Context, tmp_path: Path, change: Callable[[dict[str, Any]], object], where: str
) -> None:
    result = fetch(ctx, offline_postfix((file_mirror(ORIG.parent),)), "3.11.6")
    path = tmp_path / "sources.json"
    write_provenance(path, result)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(PfbuildError) as err:
        sources.read_provenance(path)
    line = err.value.one_line()
    assert "\n" not in line
    assert line.startswith(f"{path} is malformed: at {where}: ")


def test_an_unparsable_sources_json_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    path.write_text("{")
    with pytest.raises(PfbuildError, match=r"^cannot read .*sources\.json: Expecting"):
        sources.read_provenance(path)
