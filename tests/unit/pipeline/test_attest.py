"""What the attest action reads from the actions before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.model.distro import RESOLUTE, TRIXIE
from builder.model.loader import load_recipe
from builder.pipeline.attest import target_packages
from builder.pipeline.request import ReleaseRequest

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
