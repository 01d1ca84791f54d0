"""pfbuild matrix: one GitHub Actions job per recipe and target of a release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder import cli
from builder.commands.matrix import release_matrix

pytestmark = pytest.mark.unit


def test_matrix_covers_postfix_and_companions_on_every_target() -> None:
    jobs = release_matrix("postfix", "3.11.7")["include"]
    assert jobs == [
        {"recipe": "postfix", "version": "3.11.7", "target": "trixie"},
        {"recipe": "postfix", "version": "3.11.7", "target": "resolute"},
        {"recipe": "mimalloc-secure", "version": "2.0.9", "target": "trixie"},
        {"recipe": "mimalloc-secure", "version": "2.0.9", "target": "resolute"},
    ]


def test_matrix_json_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--workspace", str(tmp_path), "matrix", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    matrix = json.loads(out)
    assert set(matrix) == {"include"}
    assert {(j["recipe"], j["target"]) for j in matrix["include"]} == {
        ("postfix", "trixie"),
        ("postfix", "resolute"),
        ("mimalloc-secure", "trixie"),
        ("mimalloc-secure", "resolute"),
    }
    # Without a VERSION: the newest release the recipe pins packaging for.
    assert {j["version"] for j in matrix["include"] if j["recipe"] == "postfix"} == {"3.11.6"}


def test_matrix_refuses_a_version_outside_the_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--workspace", str(tmp_path), "matrix", "3.12.0"]) == 3
    assert "outside the postfix 3.11 series" in capsys.readouterr().err


def test_matrix_of_an_older_point_release_warns_on_stderr_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--workspace", str(tmp_path), "matrix", "3.11.3", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["include"][0]["version"] == "3.11.3"
    assert "older than 3.11.6" in captured.err
