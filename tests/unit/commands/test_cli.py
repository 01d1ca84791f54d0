"""The CLI's contract: commands listed, one-line errors, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builder import cli
from builder.commands.exits import Exit
from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("doctor", "bootstrap"):
        assert name in out


def test_unknown_target_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--workspace", str(tmp_path / "ws"), "bootstrap", "--target", "bogus"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown target 'bogus'" in err[0]
    assert "trixie" in err[0] and "resolute" in err[0]
    assert not (tmp_path / "ws" / "chroots").exists()


def test_unwritable_workspace_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = cli.main(["--workspace", str(blocker / "ws"), "doctor"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "is not writable" in err[0] and "--workspace" in err[0]


def test_bad_archive_override_is_a_usage_error(tmp_path: Path) -> None:
    assert cli.main(["--workspace", str(tmp_path), "--archive", "no-equals", "doctor"]) == 2


def test_archive_override_for_unknown_target_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--workspace", str(tmp_path), "--archive", "sid=file:///x", "doctor"])
    assert code == 3
    assert "unknown target 'sid'" in capsys.readouterr().err


def test_crash_is_exit_70_without_traceback_unless_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*_: object) -> list[object]:
        raise RuntimeError("kaputt")

    monkeypatch.setattr("builder.core.doctor.run_checks", boom)
    assert cli.main(["--workspace", str(tmp_path), "doctor"]) == 70
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaputt" in err
    assert "Traceback" not in err
    assert cli.main(["--workspace", str(tmp_path), "--debug", "doctor"]) == 70
    assert "Traceback" in capsys.readouterr().err


def test_readme_and_help_carry_the_one_exit_table(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.M))
    assert {int(code) for code in rows} == {int(code) for code in Exit}
    assert cli.main(["--help"]) == 0
    shown = capsys.readouterr().out
    for code in Exit:
        assert re.search(rf"^  {int(code)}\s+\S", shown, re.M), code


def test_negative_jobs_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--workspace", str(tmp_path), "release", "3.11.6", "--jobs", "-1"])
    assert code == 2
    assert "must not be negative" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
