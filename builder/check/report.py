"""The hardening report of one target: its type, the text table, writing it, and its verdict."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.check.blhc import BlhcResult
from builder.check.judge import FAILING, NA, NO, PROPERTIES, UNAVAILABLE, UNKNOWN, YES, Finding
from builder.check.tools import LintianResult, LintianTag
from builder.core.atomic import write_text
from builder.core.errors import PfbuildError

REPORT_JSON = "hardening.json"
REPORT_TEXT = "hardening.txt"


@dataclass(frozen=True)
class ElfReport:
    """One row of the report: a file in a .deb and what each property's check found."""

    deb: str
    path: str
    kind: str
    findings: dict[str, Finding]
    log_scope: str
    endbr64: int | None
    hardening_check: dict[str, str]
    hardening_check_notes: tuple[str, ...]


@dataclass(frozen=True)
class BuildLogSummary:
    """What the build log contributed: its compile/link lines and blhc's complaints."""

    path: str | None
    compile_lines: int
    link_lines: int
    fortify_levels: dict[str, int]
    blhc: BlhcResult | None


@dataclass(frozen=True)
class HardeningReport:
    """The whole report for one target: verdict, failures, words per target, one row per ELF."""

    target: str
    arch: str
    expected: tuple[str, ...]
    verdict: str
    failures: tuple[str, ...]
    offending_files: tuple[str, ...]
    toolchain_notes: tuple[str, ...]
    debs: tuple[str, ...]
    skipped: tuple[str, ...]
    elves: tuple[ElfReport, ...]
    build_log: BuildLogSummary
    lintian: LintianResult

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


_SHORT = {YES: "yes", NO: "NO", NA: "n/a", UNAVAILABLE: "unavail", UNKNOWN: "?"}
_HEADINGS = {
    "pie": "PIE", "relro": "RELRO", "bindnow": "BINDNOW", "nxstack": "NX",
    "stackprotector": "SSP", "fortify3": "FORTIFY3", "stackclash": "CLASH", "cet": "CET",
}  # fmt: skip


def _table_lines(report: HardeningReport) -> list[str]:
    """The heading, one row per ELF, the failures and the endbr64 counts."""
    lines = [
        f"Hardening report for {report.target} ({report.arch}): {report.verdict.upper()}",
        f"expected: {', '.join(report.expected) or 'nothing'}",
        *[f"note: {n}" for n in report.toolchain_notes],
        "",
    ]
    width = max([len(r.path) for r in report.elves] + [4])
    header = f"{'file':<{width}}  " + " ".join(f"{_HEADINGS[p]:<8}" for p in PROPERTIES)
    lines += [header, "-" * len(header)]
    for row in report.elves:
        cells = []
        for prop in PROPERTIES:
            cell = _SHORT[row.findings[prop].status]
            if prop in report.expected and row.findings[prop].status in FAILING:
                cell += "!"
            cells.append(f"{cell:<8}")
        lines.append(f"{row.path:<{width}}  " + " ".join(cells))
    if not report.elves:
        lines.append("(no ELF files: nothing compiled to check)")
    lines += ["", "('!' = expected and missing; 'unavail' = the toolchain cannot give it)"]
    if report.failures:
        lines += ["", "FAILURES:", *[f"  {f}" for f in report.failures]]
    cet_counts = [r.endbr64 for r in report.elves if r.endbr64 is not None]
    if cet_counts:
        lines.append(
            f"\nendbr64 instructions per file without CET markers: min {min(cet_counts)}, "
            f"max {max(cet_counts)}"
        )
    return lines


def _hardening_check_lines(report: HardeningReport) -> list[str]:
    lines = ["", "hardening-check's view (not a gate; its blind spots explained):"]
    # The same blind spot shows on most files: one line per note, with the files it concerns.
    by_note: dict[str, list[str]] = {}
    for row in report.elves:
        for note in row.hardening_check_notes:
            by_note.setdefault(note, []).append(row.path)
    for note, paths in by_note.items():
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        lines.append(f"  {note} [{shown}]")
    if not by_note:
        lines.append("  (agrees with the exact checks everywhere)")
    return lines


def _build_log_lines(summary: BuildLogSummary) -> list[str]:
    lines = ["", f"build log: {summary.path or 'none'}"]
    if summary.path:
        lines.append(
            f"  {summary.compile_lines} compile lines, {summary.link_lines} link lines; "
            f"_FORTIFY_SOURCE levels in force: {summary.fortify_levels}"
        )
    if summary.blhc is not None:
        blhc = summary.blhc
        lines.append(
            f"  blhc (exit {blhc.returncode}): {len(blhc.findings)} complaint(s), "
            f"{blhc.nonverbose} hidden command(s)"
        )
        lines += [f"    {f.line}" for f in blhc.findings[:10]]
        lines.append(
            "  (blhc accepts -D_FORTIFY_SOURCE=2 and =3 alike; level 3 and "
            "-fstack-clash-protection are proven by pfbuild's own compile-line scan)"
        )
    return lines


def _lintian_lines(lintian: LintianResult) -> list[str]:
    lines = ["", f"lintian: {lintian.note}"]
    counts = Counter(t.severity for t in lintian.tags)
    if counts:
        lines.append("  " + ", ".join(f"{sev}: {n}" for sev, n in sorted(counts.items())))
    errors: dict[str, list[LintianTag]] = {}
    for tag in lintian.tags:
        if tag.severity == "E":
            errors.setdefault(tag.tag, []).append(tag)
    for name, tags in errors.items():
        packages = ", ".join(dict.fromkeys(t.package for t in tags))
        lines.append(f"  E: {name} ({len(tags)}x: {packages}) {tags[0].context}".rstrip())
    return lines


def format_table(report: HardeningReport) -> str:
    """The report as text a person can read: notes, one row per ELF, failures, tool views."""
    lines = [
        *_table_lines(report),
        *_hardening_check_lines(report),
        *_build_log_lines(report.build_log),
        *_lintian_lines(report.lintian),
    ]
    if report.skipped:
        lines += ["", "skipped:", *[f"  {s}" for s in report.skipped]]
    return "\n".join(lines) + "\n"


def write_report(report: HardeningReport, report_dir: Path) -> None:
    """Write hardening.json and hardening.txt, each atomically."""
    write_text(report_dir / REPORT_JSON, report.to_json())
    write_text(report_dir / REPORT_TEXT, format_table(report))


def require_passed(report: HardeningReport, report_dir: Path) -> None:
    """Raise a one-line PfbuildError naming the offending files when the report failed."""
    if report.verdict == "pass":
        return
    files = list(report.offending_files)
    named = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
    raise PfbuildError(
        f"hardening check failed for {report.target}: expected hardening missing in {named}",
        f"{len(report.failures)} problem(s), first: {report.failures[0]}",
        f"see {report_dir / REPORT_TEXT}",
    )
