"""What the build log proves: the compile and link lines' flags, and blhc's verdict on them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.core import run

_COMPILER_RE = re.compile(
    r"^(?:[\w.]+-)*(?:gcc|cc|g\+\+|c\+\+|clang|clang\+\+)(?:-\d+(?:\.\d+)*)?$"
)
_SOURCE_RE = re.compile(r"\.(?:c|cc|cpp|cxx|c\+\+|C)$")
_OBJECT_RE = re.compile(r"\.(?:o|lo)$")
_SEGMENT_SPLIT_RE = re.compile(r"\s(?:&&|\|\||;)\s")
_VERSION_TAIL_RE = re.compile(r"(?:\.\d+)+$")
_BLHC_RE = re.compile(r"^(CFLAGS|CPPFLAGS|CXXFLAGS|OBJCFLAGS|FFLAGS|LDFLAGS) missing \(([^)]*)\):")
_LINE_KEEP = 240

# Which pfbuild property a flag blhc reports missing stands for; the rest (-g, -O2, -Wformat)
# are shown but prove nothing about the binaries' hardening. blhc 0.13 does not read
# -Wl,-z,relro,-z,now written as one option (it wants them apart, as dpkg-buildflags and the
# recipes write them), and accepts -D_FORTIFY_SOURCE=2 as well as 3.
BLHC_FLAG_PROPERTY = {
    "-D_FORTIFY_SOURCE=2": "fortify3",
    "-fstack-protector-strong": "stackprotector",
    "-fstack-protector": "stackprotector",
    "--param=ssp-buffer-size=4": "stackprotector",
    "-Wl,-z,relro": "relro",
    "-Wl,-z,now": "bindnow",
    "-fPIE": "pie",
    "-pie": "pie",
    "-fstack-clash-protection": "stackclash",
    "-fcf-protection": "cet",
}


@dataclass(frozen=True)
class CompileFlags:
    """The hardening flags in force on one compile command, last flag winning as in gcc."""

    obj: str
    source: str
    fortify: int
    stack_protector: str
    stack_clash: bool
    cf_protection: str
    line: str


@dataclass(frozen=True)
class LinkFlags:
    """One link command: what it writes, from which objects, with which -z options."""

    output: str
    objects: tuple[str, ...]
    relro: bool
    now: bool
    line: str


@dataclass(frozen=True)
class LogScan:
    """Every compile and link command found in a build log."""

    compiles: tuple[CompileFlags, ...]
    links: tuple[LinkFlags, ...]


@dataclass(frozen=True)
class LogEvidence:
    """The compile commands that went into one ELF file, and its link command if found."""

    scope: str
    compiles: tuple[CompileFlags, ...]
    link: LinkFlags | None


@dataclass(frozen=True)
class BlhcFinding:
    """One blhc complaint: a command that lacks flags, and the properties those flags stand for."""

    kind: str
    flags: tuple[str, ...]
    properties: tuple[str, ...]
    line: str


@dataclass(frozen=True)
class BlhcResult:
    """blhc's exit status, its complaints, and whether it found the compiler commands at all."""

    cmdline: tuple[str, ...]
    returncode: int
    findings: tuple[BlhcFinding, ...]
    nonverbose: int
    no_compiler_commands: bool
    output: str


def _object_key(name: str) -> str:
    return _OBJECT_RE.sub("", PurePosixPath(name).name)


def _tokens(segment: str) -> list[str]:
    try:
        return shlex.split(segment)
    except ValueError:
        # An unbalanced quote in a logged command: plain splitting still finds the flags.
        return segment.split()


def _compiler_commands(line: str) -> list[list[str]]:
    commands = []
    for segment in _SEGMENT_SPLIT_RE.split(line):
        tokens = _tokens(segment)
        for index, arg in enumerate(tokens[:6]):
            if _COMPILER_RE.match(PurePosixPath(arg).name):
                commands.append(tokens[index + 1 :])
                break
    return commands


def _last_level(tokens: list[str]) -> int:
    level = 0
    optimised = False
    for arg in tokens:
        if arg.startswith("-D_FORTIFY_SOURCE"):
            value = arg.partition("=")[2]
            level = int(value) if value.isdigit() else 1
        elif arg == "-U_FORTIFY_SOURCE":
            level = 0
        elif arg.startswith("-O"):
            optimised = arg != "-O0"
    # glibc ignores _FORTIFY_SOURCE without optimisation.
    return level if optimised else 0


def _last_stack_protector(tokens: list[str]) -> str:
    value = "none"
    for arg in tokens:
        if arg == "-fno-stack-protector":
            value = "none"
        elif arg.startswith("-fstack-protector"):
            value = arg.removeprefix("-fstack-protector").lstrip("-") or "basic"
    return value


def _last_toggle(tokens: list[str], flag: str) -> bool:
    state = False
    for arg in tokens:
        if arg == flag:
            state = True
        elif arg == flag.replace("-f", "-fno-", 1):
            state = False
    return state


def _last_cf_protection(tokens: list[str]) -> str:
    value = "none"
    for arg in tokens:
        if arg == "-fcf-protection":
            value = "full"
        elif arg.startswith("-fcf-protection="):
            value = arg.partition("=")[2]
    return value


