"""The release graph and manifest, without running any stage."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TRIXIE
from builder.pipeline.actions import StateStore, plan
from builder.pipeline.manifest import build_manifest, verify_manifest, write_manifest
from builder.pipeline.release import release_actions
from builder.pipeline.request import ReleaseRequest

pytestmark = pytest.mark.unit


def request(**kw: object) -> ReleaseRequest:
    base: dict[str, object] = {
        "recipe": "postfix",
        "version": "3.11.6",
        "targets": (TRIXIE, RESOLUTE),
        "variants": ("debian", "ubuntu"),
        "images": False,
    }
    return ReleaseRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_graph_builds_postfix_and_its_companion_for_every_target(ctx: Context) -> None:
    names = [a.name for a in release_actions(ctx, request())]
    for recipe in ("postfix 3.11.6", "mimalloc-secure 2.0.9"):
        assert f"fetch {recipe}" in names
        for target in ("trixie", "resolute"):
            for stage in ("source", "build", "check"):
                assert f"{stage} {recipe} {target}" in names
    assert names[-2:] == ["publish", "attest"]
    publish = release_actions(ctx, request())[-2]
    assert len(publish.needs) == 4 and all(n.startswith("check ") for n in publish.needs)


def test_attest_comes_last_and_reads_every_action_before_it(ctx: Context) -> None:
    for images in (False, True):
        actions = release_actions(ctx, request(images=images))
        attest = actions[-1]
        assert attest.name == "attest"
        assert attest.needs == tuple(a.name for a in actions[:-1])
        if images:
            assert "image-test debian" in attest.needs and "image-test ubuntu" in attest.needs


def test_one_target_only_plans_that_target(ctx: Context) -> None:
    names = [a.name for a in release_actions(ctx, request(targets=(TRIXIE,)))]
    assert not [n for n in names if "resolute" in n]


def test_bad_version_is_refused_before_planning(ctx: Context) -> None:
    with pytest.raises(PfbuildError, match=r"outside the postfix 3\.11 series"):
        release_actions(ctx, request(version="3.12.0"))


def test_an_older_point_release_is_planned_with_its_notes(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pfbuild")
    names = [a.name for a in release_actions(ctx, request(version="3.11.3"))]
    assert "build postfix 3.11.3 trixie" in names
    assert "using postfix 3.11.6-1's, the nearest" in caplog.text
    assert "older than 3.11.6" in caplog.text


def test_plan_of_a_fresh_workspace_runs_everything(ctx: Context, tmp_path: Path) -> None:
    planned = plan(release_actions(ctx, request()), StateStore(tmp_path / "state"))
    assert all(not p.reuse for p in planned)
    assert planned[0].reason == "never finished"


def test_manifest_lists_artifacts_and_verify_catches_changes(tmp_path: Path) -> None:
    deb = tmp_path / "postfix_3.11.6-1+pf1~trixie_amd64.deb"
    deb.write_bytes(b"deb")
    entry = {"path": str(deb), "sha256": hashlib.sha256(b"deb").hexdigest()}
    outputs = {"build postfix 3.11.6 trixie": {"files": [entry]}}
    manifest = build_manifest(request(), outputs, {"build postfix 3.11.6 trixie": "k1"})
    assert manifest["artifacts"] == [entry]
    assert manifest["actions"]["build postfix 3.11.6 trixie"]["key"] == "k1"
    assert manifest["notes"] == []
    older = build_manifest(request(version="3.11.3"), outputs, {})
    assert any("older than 3.11.6" in note for note in older["notes"])
    path = tmp_path / "m.json"
    write_manifest(path, manifest)
    assert json.loads(path.read_text())["version"] == "3.11.6"
    assert verify_manifest(path) == []
    deb.write_bytes(b"tampered")
    assert verify_manifest(path) == [f"changed: {deb}"]
    deb.unlink()
    assert verify_manifest(path) == [f"missing: {deb}"]


def test_a_new_release_keeps_reproducibility_results_of_the_same_source(tmp_path: Path) -> None:
    def release_of(dsc_sha256: str) -> dict[str, object]:
        dsc = {"path": "/ws/sources/postfix_3.11.6-1+pf1~trixie.dsc", "sha256": dsc_sha256}
        outputs = {"source postfix 3.11.6 trixie": {"dsc": dsc["path"], "files": [dsc]}}
        return build_manifest(request(), outputs, {})

    path = tmp_path / "postfix-3.11.6.json"
    result = {"verdict": "reproducible", "dsc_sha256": "a" * 64}
    write_manifest(path, {**release_of("a" * 64), "reproducible": {"trixie": result}})
    write_manifest(path, release_of("a" * 64))  # the same source again: the result still holds
    assert json.loads(path.read_text())["reproducible"] == {"trixie": result}
    write_manifest(path, release_of("b" * 64))  # another source: the result is about old builds
    assert "reproducible" not in json.loads(path.read_text())


def test_recipe_digest_is_the_same_in_every_process() -> None:
    code = (
        "from builder.pipeline.release import recipe_digest\n"
        "from builder.model.loader import load_recipe\n"
        "print(recipe_digest(load_recipe('postfix')))"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


def test_manifest_names_the_published_attestations(tmp_path: Path) -> None:
    entry = {"path": str(tmp_path / "provenance.dsse.json"), "sha256": "a" * 64}
    sbom = {"path": str(tmp_path / "sbom-trixie.cdx.json"), "sha256": "b" * 64}
    statement = {"path": str(tmp_path / "image-debian.dsse.json"), "sha256": "c" * 64}
    signature = {"path": str(tmp_path / "image-debian.cosign.sig"), "sha256": "d" * 64}
    cosign_key = {"path": str(tmp_path / "cosign.pub"), "sha256": "e" * 64}
    outputs = {"attest": {"folder": str(tmp_path), "provenance": entry, "sboms": [sbom],
                          "image_statements": [statement], "image_signatures": [signature],
                          "cosign_key": cosign_key, "key": "F" * 40}}  # fmt: skip
    manifest = build_manifest(request(), outputs, {"attest": "k"})
    assert manifest["attestations"] == {
        "folder": str(tmp_path), "provenance": entry, "sboms": [sbom],
        "image_statements": [statement], "image_signatures": [signature], "cosign_key": cosign_key,
    }  # fmt: skip
    for listed in (entry, sbom, statement, signature, cosign_key):
        assert listed in manifest["artifacts"]
    assert "attestations" not in build_manifest(request(), {}, {})
