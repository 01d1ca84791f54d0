"""ELF facts from readelf text, and the per-file verdicts built on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.check.blhc import CompileFlags, LogEvidence
from builder.check.elf import ElfFacts, is_elf, objdump_cmdline, parse_readelf, readelf_cmdline
from builder.check.judge import NA, NO, UNAVAILABLE, UNKNOWN, YES, judge_elf
from builder.model.distro import RESOLUTE, TRIXIE

pytestmark = pytest.mark.unit

PIE_EXECUTABLE = """\
ELF Header:
  Type:                              DYN (Position-Independent Executable file)

Program Headers:
  Type           Offset   VirtAddr           PhysAddr           FileSiz  MemSiz   Flg Align
  PHDR           0x000040 0x0000000000000040 0x0000000000000040 0x0002d8 0x0002d8 R   0x8
  INTERP         0x000318 0x0000000000000318 0x0000000000000318 0x00001c 0x00001c R   0x1
      [Requesting program interpreter: /lib64/ld-linux-x86-64.so.2]
  LOAD           0x001000 0x0000000000001000 0x0000000000001000 0x0001f5 0x0001f5 R E 0x1000
  GNU_STACK      0x000000 0x0000000000000000 0x0000000000000000 0x000000 0x000000 RW  0x10
  GNU_RELRO      0x002d90 0x0000000000003d90 0x0000000000003d90 0x000270 0x000270 R   0x1

Dynamic section at offset 0x2da0 contains 28 entries:
 0x000000000000001e (FLAGS)              BIND_NOW
 0x000000006ffffffb (FLAGS_1)            Flags: NOW PIE

Displaying notes found in: .note.gnu.property
  Owner                Data size \tDescription
  GNU                  0x00000030\tNT_GNU_PROPERTY_TYPE_0
      Properties: x86 feature: IBT, SHSTK
\tx86 ISA needed: x86-64-baseline
\tx86 feature used: x86

Symbol table '.dynsym' contains 12 entries:
   Num:    Value          Size Type    Bind   Vis      Ndx Name
     1: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND __stack_chk_fail@GLIBC_2.4 (3)
     2: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND __strcpy_chk@GLIBC_2.3.4 (4)
     3: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND puts@GLIBC_2.2.5 (2)
     4: 0000000000001139    20 FUNC    GLOBAL DEFAULT   16 exported_chk
"""

LAZY_EXEC_STACK_EXEC = """\
  Type:                              EXEC (Executable file)
Program Headers:
  Type           Offset   VirtAddr           PhysAddr           FileSiz  MemSiz   Flg Align
  INTERP         0x000318 0x0000000000400318 0x0000000000400318 0x00001c 0x00001c R   0x1
  GNU_STACK      0x000000 0x0000000000000000 0x0000000000000000 0x000000 0x000000 RWE 0x10

 0x000000006ffffffb (FLAGS_1)            Flags: NOW
"""

SHARED_LIBRARY = """\
  Type:                              DYN (Shared object file)
Program Headers:
  Type           Offset   VirtAddr           PhysAddr           FileSiz  MemSiz   Flg Align
  GNU_STACK      0x000000 0x0000000000000000 0x0000000000000000 0x000000 0x000000 RW  0x10
  GNU_RELRO      0x002d90 0x0000000000003d90 0x0000000000003d90 0x000270 0x000270 R   0x1
 0x0000000000000018 (BIND_NOW)
      Properties: x86 feature: IBT
