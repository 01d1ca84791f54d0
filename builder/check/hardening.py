"""The hardening report: every ELF in every built .deb, judged against the recipe's expectations."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.check.blhc import (
    BLHC_FLAG_PROPERTY,
    BlhcResult,
    LogEvidence,
    LogScan,
    evidence_for,
    run_blhc,
    scan_build_log,
)
from builder.check.elf import ElfFacts, count_endbr64, inspect_elf, is_elf
from builder.core import run
from builder.core.atomic import write_text
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.model.recipe import HARDENING_PROPERTIES

log = logging.getLogger("pfbuild")

PROPERTIES = HARDENING_PROPERTIES
YES, NO, NA, UNAVAILABLE, UNKNOWN = "yes", "no", "n/a", "unavailable", "unknown"
# Statuses that fail an expected property; "unknown" fails too: what cannot be proven is missing.
FAILING = (NO, UNKNOWN)
LINTIAN_TIMEOUT = 900.0
HARDENING_CHECK_TIMEOUT = 600.0


@dataclass(frozen=True)
class ToolchainLimit:
    """A property a target's toolchain cannot give, and why, in words for the report."""

    prop: str
    reason: str


# Facts about each target's toolchain, as data: checked in the report, never silently assumed.
TOOLCHAIN_LIMITS: dict[str, tuple[ToolchainLimit, ...]] = {
    "trixie": (
        ToolchainLimit(
            "cet",
            "trixie's glibc start files (crt1.o, crti.o) carry no IBT/SHSTK GNU property notes, "
            "so the linker drops the CET markers from every binary; the report shows instead "
            "that the code is instrumented (endbr64 landing pads from -fcf-protection)",
        ),
    ),
}
TARGET_NOTES: dict[str, str] = {
    "resolute": "resolute: Ubuntu's glibc start files carry IBT and SHSTK properties, so every "
    "binary built with -fcf-protection must carry both markers (readelf -n: "
    "'x86 feature: IBT, SHSTK'); a missing marker is a failure when CET is expected.",
}
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
class Finding:
    """One property of one ELF file: a status from the fixed vocabulary and the evidence."""

    status: str
    detail: str


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


def validate_expected(expected: frozenset[str]) -> None:
    """Refuse property names outside the fixed vocabulary."""
    unknown = sorted(expected - set(PROPERTIES))
    if unknown:
        raise PfbuildError(
            f"unknown hardening propert{'y' if len(unknown) == 1 else 'ies'}: {', '.join(unknown)}",
            f"expected hardening uses the names {', '.join(PROPERTIES)}",
            "fix expected_hardening in the recipe",
        )


def _examples(compiles: list[str]) -> str:
    shown = ", ".join(dict.fromkeys(compiles[:3]))
    return shown + (", ..." if len(compiles) > 3 else "")


def _from_log(evidence: LogEvidence, prop: str) -> Finding:
    """A compile-line property: in force on every compile line that went into the file?"""
    lines = evidence.compiles
    if not lines:
        return Finding(UNKNOWN, f"cannot prove: {evidence.scope}")
    if prop == "fortify3":
        bad = [c.source for c in lines if c.fortify < 3]
        levels = sorted({c.fortify for c in lines if c.fortify < 3})
        what = f"_FORTIFY_SOURCE level {'/'.join(map(str, levels))} in force"
    elif prop == "stackclash":
        bad = [c.source for c in lines if not c.stack_clash]
        what = "no -fstack-clash-protection"
    else:
        bad = [c.source for c in lines if c.stack_protector not in ("strong", "all")]
        what = "no -fstack-protector-strong"
    if bad:
        return Finding(NO, f"{what} on {len(bad)} of {len(lines)} compile lines: {_examples(bad)}")
    return Finding(YES, f"on all {len(lines)} compile lines ({evidence.scope})")


