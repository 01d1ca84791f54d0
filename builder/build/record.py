"""The record of one verify-reproducible run: its JSON report and its release-manifest entry."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder.build.buildlog import ObservedBuild, describe_variations
from builder.build.compare import DebComparison, diffoscope_version, not_compared
from builder.build.variation import NOT_VARIED, NOTES
from builder.core.atomic import write_json
from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError

log = logging.getLogger("pfbuild")

REPORT_NAME = "reproducible.json"
REPORTS_DIR = "reproducible"


@dataclass(frozen=True)
class Verification:
    """The outcome of one verify-reproducible run for one target."""

    target: str
    verdict: str
    debs: tuple[DebComparison, ...]
    findings: Mapping[str, Mapping[str, Any]]
    no_diffoscope: str | None
    report: Path
    manifest: Path | None
    record: Mapping[str, Any]


def verdict_of(pairs: Sequence[DebComparison]) -> str:
    """reproducible when every .deb of both builds is identical."""
    if pairs and all(p.verdict == "identical" for p in pairs):
        return "reproducible"
    return "unreproducible"


def _build_record(build: ObservedBuild) -> dict[str, Any]:
    result, facts = build.result, build.facts
    return {
        "dir": str(result.out_dir),
        "key": result.key,
        "reused": result.reused,
        "log": str(result.log_path),
        "build_path": facts.build_path,
        "jobs": facts.jobs,
    }


def make_record(
    recipe: str,
    version: str,
    target: str,
    dsc: Path,
    *,
    a: ObservedBuild,
    b: ObservedBuild,
    pairs: Sequence[DebComparison],
    findings: Mapping[str, Mapping[str, Any]],
    no_diffoscope: str | None,
) -> dict[str, Any]:
    """The whole result as JSON data: both builds, the variations, every .deb's verdict."""
    return {
        "recipe": recipe,
        "version": version,
        "target": target,
        "checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dsc": {"name": dsc.name, "sha256": sha256_file(dsc)},
        "verdict": verdict_of(pairs),
        "build_a": _build_record(a),
        "build_b": _build_record(b),
        "variations": [asdict(v) for v in describe_variations(a.facts, b.facts)],
        "not_varied": [{"name": n, "why": why} for n, why in NOT_VARIED],
        "notes": list(NOTES),
        "not_compared": not_compared(a.result.files),
        "debs": [
            {
                "name": p.name,
                "verdict": p.verdict,
                "a_sha256": p.a_sha256,
                "b_sha256": p.b_sha256,
                **({"diffoscope": findings[p.name]} if p.name in findings else {}),
            }
            for p in pairs
        ],
        "diffoscope": {
            "version": diffoscope_version() if findings else None,
            "why_none": no_diffoscope,
        },
    }


def manifest_summary(record: Mapping[str, Any], report: Path) -> dict[str, Any]:
    """The short form of a result that goes into the release manifest."""
    debs = record["debs"]
    return {
        "verdict": record["verdict"],
        "checked": record["checked"],
        "dsc_sha256": record["dsc"]["sha256"],
        "identical": sorted(d["name"] for d in debs if d["verdict"] == "identical"),
        "differing": sorted(d["name"] for d in debs if d["verdict"] != "identical"),
        "variations": [v["name"] for v in record["variations"] if v["applied"]],
        "not_applied": [v["name"] for v in record["variations"] if not v["applied"]],
        "report": str(report),
    }


def merge_into_manifest(path: Path, target: str, summary: Mapping[str, Any]) -> bool:
    """Set manifest["reproducible"][target]; False (and nothing written) without a manifest."""
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise PfbuildError(
            f"cannot read the release manifest {path}",
            str(exc),
            "run `pfbuild release` again to rewrite it, or remove it",
        ) from None
    if not isinstance(manifest, dict):
        raise PfbuildError(f"release manifest {path} is not a JSON object", fix="remove it")
    section = manifest.get("reproducible")
    section = dict(section) if isinstance(section, dict) else {}
    section[target] = dict(summary)
    manifest["reproducible"] = section
    write_json(path, manifest)
    return True


def write_record(ctx: Context, record: Mapping[str, Any]) -> tuple[Path, Path | None]:
    """Write the report, then its summary into the release manifest if there is one."""
    recipe, version, target = record["recipe"], record["version"], record["target"]
    report = ctx.report_dir(recipe, version, target) / REPORT_NAME
    write_json(report, record)
    manifest = ctx.manifest_path(recipe, version)
    if merge_into_manifest(manifest, target, manifest_summary(record, report)):
        return report, manifest
    log.info("%s: no release manifest %s; %s is the record", target, manifest, report)
    return report, None
