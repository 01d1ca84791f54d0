"""What one ELF file proves about its hardening: readelf headers, dynamic tags, notes, imports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder.core import run

ELF_MAGIC = b"\x7fELF"

_TYPE_RE = re.compile(r"^\s*Type:\s+(\w+)", re.MULTILINE)
_FLAGS_RE = re.compile(r"\(FLAGS\)\s+(.*)$", re.MULTILINE)
_FLAGS_1_RE = re.compile(r"\(FLAGS_1\)\s+Flags:\s*(.*)$", re.MULTILINE)
_BIND_NOW_TAG_RE = re.compile(r"\(BIND_NOW\)")
# "x86 feature used:" is another property (what the code uses, not what it is marked safe for).
_X86_FEATURE_RE = re.compile(r"x86 feature:\s*([^\n]*)")
_UND_SYMBOL_RE = re.compile(r"^\s*\d+:\s+\S+\s+\d+\s+\w+\s+\w+\s+\w+\s+UND\s+(\S+)", re.MULTILINE)
_ENDBR_RE = re.compile(rb"\tendbr64\b")


@dataclass(frozen=True)
class ElfFacts:
    """The hardening-relevant facts readelf reports for one ELF file."""

    elf_type: str
    has_interp: bool
    has_relro: bool
    stack_flags: str | None
    dt_flags: tuple[str, ...]
    dt_flags_1: tuple[str, ...]
    x86_features: tuple[str, ...]
    imports: tuple[str, ...]

    @property
    def is_executable(self) -> bool:
        """An executable (PIE or not), as opposed to a shared library or an object file."""
        return self.elf_type == "EXEC" or (
            self.elf_type == "DYN" and (self.has_interp or "PIE" in self.dt_flags_1)
        )

    @property
    def is_pie(self) -> bool:
        """ELF type DYN with DT_FLAGS_1 PIE: loaded at a random address."""
        return self.elf_type == "DYN" and "PIE" in self.dt_flags_1

    @property
    def is_bind_now(self) -> bool:
        """Every symbol resolved at load time, so the GOT can be made read-only."""
        return "BIND_NOW" in self.dt_flags or "NOW" in self.dt_flags_1

    @property
    def is_nx_stack(self) -> bool:
        """GNU_STACK present and not executable (no header at all means an executable stack)."""
        return self.stack_flags is not None and "E" not in self.stack_flags

    @property
    def stack_chk_imported(self) -> bool:
        """The stack protector's failure handler is called somewhere."""
        return "__stack_chk_fail" in self.imports

    @property
    def fortified_imports(self) -> tuple[str, ...]:
        """The glibc *_chk functions FORTIFY_SOURCE replaced calls with."""
        return tuple(
            sorted(s for s in self.imports if s.endswith("_chk") and s != "__stack_chk_fail")
        )


def is_elf(path: Path) -> bool:
    """True for a regular file that starts with the ELF magic."""
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == ELF_MAGIC


def readelf_cmdline(path: Path) -> list[str]:
    """One readelf call for headers, program headers, dynamic section, notes and imports."""
    return ["readelf", "--wide", "-h", "-l", "-d", "-n", "--dyn-syms", str(path)]


def _program_headers(text: str) -> dict[str, str]:
    """Program header types mapped to their flags column (R, RW, R E, RWE)."""
    headers: dict[str, str] = {}
    section = text.split("Program Headers:", 1)
    if len(section) < 2:
        return headers
    for line in section[1].splitlines()[1:]:
        if not line.strip():
            break
        fields = line.split()
        # type offset vaddr paddr filesz memsz flags... align; flags may contain a space ("R E").
        if len(fields) >= 8 and fields[1].startswith("0x"):
            headers.setdefault(fields[0], "".join(fields[6:-1]))
    return headers


def parse_readelf(text: str) -> ElfFacts:
    """Turn `readelf_cmdline` output into ElfFacts."""
    type_match = _TYPE_RE.search(text)
    headers = _program_headers(text)
    flags = _FLAGS_RE.search(text)
    flags_1 = _FLAGS_1_RE.search(text)
    dt_flags = tuple(flags.group(1).split()) if flags else ()
    if _BIND_NOW_TAG_RE.search(text):
        dt_flags += ("BIND_NOW",)
    features: list[str] = []
    for match in _X86_FEATURE_RE.finditer(text):
        features += [f.strip() for f in match.group(1).split(",") if f.strip()]
    imports = {m.group(1).split("@", 1)[0] for m in _UND_SYMBOL_RE.finditer(text)}
    return ElfFacts(
        elf_type=type_match.group(1) if type_match else "unknown",
        has_interp="INTERP" in headers,
        has_relro="GNU_RELRO" in headers,
        stack_flags=headers.get("GNU_STACK"),
        dt_flags=dt_flags,
        dt_flags_1=tuple(flags_1.group(1).split()) if flags_1 else (),
        x86_features=tuple(dict.fromkeys(features)),
        imports=tuple(sorted(imports)),
    )


def inspect_elf(path: Path) -> ElfFacts:
    """Run readelf on `path` and parse what it says."""
    return parse_readelf(run.output(readelf_cmdline(path)))


def objdump_cmdline(path: Path) -> list[str]:
    """Disassemble the executable sections, without raw bytes (smaller output)."""
    return ["objdump", "-d", "--no-show-raw-insn", str(path)]


def count_endbr64(path: Path) -> int:
    """How many endbr64 landing pads the code holds: proof of -fcf-protection instrumentation."""
    return len(_ENDBR_RE.findall(run.run(objdump_cmdline(path)).stdout))