def _cet_finding(facts: ElfFacts, dist: Distribution, endbr64: int | None) -> Finding:
    missing = [f for f in ("IBT", "SHSTK") if f not in facts.x86_features]
    if not missing:
        return Finding(YES, "GNU property notes: x86 feature: IBT, SHSTK")
    limit = next((x for x in TOOLCHAIN_LIMITS.get(dist.name, ()) if x.prop == "cet"), None)
    if limit is not None and endbr64:
        return Finding(
            UNAVAILABLE,
            f"unavailable: toolchain ({dist.name} start files lack IBT/SHSTK notes); "
            f"code instrumented: {endbr64} endbr64 instructions",
        )
    instrumented = f"{endbr64} endbr64 instructions" if endbr64 is not None else "not counted"
    return Finding(NO, f"no {' and no '.join(missing)} marker; {instrumented}")


def judge_elf(
    facts: ElfFacts, evidence: LogEvidence, dist: Distribution, endbr64: int | None
) -> dict[str, Finding]:
    """Every property of one ELF file, from readelf facts and the build log's compile lines."""
    findings: dict[str, Finding] = {}
    if facts.is_executable:
        findings["pie"] = (
            Finding(YES, "ELF type DYN, DT_FLAGS_1 PIE")
            if facts.is_pie
            else Finding(NO, f"ELF type {facts.elf_type}, DT_FLAGS_1 {' '.join(facts.dt_flags_1)}")
        )
    else:
        findings["pie"] = Finding(NA, "shared library: position independent by nature")
    findings["relro"] = (
        Finding(YES, "GNU_RELRO program header")
        if facts.has_relro
        else Finding(NO, "no GNU_RELRO program header")
    )
    findings["bindnow"] = (
        Finding(YES, "DT_FLAGS BIND_NOW / DT_FLAGS_1 NOW")
        if facts.is_bind_now
        else Finding(NO, "neither DT_FLAGS BIND_NOW nor DT_FLAGS_1 NOW (lazy binding)")
    )
    findings["nxstack"] = (
        Finding(YES, f"GNU_STACK {facts.stack_flags}")
        if facts.is_nx_stack
        else Finding(NO, f"GNU_STACK {facts.stack_flags or 'missing'}: executable stack")
    )
    from_log = _from_log(evidence, "stackprotector")
    if facts.stack_chk_imported:
        findings["stackprotector"] = Finding(YES, "imports __stack_chk_fail")
    elif from_log.status == YES:
        findings["stackprotector"] = Finding(
            YES,
            "no __stack_chk_fail import: no function needed a canary; -fstack-protector-strong "
            + from_log.detail,
        )
    else:
        findings["stackprotector"] = Finding(
            from_log.status, f"no __stack_chk_fail import; {from_log.detail}"
        )
    fortify = _from_log(evidence, "fortify3")
    chk = facts.fortified_imports
    calls = f"{len(chk)} *_chk imports" if chk else "no *_chk import (no checkable call)"
    findings["fortify3"] = Finding(fortify.status, f"{fortify.detail}; {calls}")
    findings["stackclash"] = _from_log(evidence, "stackclash")
    findings["cet"] = _cet_finding(facts, dist, endbr64)
    return findings


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


def deb_extract_cmdline(deb: Path, dest: Path) -> list[str]:
    """Unpack a .deb's files (not its control area) under `dest`."""
    return ["dpkg-deb", "-x", str(deb), str(dest)]


def _is_debug_deb(deb: Path) -> bool:
    return deb.suffix == ".ddeb" or "-dbgsym_" in deb.name


