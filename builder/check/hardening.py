"""The hardening check: every ELF in every built .deb, judged against the recipe's expectations."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from builder.check.blhc import BLHC_FLAG_PROPERTY, LogScan, evidence_for, run_blhc, scan_build_log
from builder.check.elf import ElfFacts, count_endbr64, inspect_elf, is_elf
from builder.check.judge import FAILING, PROPERTIES, judge_elf, validate_expected
from builder.check.report import BuildLogSummary, ElfReport, HardeningReport
from builder.check.targets import toolchain_notes
from builder.check.tools import (
    LintianResult,
    explain_hardening_check,
    hardening_check_views,
    run_lintian,
)
from builder.core import run
from builder.core.atomic import pid_temp_dir
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")


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
    views = hardening_check_views([path for _, path, _, _ in programs])
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
    with pid_temp_dir(ctx.tmp_dir, "hardening-") as tmp:
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