"""


def _compile(fortify: int = 3, clash: bool = True, ssp: str = "strong") -> CompileFlags:
    return CompileFlags("hello", "hello.c", fortify, ssp, clash, "full", "gcc -c hello.c")


def _evidence(*compiles: CompileFlags) -> LogEvidence:
    return LogEvidence("test scope", compiles, None)


def test_parse_readelf_pie_executable_with_cet_markers() -> None:
    facts = parse_readelf(PIE_EXECUTABLE)
    assert facts.elf_type == "DYN"
    assert facts.is_executable and facts.is_pie and facts.is_bind_now
    assert facts.has_relro and facts.is_nx_stack and facts.stack_flags == "RW"
    # "x86 feature used:" must not be mistaken for the IBT/SHSTK marker property.
    assert facts.x86_features == ("IBT", "SHSTK")
    assert facts.stack_chk_imported
    # Only undefined (imported) symbols count; an exported name ending in _chk does not.
    assert facts.fortified_imports == ("__strcpy_chk",)
    assert "exported_chk" not in facts.imports


def test_parse_readelf_non_pie_lazy_executable_stack() -> None:
    facts = parse_readelf(LAZY_EXEC_STACK_EXEC)
    assert facts.is_executable and not facts.is_pie
    assert facts.is_bind_now  # DT_FLAGS_1 NOW alone is enough
    assert not facts.has_relro
    assert facts.stack_flags == "RWE" and not facts.is_nx_stack
    assert facts.x86_features == () and facts.imports == ()


def test_parse_readelf_shared_library() -> None:
    facts = parse_readelf(SHARED_LIBRARY)
    assert not facts.is_executable and not facts.is_pie
    assert facts.is_bind_now  # the DT_BIND_NOW tag
    assert facts.x86_features == ("IBT",)


def test_missing_gnu_stack_means_executable_stack() -> None:
    facts = parse_readelf("  Type:                              DYN (Shared object file)\n")
    assert facts.stack_flags is None and not facts.is_nx_stack


def test_cmdlines() -> None:
    assert readelf_cmdline(Path("/x/a")) == [
        "readelf", "--wide", "-h", "-l", "-d", "-n", "--dyn-syms", "/x/a",
    ]  # fmt: skip
    assert objdump_cmdline(Path("/x/a")) == ["objdump", "-d", "--no-show-raw-insn", "/x/a"]


def test_is_elf(tmp_path: Path) -> None:
    elf = tmp_path / "elf"
    elf.write_bytes(b"\x7fELF\x02\x01")
    text = tmp_path / "text"
    text.write_text("#!/bin/sh\n")
    link = tmp_path / "link"
    link.symlink_to(elf)
    assert is_elf(elf)
    assert not is_elf(text)
    assert not is_elf(link)  # the target is checked once, under its own name
    assert not is_elf(tmp_path)


def test_judge_all_good_on_resolute() -> None:
    findings = judge_elf(parse_readelf(PIE_EXECUTABLE), _evidence(_compile()), RESOLUTE, None)
    assert {p: f.status for p, f in findings.items()} == {
        "pie": YES, "relro": YES, "bindnow": YES, "nxstack": YES,
        "stackprotector": YES, "fortify3": YES, "stackclash": YES, "cet": YES,
    }  # fmt: skip


def test_judge_bad_executable() -> None:
    facts = parse_readelf(LAZY_EXEC_STACK_EXEC)
    findings = judge_elf(facts, _evidence(_compile(fortify=2, clash=False)), RESOLUTE, 0)
    for prop in ("pie", "relro", "nxstack", "fortify3", "stackclash", "cet"):
        assert findings[prop].status == NO, prop
    assert "level 2" in findings["fortify3"].detail
    assert "hello.c" in findings["fortify3"].detail
    assert "no SHSTK" in findings["cet"].detail or "no IBT" in findings["cet"].detail


def test_judge_shared_library_pie_not_applicable() -> None:
    findings = judge_elf(parse_readelf(SHARED_LIBRARY), _evidence(_compile()), RESOLUTE, 5)
    assert findings["pie"].status == NA
    assert findings["cet"].status == NO
    assert "no SHSTK marker" in findings["cet"].detail


def test_stack_protector_without_canary_is_explained_by_the_log() -> None:
    facts = parse_readelf(LAZY_EXEC_STACK_EXEC)
    good = judge_elf(facts, _evidence(_compile()), TRIXIE, 4)["stackprotector"]
    assert good.status == YES and "no function needed a canary" in good.detail
    weak = judge_elf(facts, _evidence(_compile(ssp="basic")), TRIXIE, 4)["stackprotector"]
    assert weak.status == NO
    unproven = judge_elf(facts, _evidence(), TRIXIE, 4)["stackprotector"]
    assert unproven.status == UNKNOWN


def test_trixie_cet_unavailable_only_when_instrumented() -> None:
    facts = parse_readelf(LAZY_EXEC_STACK_EXEC)
    instrumented = judge_elf(facts, _evidence(_compile()), TRIXIE, 12)["cet"]
    assert instrumented.status == UNAVAILABLE
    assert "12 endbr64" in instrumented.detail
    bare = judge_elf(facts, _evidence(_compile()), TRIXIE, 0)["cet"]
    assert bare.status == NO
    # On resolute the toolchain can mark binaries: endbr64 alone is not enough.
    assert judge_elf(facts, _evidence(_compile()), RESOLUTE, 12)["cet"].status == NO


def test_log_properties_unknown_without_compile_lines() -> None:
    findings = judge_elf(parse_readelf(PIE_EXECUTABLE), _evidence(), TRIXIE, None)
    assert findings["fortify3"].status == UNKNOWN
    assert findings["stackclash"].status == UNKNOWN
    # The import is proof enough for the stack protector.
    assert findings["stackprotector"].status == YES


def test_elf_facts_is_frozen() -> None:
    facts = ElfFacts("DYN", True, True, "RW", (), ("PIE",), (), ())
    with pytest.raises(AttributeError):
        facts.elf_type = "EXEC"  # type: ignore[misc]  # proving immutability is the point
