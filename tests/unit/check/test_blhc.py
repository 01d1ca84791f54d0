"""The build log's compile and link lines, and blhc's complaints, as pfbuild reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.check.blhc import blhc_cmdline, evidence_for, parse_blhc, scan_build_log
from tests.conftest import REPO

pytestmark = pytest.mark.unit

EXCERPT = REPO / "tests" / "fixtures" / "hardening" / "build-log-excerpt.txt"


@pytest.fixture(scope="module")
def scan_text() -> str:
    return EXCERPT.read_text()


def test_compile_lines_and_last_flag_wins(scan_text: str) -> None:
    scan = scan_build_log(scan_text)
    by_obj = {c.obj: c for c in scan.compiles}
    # -E (preprocess only) and `gcc -v` are no compile commands.
    assert sorted(by_obj) == ["debug", "greet", "hello", "legacy.c"]
    # dpkg's -D_FORTIFY_SOURCE=2 is overridden by the later -U/-D=3.
    assert by_obj["greet"].fortify == 3
    assert by_obj["hello"].stack_clash and by_obj["hello"].cf_protection == "full"
    assert by_obj["hello"].stack_protector == "strong"
    # A later -U_FORTIFY_SOURCE switches level 3 off; -fno- switches stack-clash off.
    assert by_obj["legacy.c"].fortify == 0
    assert not by_obj["legacy.c"].stack_clash
    # glibc ignores _FORTIFY_SOURCE at -O0.
    assert by_obj["debug"].fortify == 0
    assert by_obj["debug"].stack_protector == "basic"


def test_link_lines(scan_text: str) -> None:
    links = {link.output: link for link in scan_build_log(scan_text).links}
    assert sorted(links) == ["hello", "legacy", "libgreet.so.1"]
    assert links["hello"].objects == ("hello",)
    assert links["hello"].relro and links["hello"].now  # -Wl,-z,relro,-z,now
    assert links["legacy"].relro and not links["legacy"].now  # -Wl,-z,lazy
    assert links["legacy"].objects == ("legacy.c",)


def test_evidence_follows_link_lines(scan_text: str) -> None:
    scan = scan_build_log(scan_text)
    hello = evidence_for(scan, "hello")
    assert [c.source for c in hello.compiles] == ["hello.c"]
    assert hello.link is not None and hello.link.output == "hello"
    # A versioned file name still finds its link line.
    assert [c.source for c in evidence_for(scan, "libgreet.so.1.0.0").compiles] == ["greet.c"]
    legacy = evidence_for(scan, "legacy")
    assert [c.fortify for c in legacy.compiles] == [0]
    unknown = evidence_for(scan, "elsewhere")
    assert unknown.link is None and len(unknown.compiles) == 4
    assert "no link line" in unknown.scope


def test_one_step_compile_and_link() -> None:
    scan = scan_build_log(
        "gcc -D_FORTIFY_SOURCE=3 -O2 -fstack-clash-protection -Wl,-z,now -o tiny tiny.c\n"
    )
    evidence = evidence_for(scan, "tiny")
    assert [c.fortify for c in evidence.compiles] == [3]
    assert evidence.link is not None and evidence.link.now and not evidence.link.relro


def test_empty_log() -> None:
    scan = scan_build_log("")
    evidence = evidence_for(scan, "x")
    assert evidence.compiles == () and "no compile lines" in evidence.scope


def test_unbalanced_quote_still_parsed() -> None:
    scan = scan_build_log("gcc -DNAME='x -D_FORTIFY_SOURCE=3 -O2 -c a.c -o a.o\n")
    assert [c.fortify for c in scan.compiles] == [3]


def test_blhc_cmdline() -> None:
    assert blhc_cmdline(Path("/w/build.log"), "amd64") == [
        "blhc", "--all", "--debian", "--arch", "amd64", "/w/build.log",
    ]  # fmt: skip


def test_parse_blhc_maps_flags_to_properties() -> None:
    output = (
        "CPPFLAGS missing (-D_FORTIFY_SOURCE=2): gcc -g -O2 -c a.c\n"
        "LDFLAGS missing (-Wl,-z,relro -Wl,-z,now): gcc -o a a.o\n"
        "CFLAGS missing (-Werror=format-security): gcc -c b.c\n"
        "NONVERBOSE BUILD: Compiling c.c\n"
    )
    result = parse_blhc(["blhc", "x"], 8, output)
    assert [f.properties for f in result.findings] == [
        ("fortify3",), ("bindnow", "relro"), (),
    ]  # fmt: skip
    assert result.findings[1].flags == ("-Wl,-z,relro", "-Wl,-z,now")
    assert result.nonverbose == 1
    assert not result.no_compiler_commands
    assert parse_blhc(["blhc"], 1, "No compiler commands!\n").no_compiler_commands


def test_real_postfix_log_lines() -> None:
    # Debian's postfix 3.11.6-1 built by sbuild for resolute: x86_64-linux-gnu-gcc, LTO, and
    # the flags of debian/rules; anvil is compiled from one file and linked on the next line.
    scan = scan_build_log((EXCERPT.parent / "postfix-resolute-anvil.log").read_text())
    evidence = evidence_for(scan, "anvil")
    assert evidence.scope == "1 compile line(s) linked into anvil"
    (compiled,) = evidence.compiles
    assert compiled.source == "anvil.c"
    assert compiled.fortify == 3 and compiled.stack_clash
    assert compiled.stack_protector == "strong" and compiled.cf_protection == "full"
    assert evidence.link is not None and evidence.link.relro and evidence.link.now
