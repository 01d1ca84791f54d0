"""`pfbuild check`: Debian's QA after the hardening check, its lines and its failures (faked)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from builder import cli
from builder.check.autopkgtest import AutopkgtestReport
from builder.core.context import Context

pytestmark = pytest.mark.unit

DEVIATION = "postfix/test_10_commands: deviation, as declared: VRFY is off"


def _fake_stages(monkeypatch: pytest.MonkeyPatch, tests: AutopkgtestReport) -> list[str]:
    ran: list[str] = []

    def hardening(ctx: Context, recipe: str, version: str, dist: Any, expected: Any) -> Any:
        ran.append(f"hardening {dist.name}")
        return SimpleNamespace(verdict="pass"), ctx.report_dir(recipe, version, dist.name)

    def autopkgtest(ctx: Context, recipe: str, version: str, dist: Any) -> Any:
        ran.append(f"autopkgtest {dist.name}")
        return tests, ctx.report_dir(recipe, version, dist.name)

    def nothing(ctx: Context, recipe: str, version: str, dist: Any) -> None:
        ran.append(f"postfix qa {dist.name}")

    module = "builder.commands.check"
    monkeypatch.setattr(f"{module}.check_target", hardening)
    monkeypatch.setattr(f"{module}.format_table", lambda report: "hardening: PASS")
    monkeypatch.setattr(f"{module}.autopkgtest_target", autopkgtest)
    monkeypatch.setattr(f"{module}.config_gate_target", nothing)
    monkeypatch.setattr(f"{module}.lifecycle_target", nothing)
    return ran


def _check(tmp_path: Path, *extra: str) -> int:
    args = ["--workspace", str(tmp_path), "check", "postfix", "3.11.6", "--target", "trixie"]
    return cli.main([*args, *extra])


def test_the_declared_deviation_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = AutopkgtestReport("trixie", "pass", "5.49", deviations=(DEVIATION,))
    ran = _fake_stages(monkeypatch, tests)
    assert _check(tmp_path) == 0
    out = capsys.readouterr().out
    assert "autopkgtest (5.49) for trixie: PASS" in out
    assert f"  {DEVIATION}\n" in out
    assert ran == [
        "hardening trixie",
        "autopkgtest trixie",
        "postfix qa trixie",
        "postfix qa trixie",
    ]


def test_a_failed_autopkgtest_is_exit_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = AutopkgtestReport("trixie", "fail", "5.49", problems=("postfix/test_x: error: 504",))
    _fake_stages(monkeypatch, tests)
    assert _check(tmp_path) == 3
    errors = [e for e in capsys.readouterr().err.splitlines() if e.startswith("pfbuild: error:")]
    assert len(errors) == 1
    assert "Debian's autopkgtests failed for trixie" in errors[0]
    assert "postfix/test_x: error: 504" in errors[0]


def test_no_autopkgtest_runs_the_hardening_check_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report_dir = tmp_path / "reports" / "postfix" / "3.11.6" / "trixie"
    report_dir.mkdir(parents=True)
    (report_dir / "autopkgtest.json").write_text("{}")  # an earlier run's, for other packages
    ran = _fake_stages(monkeypatch, AutopkgtestReport("trixie", "fail"))
    assert _check(tmp_path, "--no-autopkgtest") == 0
    assert ran == ["hardening trixie"]
    assert not (report_dir / "autopkgtest.json").exists()
