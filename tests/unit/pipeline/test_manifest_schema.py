"""`manifest verify` believes no manifest: the schema first, then every artifact's hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from builder import cli

pytestmark = pytest.mark.unit

GOOD_SHA = "0" * 64


def verify(tmp_path: Path, document: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    code = cli.main(["--workspace", str(tmp_path / "ws"), "manifest", "verify", str(path)])
    return code, capsys.readouterr().err


def base(**changes: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "pfbuild": "0.1.0",
        "recipe": "postfix",
        "version": "3.11.6",
        "targets": ["trixie"],
        "actions": {},
        "artifacts": [{"path": "/nonexistent", "sha256": GOOD_SHA}],
    }
    manifest.update(changes)
    return manifest


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({}, "is a required property"),
        (base(artifacts=[]), "should be non-empty"),
        (base(artifacts=[{"path": "/x"}]), "'sha256' is a required property"),
        (base(artifacts="all of them"), "expected array, found string"),
        ([base()], "expected object, found array"),
        (base(artifacts=[{"path": "/x", "sha256": "abc"}]), "does not match"),
        (base(artifacts=[{"path": "", "sha256": GOOD_SHA}]), "should be non-empty"),
    ],
    ids=[
        "empty",
        "no-artifacts",
        "no-sha256",
        "artifacts-string",
        "top-list",
        "bad-sha",
        "no-path",
    ],
)
def test_a_malformed_manifest_is_one_line_and_exit_3(
    document: Any, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = verify(tmp_path, document, capsys)
    lines = err.strip().splitlines()
    assert code == 3, err
    assert len(lines) == 1 and "is malformed" in lines[0] and says in lines[0], err
    assert "internal error" not in err


def test_a_sound_manifest_is_checked_against_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = tmp_path / "postfix.deb"
    artifact.write_bytes(b"package bytes")
    digest = hashlib.sha256(b"package bytes").hexdigest()
    document = base(artifacts=[{"path": str(artifact), "sha256": digest}])
    assert verify(tmp_path, document, capsys)[0] == 0
    artifact.write_bytes(b"other bytes")
    code, err = verify(tmp_path, document, capsys)
    assert code == 3 and f"changed: {artifact}" in err


def test_a_manifest_that_is_not_json_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    code = cli.main(["--workspace", str(tmp_path / "ws"), "manifest", "verify", str(path)])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1 and "cannot read manifest" in err
