"""Judging one ELF file's facts, and its compile lines, against the hardening properties."""

from __future__ import annotations

from dataclasses import dataclass

from builder.check.blhc import LogEvidence
from builder.check.elf import ElfFacts
from builder.check.targets import toolchain_limit
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.model.recipe import HARDENING_PROPERTIES

PROPERTIES = HARDENING_PROPERTIES
YES, NO, NA, UNAVAILABLE, UNKNOWN = "yes", "no", "n/a", "unavailable", "unknown"
# Statuses that fail an expected property; "unknown" fails too: what cannot be proven is missing.
FAILING = (NO, UNKNOWN)


@dataclass(frozen=True)
class Finding:
    """One property of one ELF file: a status from the fixed vocabulary and the evidence."""

    status: str
    detail: str


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
    if toolchain_limit(dist, "cet") is not None and endbr64:
        return Finding(
            UNAVAILABLE,
            f"unavailable: toolchain ({dist.name} start files lack IBT/SHSTK notes); "
            f"code instrumented: {endbr64} endbr64 instructions",
        )
    instrumented = f"{endbr64} endbr64 instructions" if endbr64 is not None else "not counted"
    return Finding(NO, f"no {' and no '.join(missing)} marker; {instrumented}")


def _stackprotector_finding(facts: ElfFacts, evidence: LogEvidence) -> Finding:
    from_log = _from_log(evidence, "stackprotector")
    if facts.stack_chk_imported:
        return Finding(YES, "imports __stack_chk_fail")
    if from_log.status == YES:
        return Finding(
            YES,
            "no __stack_chk_fail import: no function needed a canary; -fstack-protector-strong "
            + from_log.detail,
        )
    return Finding(from_log.status, f"no __stack_chk_fail import; {from_log.detail}")


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
    findings["stackprotector"] = _stackprotector_finding(facts, evidence)
    fortify = _from_log(evidence, "fortify3")
    chk = facts.fortified_imports
    calls = f"{len(chk)} *_chk imports" if chk else "no *_chk import (no checkable call)"
    findings["fortify3"] = Finding(fortify.status, f"{fortify.detail}; {calls}")
    findings["stackclash"] = _from_log(evidence, "stackclash")
    findings["cet"] = _cet_finding(facts, dist, endbr64)
    return findings
