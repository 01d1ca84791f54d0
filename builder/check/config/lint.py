"""The configuration gate: every check over one directory, the report, its JSON and its verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.check.config import params, relay, security
from builder.check.config.configdir import PostfixConfig, load_config
from builder.check.config.rules import ERROR, RULES, SEVERITIES, Edit, Finding, render_fix
from builder.core.errors import PfbuildError
from builder.core.schema import NON_EMPTY

CHECKS: tuple[Callable[[PostfixConfig], Iterable[Finding]], ...] = (
    params.check_syntax,
    params.check_parameters,
    params.check_compatibility,
    params.check_bdb,
    security.check_restrictions,
    security.check_dnsbls,
    security.check_milters,
    security.check_tls_protocols,
    security.check_submission,
    relay.check_mynetworks,
    relay.check_relay_restrictions,
)

_FINDING_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rule", "severity", "parameter", "where", "message", "fix", "reference"],
    "properties": {
        "rule": {"enum": sorted(RULES)},
        "severity": {"enum": list(SEVERITIES)},
        "parameter": {"type": "string"},
        "where": NON_EMPTY,
        "message": NON_EMPTY,
        "fix": NON_EMPTY,
        "reference": NON_EMPTY,
    },
}
REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["directory", "postconf_d", "counts", "findings"],
    "properties": {
        "directory": NON_EMPTY,
        "postconf_d": {"type": "boolean"},
        "counts": {
            "type": "object",
            "additionalProperties": False,
            "required": list(SEVERITIES),
            "properties": {s: {"type": "integer", "minimum": 0} for s in SEVERITIES},
        },
        "findings": {"type": "array", "items": _FINDING_SCHEMA},
    },
}


def _line_of(where: str) -> int:
    tail = where.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@dataclass(frozen=True)
class ConfigReport:
    """What the gate found in one directory, errors first."""

    directory: Path
    findings: tuple[Finding, ...]
    postconf_d: bool = False

    def count(self, severity: str) -> int:
        """How many findings have `severity`."""
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[Finding]:
        """The findings that refuse the configuration."""
        return [f for f in self.findings if f.severity == ERROR]

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON document (REPORT_SCHEMA)."""
        return {
            "directory": str(self.directory),
            "postconf_d": self.postconf_d,
            "counts": {s: self.count(s) for s in SEVERITIES},
            "findings": [f.as_json() for f in self.findings],
        }


def combine_fixes(found: list[Finding]) -> list[Finding]:
    """Give the findings that edit the same line one fix with all their edits applied."""
    edits: dict[tuple[str, str, str], list[Edit]] = {}
    for f in found:
        if f.edit:
            edits.setdefault(f.edit.key, []).append(f.edit)
    return [
        dataclasses.replace(f, fix=render_fix(f.edit, edits[f.edit.key]))
        if f.edit and len(edits[f.edit.key]) > 1
        else f
        for f in found
    ]


def lint_config(
    directory: Path, postconf_d: str | None = None, tables: Path | None = None
) -> ConfigReport:
    """Run every check on a Postfix configuration directory.

    `postconf_d` is the output of `postconf -d` from the Postfix that will read this
    configuration; with it, names that Postfix does not know are reported too. `tables` is
    where the files named under $config_directory lie, when not in `directory`.
    """
    cfg = load_config(directory, postconf_d, tables)
    found = combine_fixes([f for check in CHECKS for f in check(cfg)])
    order = {s: i for i, s in enumerate(SEVERITIES)}
    found.sort(key=lambda f: (order[f.severity], f.where.split(":")[0], _line_of(f.where), f.rule))
    return ConfigReport(directory, tuple(found), postconf_d is not None)


def format_finding(f: Finding) -> str:
    """One line: severity, rule, parameter, where, why, the fix."""
    subject = f"{f.parameter} " if f.parameter else ""
    return f"{f.severity} {f.rule} {subject}({f.where}): {f.message}; fix: {f.fix}"


def format_summary(report: ConfigReport) -> str:
    """`DIR: 1 error(s), 2 warning(s), 0 info` or `DIR: no findings`."""
    if not report.findings:
        return f"{report.directory}: no findings"
    counts = ", ".join(f"{report.count(s)} {s}{'' if s == 'info' else '(s)'}" for s in SEVERITIES)
    return f"{report.directory}: {counts}"


def require_no_errors(report: ConfigReport) -> None:
    """Refuse a configuration with any error-severity finding, in one line."""
    errors = report.errors
    if not errors:
        return
    shown = "; ".join(f"{f.rule} {f.parameter} ({f.where})" for f in errors[:3])
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    raise PfbuildError(
        f"{len(errors)} error(s) in {report.directory}",
        shown + more,
        "apply the fixes printed above, then run pfbuild lint-config again",
    )
