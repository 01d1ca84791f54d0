"""`pfbuild lint-config DIR [--json]` through the real CLI: exit codes 0, 3 and 2, the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder import cli
from builder.check.config.lint import REPORT_SCHEMA
from builder.check.config.rules import RULES
from builder.core.errors import PfbuildError
from builder.core.schema import validate

pytestmark = pytest.mark.unit

CONFIGS = Path(__file__).resolve().parents[2] / "data" / "postfix-configs"
POSTCONF_D = CONFIGS / "postconf-d-3.11.txt"


def lint_config(tmp_path: Path, *args: str) -> int:
    return cli.main(["--workspace", str(tmp_path / "ws"), "lint-config", *args])


def test_clean_configuration_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = CONFIGS / "clean-3.11"
    assert lint_config(tmp_path, str(directory), "--postconf-d", str(POSTCONF_D)) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{directory}: no findings\n"
    assert captured.err == ""


def test_errors_exit_3_with_one_final_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = CONFIGS / "open-relay"
    assert lint_config(tmp_path, str(directory)) == 3
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("error open-relay-mynetworks mynetworks (main.cf:4): ")
    assert "; fix: postconf -e 'mynetworks = 127.0.0.0/8 /etc/postfix/trusted_networks'" in lines[0]
    assert lines[1].startswith("error open-relay-restrictions smtpd_recipient_restrictions ")
    assert lines[-1] == f"{directory}: 2 error(s), 0 warning(s), 0 info"
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"pfbuild: error: 2 error(s) in {directory}: ")
    assert "open-relay-mynetworks mynetworks (main.cf:4)" in err[0]


def test_warnings_alone_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "warn"
    directory.mkdir()
    (directory / "main.cf").write_text("compatibility_level = 3.6\n")
    assert lint_config(tmp_path, str(directory)) == 0
    out = capsys.readouterr().out
    assert out.startswith("warning compatibility-level compatibility_level (main.cf:1): ")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["/nonexistent/postfix"],
        [str(CONFIGS / "clean-3.11"), "--postconf-d", "/nonexistent/postconf-d.txt"],
        [str(CONFIGS / "clean-3.11"), "--bogus"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    assert lint_config(tmp_path, *args) == 2


def test_a_directory_without_main_cf_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lint_config(tmp_path, str(tmp_path)) == 3
    assert "no main.cf in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "code"),
    [("clean-3.11", 0), ("old-3.6", 3), ("open-relay", 3), ("master-overrides", 3)],
)
def test_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, code: int
) -> None:
    directory = CONFIGS / name
    args = [str(directory), "--json", "--postconf-d", str(POSTCONF_D)]
    assert lint_config(tmp_path, *args) == code
    document = json.loads(capsys.readouterr().out)
    validate(document, REPORT_SCHEMA, "lint-config report", "fix the report writer")
    assert document["directory"] == str(directory)
    assert document["postconf_d"] is True
    counts = document["counts"]
    assert sum(counts.values()) == len(document["findings"])
    assert (counts["error"] > 0) == (code == 3)
    for item in document["findings"]:
        assert RULES[item["rule"]].reference in item["reference"]
    if name == "old-3.6":
        assert {f["rule"] for f in document["findings"]} == set(RULES)
        first = document["findings"][0]
        assert first == {
            "rule": "config-syntax",
            "severity": "error",
            "parameter": "",
            "where": "main.cf:4",
            "message": "expected `name = value`, got 'smtpd_banner $myhostname ESMTP'",
            "fix": "edit main.cf line 4: write `name = value` (master.cf: 8 fields, then "
            "`-o name=value`)",
            "reference": RULES["config-syntax"].reference,
        }


def test_the_schema_refuses_a_malformed_report() -> None:
    bad = {"directory": "x", "postconf_d": False, "counts": {"error": 0}, "findings": []}
    with pytest.raises(PfbuildError, match="lint-config report is malformed"):
        validate(bad, REPORT_SCHEMA, "lint-config report", "fix the report writer")


def test_help_lists_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "lint-config" in capsys.readouterr().out
