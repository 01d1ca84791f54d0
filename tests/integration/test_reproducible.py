"""verify-reproducible with real sbuild and diffoscope, through the CLI, in the shared workspace.

A tiny package that installs its build's clock must be caught, with diffoscope naming the
file; mimalloc-secure is reproducible under every variation. Both read back from build B's log
that each variation really took effect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.cli import main
from builder.core.context import Context
from tests.fixtures.packages import make_source_package, unreproducible_rules
from tests.fixtures.reproducible import ALL_VARIATIONS as VARIATIONS

pytestmark = pytest.mark.integration


def _report(ctx: Context, recipe: str, version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (ctx.report_dir(recipe, version, "trixie") / "reproducible.json").read_text()
    )
    return data


def _applied(report: dict[str, Any]) -> set[str]:
    return {v["name"] for v in report["variations"] if v["applied"]}


def test_a_package_that_installs_its_build_time_is_caught(
    shared_ctx: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = "7.1"
    dsc = make_source_package(
        tmp_path, version=version, distribution="trixie", rules_extra=unreproducible_rules()
    )
    code = main(["--workspace", str(shared_ctx.workspace), "verify-reproducible", "pfbuild-hello",
                 version, "--target", "trixie", "--dsc", str(dsc)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 11, out
    report = _report(shared_ctx, "pfbuild-hello", version)
    assert report["verdict"] == "unreproducible"
    assert _applied(report) == VARIATIONS, report["variations"]
    debs = {d["name"]: d for d in report["debs"]}
    stamped = debs[f"pfbuild-hello_{version}_amd64.deb"]
    assert stamped["verdict"] == "different" and stamped["a_sha256"] != stamped["b_sha256"]
    text = Path(stamped["diffoscope"]["text"]).read_text()
    assert "./usr/share/pfbuild-hello/build-stamp" in text
    assert "./usr/share/pfbuild-hello/build-stamp" in stamped["diffoscope"]["members"]
    assert Path(stamped["diffoscope"]["html"]).stat().st_size > 0
    # The compiled program and its debug symbols survive every variation unchanged.
    assert debs[f"pfbuild-hello-dbgsym_{version}_amd64.deb"]["verdict"] == "identical"
    assert f"different   pfbuild-hello_{version}_amd64.deb  diffoscope: " in out
    assert "trixie    unreproducible: 1 of 2 .debs identical under 8 variations" in out


def test_mimalloc_secure_is_reproducible_on_trixie(
    shared_ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(shared_ctx.workspace), "verify-reproducible",
                 "mimalloc-secure", "2.0.9", "--target", "trixie"])  # fmt: skip
    out = capsys.readouterr().out
    report = _report(shared_ctx, "mimalloc-secure", "2.0.9")
    assert code == 0, out
    assert report["verdict"] == "reproducible"
    assert _applied(report) == VARIATIONS, report["variations"]
    assert len(report["debs"]) == 2
    for deb in report["debs"]:
        assert deb["verdict"] == "identical" and deb["a_sha256"] == deb["b_sha256"], deb
    assert report["build_a"]["dir"] == str(
        shared_ctx.build_dir("mimalloc-secure", "2.0.9", "trixie")
    )
    assert report["build_a"]["build_path"] != report["build_b"]["build_path"]
    assert "trixie    reproducible: 2 of 2 .debs identical under 8 variations" in out