def _linker_options(tokens: list[str]) -> list[str]:
    options: list[str] = []
    pending_z = False
    for arg in tokens:
        items = arg.split(",")[1:] if arg.startswith("-Wl,") else [arg]
        for item in items:
            if pending_z:
                options.append(f"z:{item}")
                pending_z = False
            elif item == "-z":
                pending_z = True
            elif item.startswith("-z") and len(item) > 2:
                options.append(f"z:{item[2:]}")
    return options


def _output_of(tokens: list[str]) -> str | None:
    for index, arg in enumerate(tokens):
        if arg == "-o" and index + 1 < len(tokens):
            return tokens[index + 1]
        if arg.startswith("-o") and len(arg) > 2:
            return arg[2:]
    return None


def scan_build_log(text: str) -> LogScan:
    """Find every compile and link command in `text` and the hardening flags each one used."""
    compiles: list[CompileFlags] = []
    links: list[LinkFlags] = []
    for raw in text.splitlines():
        for tokens in _compiler_commands(raw):
            if "-E" in tokens or "-M" in tokens or "-MM" in tokens:
                continue
            sources = [t for t in tokens if _SOURCE_RE.search(t) and not t.startswith("-")]
            output = _output_of(tokens)
            line = " ".join(raw.split())[:_LINE_KEEP]
            for source in sources:
                obj = output if ("-c" in tokens and output) else PurePosixPath(source).stem
                compiles.append(
                    CompileFlags(
                        obj=_object_key(obj),
                        source=source,
                        fortify=_last_level(tokens),
                        stack_protector=_last_stack_protector(tokens),
                        stack_clash=_last_toggle(tokens, "-fstack-clash-protection"),
                        cf_protection=_last_cf_protection(tokens),
                        line=line,
                    )
                )
            if "-c" in tokens or output is None:
                continue
            objects = [t for t in tokens if _OBJECT_RE.search(t) and not t.startswith("-")]
            objects += [PurePosixPath(s).stem for s in sources]
            options = _linker_options(tokens)
            relro = [o for o in options if o in ("z:relro", "z:norelro")]
            now = [o for o in options if o in ("z:now", "z:lazy")]
            links.append(
                LinkFlags(
                    output=PurePosixPath(output).name,
                    objects=tuple(_object_key(o) for o in objects),
                    relro=bool(relro) and relro[-1] == "z:relro",
                    now=bool(now) and now[-1] == "z:now",
                    line=line,
                )
            )
    return LogScan(tuple(compiles), tuple(links))


def _same_binary(output: str, elf_name: str) -> bool:
    return output == elf_name or _VERSION_TAIL_RE.sub("", output) == _VERSION_TAIL_RE.sub(
        "", elf_name
    )


def evidence_for(scan: LogScan, elf_name: str) -> LogEvidence:
    """The compile lines behind `elf_name`: from its link line, else every compile line."""
    links = [link for link in scan.links if _same_binary(link.output, elf_name)]
    if links:
        link = links[-1]
        wanted = set(link.objects)
        compiles = tuple(c for c in scan.compiles if c.obj in wanted)
        if compiles:
            return LogEvidence(
                f"{len(compiles)} compile line(s) linked into {link.output}", compiles, link
            )
        return LogEvidence(
            f"link line of {link.output} (its objects' compile lines not matched; "
            f"all {len(scan.compiles)} compile lines used)",
            scan.compiles,
            link,
        )
    if scan.compiles:
        return LogEvidence(
            f"no link line found; all {len(scan.compiles)} compile lines of the log used",
            scan.compiles,
            None,
        )
    return LogEvidence("no compile lines in the build log", (), None)


def blhc_cmdline(log: Path, arch: str) -> list[str]:
    """blhc on a build log: --all forces the bindnow check, --debian drops PIE flags gcc implies."""
    return ["blhc", "--all", "--debian", "--arch", arch, str(log)]


def parse_blhc(cmdline: list[str], returncode: int, output: str) -> BlhcResult:
    """Turn blhc's output into findings mapped to pfbuild properties."""
    findings = []
    for line in output.splitlines():
        match = _BLHC_RE.match(line)
        if not match:
            continue
        flags = tuple(match.group(2).split())
        props = tuple(sorted({BLHC_FLAG_PROPERTY[f] for f in flags if f in BLHC_FLAG_PROPERTY}))
        findings.append(BlhcFinding(match.group(1), flags, props, line[:_LINE_KEEP]))
    return BlhcResult(
        cmdline=tuple(cmdline),
        returncode=returncode,
        findings=tuple(findings),
        nonverbose=sum(1 for line in output.splitlines() if line.startswith("NONVERBOSE BUILD")),
        no_compiler_commands="No compiler commands!" in output,
        output=output,
    )


def run_blhc(log: Path, arch: str) -> BlhcResult:
    """Run blhc on `log`; its exit status is a bit mask, so it is read, not raised."""
    cmdline = blhc_cmdline(log, arch)
    proc = run.run(cmdline, check=False, timeout=600)
    return parse_blhc(cmdline, proc.returncode, proc.stdout.decode(errors="replace"))
