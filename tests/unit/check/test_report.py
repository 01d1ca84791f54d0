"""The report: hardening-check's blind spots, lintian tags, the table, the verdict, the command."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from builder import cli
from builder.check import stage
from builder.check.blhc import parse_blhc
from builder.check.hardening import _log_failures, deb_extract_cmdline
from builder.check.judge import NA, NO, UNAVAILABLE, YES, Finding, validate_expected
from builder.check.report import (
    BuildLogSummary,
    ElfReport,
    HardeningReport,
    format_table,
    require_passed,
    write_report,
)
from builder.check.targets import toolchain_notes
from builder.check.tools import (
    LintianResult,
    LintianTag,
    explain_hardening_check,
    hardening_check_cmdline,
    lintian_cmdline,
    parse_hardening_check,
    parse_lintian,
)
from builder.commands import check
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TRIXIE

pytestmark = pytest.mark.unit

HARDENING_CHECK_OUTPUT = """\
/tmp/x/0/usr/bin/tiny:
 Position Independent Executable: yes
 Stack protected: no, not found!
 Fortify Source functions: unknown, no protectable libc functions used
 Read-only relocations: yes
 Immediate binding: yes
 Stack clash protection: unknown, no -fstack-clash-protection instructions found
 Control flow integrity: no, not found!
/tmp/x/0/usr/lib/libgreet.so.1:
 Position Independent Executable: no, regular shared library (ignored)
 Immediate binding: no, not found!
