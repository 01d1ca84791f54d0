"""A site recipe is code the user runs: named on stderr, recorded with its hash, one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builder import cli
from builder.core.errors import PfbuildError
from builder.fetch.archive import VerifiedFile
from builder.fetch.cache import FetchResult, trust_anchor, write_provenance
from builder.model.loader import load_recipe, recipe_origin

pytestmark = pytest.mark.unit

SHADOW = (
    "import dataclasses\n"
    "from recipes.mimalloc_secure import RECIPE as BUILTIN\n"
    "RECIPE = dataclasses.replace(BUILTIN, rebuild=7)\n"
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.setenv("PFBUILD_RECIPES", str(folder))
    return folder


def test_a_shadowing_site_recipe_is_named_on_stderr(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (site / "mimalloc_secure.py").write_text(SHADOW)
    origin = recipe_origin("mimalloc-secure")
    assert origin.site and origin.shadows
    assert origin.sha256 == hashlib.sha256(SHADOW.encode()).hexdigest()
    code = cli.main(["--workspace", str(tmp_path / "ws"), "source", "mimalloc-secure", "2.x"])
    err = capsys.readouterr().err
    assert code == 3
    assert "shadows the built-in recipe" in err and str(site / "mimalloc_secure.py") in err


def test_the_builtin_recipe_is_not_announced(capsys: pytest.CaptureFixture[str]) -> None:
    origin = recipe_origin("postfix")
    assert not origin.site and not origin.shadows
    load_recipe("postfix")
    assert "recipe" not in capsys.readouterr().err


def test_a_site_recipe_that_fails_to_import_is_one_line_naming_its_file(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (site / "broken.py").write_text("raise RuntimeError('half-written recipe')\n")
    code = cli.main(["--workspace", str(tmp_path / "ws"), "fetch", "broken", "1.0.0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert err[-1].startswith("pfbuild: error: site recipe ")
    assert str(site / "broken.py") in err[-1] and "half-written recipe" in err[-1]
    assert not any("internal error" in line for line in err)


def test_sources_json_records_which_recipe_file_was_used(site: Path, tmp_path: Path) -> None:
    (site / "mimalloc_secure.py").write_text(SHADOW)
    with pytest.raises(PfbuildError):
        recipe_origin("no-such-recipe")
    record = tmp_path / "sources.json"
    recipe = load_recipe("mimalloc-secure")
    anchor = trust_anchor(recipe, "2.0.9")
    dsc = tmp_path / "mimalloc_2.0.9+ds-2.dsc"
    dsc.write_text("Format: 3.0 (quilt)\n")
    sha = hashlib.sha256(dsc.read_bytes()).hexdigest()
    files = (VerifiedFile(dsc.name, dsc, sha, f"file://{dsc}", "test", "dsc"),)
    write_provenance(record, FetchResult("mimalloc-secure", "2.0.9", files, anchor=anchor))
    data = json.loads(record.read_text())
    assert data["recipe_file"]["path"] == str(site / "mimalloc_secure.py")
    assert data["recipe_file"]["shadows_builtin"] is True
    assert data["recipe_file"]["sha256"] == hashlib.sha256(SHADOW.encode()).hexdigest()
    assert data["anchor"] == anchor