def _collect_elves(debs: list[Path], root: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Unpack every .deb under `root`: (deb name, ELF, unpacked root) triples and skips."""
    elves: list[tuple[str, Path, Path]] = []
    skipped: list[str] = []
    for index, deb in enumerate(debs):
        dest = root / str(index)
        run.run(deb_extract_cmdline(deb, dest))
        found = sorted(p for p in dest.rglob("*") if is_elf(p))
        if _is_debug_deb(deb):
            if found:
                skipped.append(
                    f"{deb.name}: {len(found)} separated debug file(s), no code to check"
                )
            continue
        elves += [(deb.name, p, dest) for p in found]
    return elves, skipped


def _build_log_summary(log_path: Path, scan: LogScan, arch: str) -> BuildLogSummary:
    if not log_path.is_file():
        return BuildLogSummary(None, 0, 0, {}, None)
    levels = Counter(str(c.fortify) for c in scan.compiles)
    return BuildLogSummary(
        str(log_path), len(scan.compiles), len(scan.links), dict(levels), run_blhc(log_path, arch)
    )


def _log_failures(summary: BuildLogSummary, expected: frozenset[str]) -> list[str]:
    """blhc's complaints about flags that stand for an expected property."""
    blhc = summary.blhc
    if blhc is None:
        return []
    by_flag: Counter[str] = Counter(
        flag
        for finding in blhc.findings
        for flag in finding.flags
        if BLHC_FLAG_PROPERTY.get(flag) in expected
    )
    failures = [
        f"build log: blhc finds {flag} missing on {count} command line(s)"
        for flag, count in sorted(by_flag.items())
    ]
    log_props = {"fortify3", "stackclash", "stackprotector"} & expected
    if blhc.nonverbose and log_props:
        failures.append(
            f"build log: {blhc.nonverbose} compiler command(s) hidden (non-verbose build), so "
            f"{', '.join(sorted(log_props))} cannot be proven for them"
        )
    return failures


def toolchain_notes(dist: Distribution) -> tuple[str, ...]:
    """What this target's toolchain can and cannot give, in words for the report."""
    notes = [
        f"{dist.name}: {limit.prop} unavailable: {limit.reason}"
        for limit in TOOLCHAIN_LIMITS.get(dist.name, ())
    ]
    if dist.name in TARGET_NOTES:
        notes.append(TARGET_NOTES[dist.name])
    return tuple(notes)


def _hardening_check_views(paths: list[Path]) -> dict[str, dict[str, str]]:
    """hardening-check's verdicts for every file at once (one process, not one per file)."""
    if not paths:
        return {}
    proc = run.run(hardening_check_cmdline(paths), check=False, timeout=HARDENING_CHECK_TIMEOUT)
    return parse_hardening_check(proc.stdout.decode(errors="replace"))


def _judge_files(
    elves: list[tuple[str, Path, Path]], scan: LogScan, dist: Distribution
) -> tuple[list[ElfReport], list[str]]:
    """One ElfReport per (deb, path, unpacked root); object files are skipped and said so."""
    programs: list[tuple[str, Path, str, ElfFacts]] = []
    skipped: list[str] = []
    for deb, path, root in elves:
        facts = inspect_elf(path)
        rel = "/" + path.relative_to(root).as_posix()
        if facts.elf_type in ("DYN", "EXEC"):
            programs.append((deb, path, rel, facts))
        else:
            skipped.append(f"{deb}: {rel} is an ELF {facts.elf_type} file, not a program")
    views = _hardening_check_views([path for _, path, _, _ in programs])
    reports = []
    for deb, path, rel, facts in programs:
        # Counting landing pads is only needed where the markers are absent.
        endbr64 = None if "IBT" in facts.x86_features else count_endbr64(path)
        evidence = evidence_for(scan, path.name)
        findings = judge_elf(facts, evidence, dist, endbr64)
        view = views.get(str(path), {})
        reports.append(
            ElfReport(
                deb=deb,
                path=rel,
                kind="executable" if facts.is_executable else "shared library",
                findings=findings,
                log_scope=evidence.scope,
                endbr64=endbr64,
                hardening_check=view,
                hardening_check_notes=explain_hardening_check(view, findings),
            )
        )
    return reports, skipped


def check_build(
    ctx: Context,
    build_dir: Path,
    dist: Distribution,
    arch: str,
    expected: frozenset[str],
    *,
    lintian: bool = True,
) -> HardeningReport:
    """Judge every ELF in every .deb of one target's build against the expected properties."""
    validate_expected(expected)
    debs = sorted([*build_dir.glob("*.deb"), *build_dir.glob("*.ddeb")])
    if not debs:
        raise PfbuildError(
            f"no .deb files in {build_dir}",
            "the hardening check reads the packages a build produced",
            "run `pfbuild build` for this recipe, version and target first",
        )
    log.info("checking hardening of %d package(s) for %s", len(debs), dist.name)
    log_path = build_dir / "build.log"
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    scan = scan_build_log(text)
    with tempfile.TemporaryDirectory(dir=ctx.tmp_dir, prefix="hardening-") as tmp:
        root = Path(tmp)
        elves, skipped = _collect_elves(debs, root)
        reports, more_skipped = _judge_files(elves, scan, dist)
    summary = _build_log_summary(log_path, scan, arch)
    failures: list[str] = []
    offending: list[str] = []
    for row in reports:
        for prop in PROPERTIES:
            finding = row.findings[prop]
            if prop in expected and finding.status in FAILING:
                failures.append(f"{row.path} ({row.deb}): {prop} missing: {finding.detail}")
                offending.append(row.path)
    log_failures = _log_failures(summary, expected)
    if log_failures:
        failures += log_failures
        offending.append(str(log_path))
    lintian_result = (
        run_lintian(build_dir, dist)
        if lintian
        else LintianResult((), False, "not run: skipped on request", ())
    )
    log.info(
        "hardening of %s: %d ELF file(s), %d failure(s)", dist.name, len(reports), len(failures)
    )
    return HardeningReport(
        target=dist.name,
        arch=arch,
        expected=tuple(p for p in PROPERTIES if p in expected),
        verdict="fail" if failures else "pass",
        failures=tuple(failures),
        offending_files=tuple(dict.fromkeys(offending)),
        toolchain_notes=toolchain_notes(dist),
        debs=tuple(d.name for d in debs),
        skipped=tuple(skipped + more_skipped),
        elves=tuple(reports),
        build_log=summary,
        lintian=lintian_result,
    )


_SHORT = {YES: "yes", NO: "NO", NA: "n/a", UNAVAILABLE: "unavail", UNKNOWN: "?"}
_HEADINGS = {
    "pie": "PIE", "relro": "RELRO", "bindnow": "BINDNOW", "nxstack": "NX",
    "stackprotector": "SSP", "fortify3": "FORTIFY3", "stackclash": "CLASH", "cet": "CET",
}  # fmt: skip


def format_table(report: HardeningReport) -> str:
    """The report as text a person can read: notes, one row per ELF, failures, tool views."""
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
    lines += ["", "hardening-check's view (not a gate; its blind spots explained):"]
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
    summary = report.build_log
    lines += ["", f"build log: {summary.path or 'none'}"]
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
    lines += ["", f"lintian: {report.lintian.note}"]
    counts = Counter(t.severity for t in report.lintian.tags)
    if counts:
        lines.append("  " + ", ".join(f"{sev}: {n}" for sev, n in sorted(counts.items())))
    errors: dict[str, list[LintianTag]] = {}
    for tag in report.lintian.tags:
        if tag.severity == "E":
            errors.setdefault(tag.tag, []).append(tag)
    for name, tags in errors.items():
        packages = ", ".join(dict.fromkeys(t.package for t in tags))
        lines.append(f"  E: {name} ({len(tags)}x: {packages}) {tags[0].context}".rstrip())
    if report.skipped:
        lines += ["", "skipped:", *[f"  {s}" for s in report.skipped]]
    return "\n".join(lines) + "\n"


def write_report(report: HardeningReport, report_dir: Path) -> None:
    """Write hardening.json and hardening.txt, each atomically."""
    write_text(report_dir / "hardening.json", report.to_json())
    write_text(report_dir / "hardening.txt", format_table(report))


def require_passed(report: HardeningReport, report_dir: Path) -> None:
    """Raise a one-line PfbuildError naming the offending files when the report failed."""
    if report.verdict == "pass":
        return
    files = list(report.offending_files)
    named = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
    raise PfbuildError(
        f"hardening check failed for {report.target}: expected hardening missing in {named}",
        f"{len(report.failures)} problem(s), first: {report.failures[0]}",
        f"see {report_dir / 'hardening.txt'}",
    )