"""


def _findings(**overrides: str) -> dict[str, Finding]:
    statuses = {
        "pie": YES, "relro": YES, "bindnow": YES, "nxstack": YES,
        "stackprotector": YES, "fortify3": YES, "stackclash": YES, "cet": UNAVAILABLE,
    }  # fmt: skip
    statuses.update(overrides)
    return {p: Finding(s, f"{p} evidence") for p, s in statuses.items()}


def _report(failures: tuple[str, ...] = (), offending: tuple[str, ...] = ()) -> HardeningReport:
    row = ElfReport(
        "hello_1.0_amd64.deb", "/usr/bin/hello", "executable",
        _findings(bindnow=NO if failures else YES), "1 compile line(s) linked into hello", 7,
        {"stackclash": "unknown"}, ("stackclash: hardening-check reports 'unknown'",),
    )  # fmt: skip
    return HardeningReport(
        target="trixie",
        arch="amd64",
        expected=("pie", "bindnow", "fortify3"),
        verdict="fail" if failures else "pass",
        failures=failures,
        offending_files=offending,
        toolchain_notes=toolchain_notes(TRIXIE),
        debs=("hello_1.0_amd64.deb", "hello-dbgsym_1.0_amd64.deb"),
        skipped=("hello-dbgsym_1.0_amd64.deb: 1 separated debug file(s), no code to check",),
        elves=(row,),
        build_log=BuildLogSummary("/w/build.log", 3, 3, {"3": 3}, parse_blhc(["blhc"], 0, "")),
        lintian=LintianResult(
            ("lintian",), True, "not a gate", (LintianTag("E", "hello", "no-copyright-file", ""),)
        ),
    )


def test_parse_hardening_check() -> None:
    views = parse_hardening_check(HARDENING_CHECK_OUTPUT)
    assert sorted(views) == ["/tmp/x/0/usr/bin/tiny", "/tmp/x/0/usr/lib/libgreet.so.1"]
    tiny = views["/tmp/x/0/usr/bin/tiny"]
    assert tiny["stackprotector"] == "no, not found!"
    assert tiny["stackclash"].startswith("unknown")
    assert len(tiny) == 7
    assert views["/tmp/x/0/usr/lib/libgreet.so.1"]["bindnow"] == "no, not found!"


def test_hardening_check_false_positives_are_explained() -> None:
    view = parse_hardening_check(HARDENING_CHECK_OUTPUT)["/tmp/x/0/usr/bin/tiny"]
    notes = explain_hardening_check(view, _findings())
    text = "\n".join(notes)
    assert "stackclash: hardening-check reports 'unknown' for every binary" in text
    assert "known false positive" in text  # fortify on a file with nothing to fortify
    assert "needed no canary" in text
    assert "toolchain note" in text  # CET on trixie
    assert len(notes) == 4


def test_hardening_check_real_disagreement_is_shown() -> None:
    view = {"bindnow": "no, not found!", "pie": "no, regular shared library (ignored)"}
    notes = explain_hardening_check(view, _findings(pie=NA))
    assert notes == ("bindnow: hardening-check says 'no, not found!', pfbuild says yes",)


def test_lintian() -> None:
    assert lintian_cmdline(Path("/b/x.changes"), "ubuntu") == [
        "lintian", "--profile", "ubuntu", "--fail-on", "none", "/b/x.changes",
    ]  # fmt: skip
    tags = parse_lintian(
        "E: hello: no-copyright-file\n"
        "W: hello source: out-of-date-standards-version 4.6.2 (released 2022-11-30)\n"
        "N: a note\n"
        "I: hello: hardening-no-fortify-functions [usr/bin/tiny]\n"
    )
    assert [(t.severity, t.package, t.tag) for t in tags] == [
        ("E", "hello", "no-copyright-file"),
        ("W", "hello source", "out-of-date-standards-version"),
        ("I", "hello", "hardening-no-fortify-functions"),
    ]
    assert tags[2].context == "[usr/bin/tiny]"


def test_deb_extract_cmdline() -> None:
    assert deb_extract_cmdline(Path("/b/p.deb"), Path("/t/0")) == [
        "dpkg-deb", "-x", "/b/p.deb", "/t/0",
    ]  # fmt: skip


def test_hardening_check_cmdline() -> None:
    assert hardening_check_cmdline([Path("/a"), Path("/b")]) == ["hardening-check", "/a", "/b"]


def test_validate_expected() -> None:
    validate_expected(frozenset({"pie", "cet"}))
    with pytest.raises(PfbuildError, match="unknown hardening property: fortify2"):
        validate_expected(frozenset({"pie", "fortify2"}))


def test_toolchain_notes_say_why_per_target() -> None:
    (trixie,) = toolchain_notes(TRIXIE)
    assert "cet unavailable" in trixie and "crt1.o" in trixie and "endbr64" in trixie
    (resolute,) = toolchain_notes(RESOLUTE)
    assert "IBT and SHSTK" in resolute and "failure" in resolute


def test_blhc_failures_only_for_expected_properties() -> None:
    blhc = parse_blhc(
        ["blhc"], 8,
        "LDFLAGS missing (-Wl,-z,now): gcc -o a a.o\n"
        "LDFLAGS missing (-Wl,-z,now): gcc -o b b.o\n"
        "CFLAGS missing (-fstack-clash-protection): gcc -c a.c\n"
        "NONVERBOSE BUILD: Compiling c.c\n",
    )  # fmt: skip
    summary = BuildLogSummary("/w/build.log", 2, 2, {}, blhc)
    assert _log_failures(summary, frozenset({"bindnow"})) == [
        "build log: blhc finds -Wl,-z,now missing on 2 command line(s)"
    ]
    both = _log_failures(summary, frozenset({"stackclash", "relro"}))
    assert both[0] == "build log: blhc finds -fstack-clash-protection missing on 1 command line(s)"
    assert "hidden (non-verbose build)" in both[1]
    assert _log_failures(BuildLogSummary(None, 0, 0, {}, None), frozenset({"bindnow"})) == []


def test_format_table() -> None:
    text = format_table(_report(("/usr/bin/hello (hello_1.0_amd64.deb): bindnow missing: x",)))
    assert text.startswith("Hardening report for trixie (amd64): FAIL\n")
    header = next(line for line in text.splitlines() if line.startswith("file"))
    assert header.split()[1:] == [
        "PIE", "RELRO", "BINDNOW", "NX", "SSP", "FORTIFY3", "CLASH", "CET",
    ]  # fmt: skip
    row = next(line for line in text.splitlines() if line.startswith("/usr/bin/hello"))
    assert row.split()[1:] == ["yes", "yes", "NO!", "yes", "yes", "yes", "yes", "unavail"]
    assert "cet unavailable" in text
    assert "FAILURES:" in text and "bindnow missing" in text
    assert "  E: no-copyright-file (1x: hello)" in text.splitlines()
    assert "endbr64 instructions per file without CET markers: min 7, max 7" in text
    assert "separated debug file" in text
    assert "  stackclash: hardening-check reports 'unknown' [/usr/bin/hello]" in text.splitlines()


def test_write_report_and_verdict(tmp_path: Path) -> None:
    report = _report(
        ("/usr/bin/hello (hello_1.0_amd64.deb): bindnow missing",), ("/usr/bin/hello",)
    )
    write_report(report, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "hardening.json").read_text())
    assert data["verdict"] == "fail"
    assert data["elves"][0]["findings"]["bindnow"] == {"status": "no", "detail": "bindnow evidence"}
    assert (tmp_path / "r" / "hardening.txt").read_text() == format_table(report)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["hardening.json", "hardening.txt"]
    with pytest.raises(PfbuildError) as info:
        require_passed(report, tmp_path / "r")
    line = info.value.one_line()
    assert "/usr/bin/hello" in line and str(tmp_path / "r" / "hardening.txt") in line
    assert "\n" not in line
    require_passed(_report(), tmp_path / "r")


def test_parse_expect() -> None:
    assert check.parse_expect("pie, relro,,") == frozenset({"pie", "relro"})
    assert check.parse_expect("") == frozenset()


def test_recipe_expectations(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = types.SimpleNamespace(expected_hardening={"trixie": {"amd64": {"pie", "relro"}}})
    monkeypatch.setattr(stage, "load_recipe", lambda name: recipe)
    assert stage.recipe_expectations("postfix", TRIXIE) == frozenset({"pie", "relro"})
    with pytest.raises(PfbuildError, match="no expected hardening for resolute/amd64"):
        stage.recipe_expectations("postfix", RESOLUTE)


def test_postfix_recipe_expectations_per_target() -> None:
    trixie = stage.recipe_expectations("postfix", TRIXIE)
    resolute = stage.recipe_expectations("postfix", RESOLUTE)
    # trixie cannot carry CET markers (toolchain), resolute must.
    assert "cet" not in trixie and "cet" in resolute
    assert {"fortify3", "bindnow", "stackclash"} <= trixie
    validate_expected(resolute)


def test_cli_check_without_build(ctx: Context, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["--workspace", str(ctx.workspace), "check", "postfix", "3.11.6", "--target", "trixie",
         "--expect", "pie"]
    )  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    assert "no .deb files in" in err and "run `pfbuild build`" in err
    assert len(err.strip().splitlines()) == 1
    assert not ctx.report_dir("postfix", "3.11.6", "trixie").exists()


def test_cli_check_rejects_unknown_property(
    ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        ["--workspace", str(ctx.workspace), "check", "postfix", "3.11.6", "--expect", "pie,nx"]
    )
    assert code == 3
    assert "unknown hardening property: nx" in capsys.readouterr().err
