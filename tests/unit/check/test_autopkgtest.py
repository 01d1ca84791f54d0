"""Judging Debian's autopkgtest output: real output of a run, declarations that fit and do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.check.autopkgtest import (
    AutopkgtestReport,
    autopkgtest_cmdline,
    case_names,
    fatal_lines,
    judge_output,
    packages_for_tests,
    parse_summary,
    parse_unittest,
    require_autopkgtest_passed,
)
from builder.core.errors import PfbuildError
from builder.model.loader import load_recipe
from builder.model.recipe import Deviation

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[2] / "data" / "autopkgtest" / "postfix-3.11.6-trixie-old-defaults"
VRFY = load_recipe("postfix").autopkgtest_deviations
FAILING_SENDS = {
    "test_10_sending_mail_direct",
    "test_10_sending_mail_direct_auth_full",
    "test_10_sending_mail_direct_with_tls",
    "test_10_sending_mail_forward_normal",
    "test_11_security_CVE_2008_2936",
    "test_20_sasldb_cram_md5",
    "test_20_sasldb_plain",
}
# The 15 cases of test-postfix.py, as its source names them.
NAMES = sorted(
    FAILING_SENDS
    | {
        "test_00_listening", "test_10_commands", "test_10_sending_mail_direct_auth",
        "test_10_sending_mail_forward_xternal", "test_20_sasldb_digest_md5",
        "test_20_sasldb_login", "test_21_security_CVE_2011_1720", "test_99_restore",
    }
)  # fmt: skip


def _vrfy_block() -> str:
    """The real report of the VRFY case, from its rule line to the end of its traceback."""
    text = (DATA / "postfix-stdout").read_text()
    start = text.index("FAIL: test_10_commands")
    end = text.index("\n" + "-" * 70 + "\nRan ", start)
    return "=" * 70 + "\n" + text[start:end] + "\n"


def _passing_output(tmp_path: Path, *, keep_vrfy: bool) -> Path:
    """The same run as if the sender restrictions let local clients through (14 of 15 pass)."""
    out = tmp_path / "out"
    out.mkdir()
    ran = "-" * 70 + "\nRan 15 tests in 40.493s\n\n"
    if keep_vrfy:
        (out / "summary").write_text("postfix              FAIL non-zero exit status 1\n")
        (out / "postfix-stdout").write_text(_vrfy_block() + ran + "FAILED (failures=1)\n")
    else:
        (out / "summary").write_text("postfix              PASS\n")
        (out / "postfix-stdout").write_text(ran + "OK\n")
    return out


def test_the_summary_names_each_test_and_its_result() -> None:
    text = (
        "postfix              FAIL non-zero exit status 1\nsmoke PASS\nslow SKIP needs-internet\n"
    )
    assert [(t.name, t.outcome, t.detail) for t in parse_summary(text)] == [
        ("postfix", "fail", "non-zero exit status 1"),
        ("smoke", "pass", ""),
        ("slow", "skip", "needs-internet"),
    ]


def test_the_real_unittest_report_gives_each_failing_case_and_its_reason() -> None:
    ran, failing = parse_unittest("postfix", (DATA / "postfix-stdout").read_text())
    assert ran == 15
    by_name = {c.name: c for c in failing}
    assert set(by_name) == {f"postfix/{n}" for n in FAILING_SENDS | {"test_10_commands"}}
    vrfy = by_name["postfix/test_10_commands"]
    assert vrfy.outcome == "fail"
    assert vrfy.detail == "AssertionError: 502 != 252 : 502 b'5.5.1 VRFY command is disabled'"
    direct = by_name["postfix/test_10_sending_mail_direct"]
    assert direct.outcome == "error"
    assert "504, b'5.5.2 <root>: Sender address rejected" in direct.detail


def test_old_defaults_fail_although_vrfy_is_declared() -> None:
    report = judge_output("trixie", DATA, NAMES, VRFY)
    assert report.verdict == "fail"
    assert len(report.problems) == 7
    assert all("need fully-qualified address" in p for p in report.problems)
    # The declaration still matched the case it names: it is shown, it hides nothing else.
    assert report.deviations == (
        "postfix/test_10_commands: deviation, as declared: "
        "our main.cf sets disable_vrfy_command = yes (no address harvesting by VRFY)",
    )
    with pytest.raises(PfbuildError) as info:
        require_autopkgtest_passed(report, Path("/r"))
    assert "7 problem(s)" in info.value.why


def test_only_the_declared_failure_passes_and_names_every_case(tmp_path: Path) -> None:
    report = judge_output("trixie", _passing_output(tmp_path, keep_vrfy=True), NAMES, VRFY)
    assert report.problems == ()
    assert report.verdict == "pass"
    outcomes = {c.name: c.outcome for c in report.cases}
    assert outcomes.pop("postfix/test_10_commands") == "deviation"
    assert len(outcomes) == 14 and set(outcomes.values()) == {"pass"}
    require_autopkgtest_passed(report, tmp_path)
    assert json.loads(report.to_json())["deviations"] == list(report.deviations)


def test_an_undeclared_failure_fails(tmp_path: Path) -> None:
    report = judge_output("trixie", _passing_output(tmp_path, keep_vrfy=True), NAMES, ())
    assert report.verdict == "fail"
    assert report.problems == (
        "postfix/test_10_commands: fail: "
        "AssertionError: 502 != 252 : 502 b'5.5.1 VRFY command is disabled'",
    )


def test_a_declaration_that_no_longer_fails_is_reported(tmp_path: Path) -> None:
    report = judge_output("trixie", _passing_output(tmp_path, keep_vrfy=False), NAMES, VRFY)
    assert report.verdict == "fail"
    (problem,) = report.problems
    assert problem.startswith("declared deviation postfix/test_10_commands did not fail")


@pytest.mark.parametrize(
    ("deviation", "why"),
    [
        (Deviation("postfix/test_10_commands", "error", ".*", "wrong kind"), "not as declared"),
        (Deviation("postfix/test_10_commands", "fail", "^551 ", "other text"), "not as declared"),
        (Deviation("other/test_x", "fail", ".*", "no such test"), "no such test ran"),
    ],
)
def test_a_declaration_must_match_exactly(tmp_path: Path, deviation: Deviation, why: str) -> None:
    report = judge_output("trixie", _passing_output(tmp_path, keep_vrfy=True), NAMES, (deviation,))
    assert report.verdict == "fail"
    assert any(why in p for p in report.problems), report.problems


def test_a_fatal_step_around_the_unittests_is_not_hidden_by_a_declaration(tmp_path: Path) -> None:
    out = _passing_output(tmp_path, keep_vrfy=True)
    stdout = out / "postfix-stdout"
    stdout.write_text("postfix/postfix-script: fatal: the Postfix mail system is not running\n"
                      + stdout.read_text())  # fmt: skip
    report = judge_output("trixie", out, NAMES, VRFY)
    assert report.verdict == "fail"
    assert "fatal: the Postfix mail system is not running" in report.problems[-1]


def test_mail_log_lines_are_not_steps_of_the_script() -> None:
    log = "Dec 01 08:17:06 localhost postfix/smtpd[4137]: fatal: no\npostmap: fatal: yes\n"
    assert fatal_lines(log) == ["postmap: fatal: yes"]


def test_a_failure_without_a_unittest_report_fails(tmp_path: Path) -> None:
    (tmp_path / "summary").write_text("smoke FAIL stderr: boom\n")
    report = judge_output("trixie", tmp_path, [], ())
    assert report.verdict == "fail"
    assert report.problems == ("smoke: stderr: boom",)


def test_no_test_at_all_is_not_a_pass(tmp_path: Path) -> None:
    report = judge_output("trixie", tmp_path, [], ())
    assert report.verdict == "fail"


def test_the_packages_the_tests_need_come_from_their_control_file(tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.write_text(
        "Tests: postfix\nDepends: libsasl2-modules,\n lsb-release (>= 1),\n procmail | mda,\n"
        " python3:any, @, @builddeps@\nRestrictions: needs-root\n\n"
        "Tests: other\nDepends: @, procmail, ssl-cert\n"
    )
    assert packages_for_tests(control) == [
        "libsasl2-modules", "lsb-release", "procmail", "python3", "ssl-cert",
    ]  # fmt: skip


def test_case_names_come_from_the_test_files(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(
        "class T:\n    def test_b(self):\n        pass\n    def test_a(self):\n"
        "        pass\n    def _helper(self):\n        pass\n"
    )
    assert case_names(tmp_path) == ["test_b", "test_a"]


def test_the_command_runs_the_built_packages_without_building() -> None:
    line = autopkgtest_cmdline(["/pfbuild/debs/postfix_1_amd64.deb"])
    assert line.startswith(
        "autopkgtest --output-dir /pfbuild/out --no-built-binaries"
        " /pfbuild/debs/postfix_1_amd64.deb /pfbuild/src/ -- null"
    )
    assert line.endswith('echo "autopkgtest-exit: $?"')


def test_report_lines_show_deviations_and_problems() -> None:
    report = AutopkgtestReport(
        "trixie", "fail", "5.49", deviations=("a/b: deviation, as declared: x",), problems=("c",)
    )
    assert report.lines() == [
        "autopkgtest (5.49) for trixie: FAIL",
        "  a/b: deviation, as declared: x",
        "  PROBLEM: c",
    ]
