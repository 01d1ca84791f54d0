"""What the attest action reads from the actions before it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from builder.cli import build_parser
from builder.commands.release import request_from_args
from builder.core.context import Context
from builder.model.distro import RESOLUTE, TRIXIE
from builder.model.loader import load_recipe
from builder.pipeline import attest
from builder.pipeline.attest import target_packages
from builder.pipeline.release import release_actions
from builder.pipeline.request import ReleaseRequest
from builder.publish.attestations import ImageFacts
from tests.fixtures.cosign import FAKE_SIGNATURE, FakeCosign

pytestmark = pytest.mark.unit


def test_each_target_gets_the_debs_of_every_recipe_built_for_it(tmp_path: Path) -> None:
    request = ReleaseRequest("postfix", "3.11.6", (TRIXIE, RESOLUTE), ("debian", "ubuntu"))
    recipes = [(load_recipe("postfix"), "3.11.6"), (load_recipe("mimalloc-secure"), "2.0.9")]
    deps = {}
    for recipe, version in recipes:
        for target in ("trixie", "resolute"):
            files = [
                {"path": str(tmp_path / f"{recipe.name}_{target}_amd64.deb"), "sha256": "a" * 64},
                {"path": str(tmp_path / f"{recipe.name}_{target}.buildinfo"), "sha256": "b" * 64},
            ]
            deps[f"build {recipe.name} {version} {target}"] = {"dir": str(tmp_path), "files": files}
    found = {t.suite: t for t in target_packages(request, recipes, json.loads(json.dumps(deps)))}
    assert sorted(found) == ["resolute", "trixie"]
    assert [d.name for d in found["trixie"].debs] == [
        "mimalloc-secure_trixie_amd64.deb",
        "postfix_trixie_amd64.deb",
    ]
    assert (found["resolute"].vendor, found["resolute"].arch) == ("ubuntu", "amd64")


def test_each_image_id_is_signed_with_cosign_and_checked_before_it_is_attested(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = FakeCosign()
    monkeypatch.setattr(attest, "cosign_for_signing", lambda _ctx: tool)
    images = [
        ImageFacts(v, "pfbuild-postfix", f"3.11.6-{v}", "sha256:" + c * 64, v, ())
        for v, c in (("debian", "a"), ("ubuntu", "b"))
    ]
    signed = attest.sign_images(ctx, images, None)
    assert signed.public_key == (ctx.cosign_dir / "cosign.pub").read_bytes()
    assert signed.signatures == {"debian": FAKE_SIGNATURE, "ubuntu": FAKE_SIGNATURE}
    verbs = [call[1] for call in tool.calls]
    assert verbs == ["generate-key-pair", "sign-blob", "verify-blob", "sign-blob", "verify-blob"]


def test_the_cosign_key_file_is_part_of_the_release_request_and_the_attest_key(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PFBUILD_COSIGN_KEY_FILE", str(tmp_path / "ci.key"))
    args = build_parser().parse_args(["release", "3.11.6", "--no-image"])
    assert request_from_args(ctx, args).cosign_key == tmp_path / "ci.key"
    request = ReleaseRequest("postfix", "3.11.6", (TRIXIE,), ("debian",), images=False)
    keyed = dataclasses.replace(request, cosign_key=tmp_path / "ci.key")
    inputs = [release_actions(ctx, r)[-1].inputs for r in (request, keyed)]
    assert inputs[0]["cosign_key"] == "" and inputs[1]["cosign_key"] == str(tmp_path / "ci.key")
