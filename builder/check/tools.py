"""Second opinions: hardening-check and lintian, run and shown in the report, never a gate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder.check.judge import NA, UNAVAILABLE, YES, Finding
from builder.core import run
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

LINTIAN_TIMEOUT = 900.0
HARDENING_CHECK_TIMEOUT = 600.0
HARDENING_CHECK_KEYS = {
    "Position Independent Executable": "pie",
    "Stack protected": "stackprotector",
    "Fortify Source functions": "fortify3",
    "Read-only relocations": "relro",
    "Immediate binding": "bindnow",
    "Stack clash protection": "stackclash",
    "Control flow integrity": "cet",
}
_LINTIAN_TAG_RE = re.compile(r"^([EWIPXOC]): (\S+?)(?: (\w+))?: (\S+)\s*(.*)$")


@dataclass(frozen=True)
class LintianTag:
    """One lintian tag: severity letter, package, tag name and its context."""

    severity: str
    package: str
    tag: str
    context: str


@dataclass(frozen=True)
class LintianResult:
    """lintian's tags for the .changes, or why it did not run."""

    cmdline: tuple[str, ...]
    ran: bool
    note: str
    tags: tuple[LintianTag, ...]


def hardening_check_cmdline(paths: list[Path]) -> list[str]:
    """hardening-check on many files at once; its exit status is no gate."""
    return ["hardening-check", *[str(p) for p in paths]]


def parse_hardening_check(text: str) -> dict[str, dict[str, str]]:
    """Map each file hardening-check named to its property -> verdict text."""
    result: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = result.setdefault(line[:-1], {})
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(": ")
            if key in HARDENING_CHECK_KEYS:
                current[HARDENING_CHECK_KEYS[key]] = value.strip()
    return result


def hardening_check_views(paths: list[Path]) -> dict[str, dict[str, str]]:
    """hardening-check's verdicts for every file at once (one process, not one per file)."""
    if not paths:
        return {}
    proc = run.run(hardening_check_cmdline(paths), check=False, timeout=HARDENING_CHECK_TIMEOUT)
    return parse_hardening_check(proc.stdout.decode(errors="replace"))


def explain_hardening_check(view: dict[str, str], findings: dict[str, Finding]) -> tuple[str, ...]:
    """Say why hardening-check disagrees with the exact checks, where it does."""
    notes = []
    for prop, value in sorted(view.items()):
        ours = findings[prop].status
        theirs_yes = value.startswith("yes")
        if prop == "stackclash" and value.startswith("unknown"):
            notes.append(
                "stackclash: hardening-check reports 'unknown' for every binary (it cannot see "
                "probes); the compile lines are the proof"
            )
        elif prop == "fortify3" and theirs_yes:
            notes.append("fortify3: hardening-check cannot tell level 2 from 3; the log can")
        elif prop == "fortify3" and ours == YES:
            notes.append(
                f"fortify3: hardening-check says '{value}': a known false positive for files "
                "where no call could be checked (nothing fortifiable called, or no buffer size "
                "known at compile time); the compile lines prove level 3 was in force"
            )
        elif prop == "stackprotector" and not theirs_yes and ours == YES:
            notes.append(
                "stackprotector: hardening-check flags files whose functions needed no canary; "
                "the compile lines show -fstack-protector-strong"
            )
        elif prop == "cet" and not theirs_yes and ours == UNAVAILABLE:
            notes.append("cet: no marker, as the toolchain note explains")
        elif prop == "pie" and ours == NA:
            continue
        elif theirs_yes != (ours == YES):
            notes.append(f"{prop}: hardening-check says '{value}', pfbuild says {ours}")
    return tuple(notes)


def lintian_cmdline(changes: Path, profile: str) -> list[str]:
    """lintian on the .changes with the target vendor's profile; tags are read, not gated."""
    return ["lintian", "--profile", profile, "--fail-on", "none", str(changes)]


def parse_lintian(text: str) -> tuple[LintianTag, ...]:
    """The tags in lintian's output."""
    tags = []
    for line in text.splitlines():
        match = _LINTIAN_TAG_RE.match(line)
        if match:
            severity, package, kind, tag, context = match.groups()
            name = f"{package} {kind}" if kind else package
            tags.append(LintianTag(severity, name, tag, context.strip()))
    return tuple(tags)


def run_lintian(build_dir: Path, dist: Distribution) -> LintianResult:
    """Run lintian on the build's .changes file and collect its tags."""
    changes = sorted(build_dir.glob("*.changes"))
    if not changes:
        return LintianResult((), False, "not run: no .changes file in the build results", ())
    cmdline = lintian_cmdline(changes[0], dist.vendor)
    try:
        proc = run.run(cmdline, check=False, timeout=LINTIAN_TIMEOUT)
    except PfbuildError as exc:
        return LintianResult(tuple(cmdline), False, f"not run: {exc.one_line()}", ())
    text = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    tags = parse_lintian(text)
    note = (
        f"exit status {proc.returncode}; {len(tags)} tag(s). Not a gate: the host's lintian is "
        "older than the targets' policy, and the hardening truth comes from readelf and the "
        "build log"
    )
    return LintianResult(tuple(cmdline), proc.returncode == 0, note, tags)
