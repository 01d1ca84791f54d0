"""The release manifest: every artifact with its sha256 and origin, the verdicts, the tools."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder import __version__
from builder.core import run
from builder.core.atomic import write_text
from builder.core.digest import sha256_file
from builder.core.errors import CommandError, PfbuildError
from builder.core.schema import NON_EMPTY, SHA256, validate
from builder.model.loader import load_recipe, recipe_origin
from builder.pipeline.actions import Outputs
from builder.pipeline.request import ReleaseRequest

log = logging.getLogger("pfbuild")

TOOLS = ("sbuild", "mmdebstrap", "aptly", "gpg", "lintian", "blhc", "devscripts", "docker.io")


def tool_versions() -> dict[str, str]:
    """Installed versions of the Debian tools a release runs."""
    versions = {}
    for package in TOOLS:
        try:
            versions[package] = run.output(["dpkg-query", "-W", "-f", "${Version}", package])
        except (CommandError, PfbuildError):
            versions[package] = "not installed"
    return versions


# ---- the manifest --------------------------------------------------------------------------


def recipe_origins(main: str) -> list[dict[str, Any]]:
    """Which file each recipe of the release came from (site recipes are code the user ran)."""
    names = [main, *(name for name, _ in load_recipe(main).companions)]
    return [recipe_origin(name).as_json() for name in names]


def build_manifest(
    request: ReleaseRequest, outputs: Mapping[str, Outputs], planned_keys: Mapping[str, str]
) -> dict[str, Any]:
    """Everything a release made, with hashes and origins, from the actions' recorded outputs."""
    artifacts: list[dict[str, str]] = []
    actions: dict[str, Any] = {}
    for name, out in outputs.items():
        actions[name] = {"key": planned_keys.get(name, ""), "outputs": out}
        for entry in _walk_files(out):
            artifacts.append(entry)
    unique = {e["path"]: e for e in artifacts}
    attested = outputs.get("attest")
    return {
        **({"attestations": _attestations(attested)} if attested else {}),
        "pfbuild": __version__,
        "recipe": request.recipe,
        "version": request.version,
        "targets": [d.name for d in request.targets],
        "variants": list(request.variants) if request.images else [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tools": tool_versions(),
        "recipes": recipe_origins(request.recipe),
        # Borrowed packaging, a newer point release: what the release's user should know.
        "notes": list(load_recipe(request.recipe).release_notes(request.version)),
        "actions": actions,
        "artifacts": sorted(unique.values(), key=lambda e: e["path"]),
    }


def _attestations(outputs: Outputs) -> dict[str, Any]:
    """Where the release's provenance and SBOMs are published, with their sha256."""
    return {
        "folder": outputs.get("folder"),
        "provenance": outputs.get("provenance"),
        "sboms": list(outputs.get("sboms", [])),
        "image_statements": list(outputs.get("image_statements", [])),
        "image_signatures": list(outputs.get("image_signatures", [])),
        **({"cosign_key": outputs["cosign_key"]} if "cosign_key" in outputs else {}),
    }


def _walk_files(value: Any) -> list[dict[str, str]]:
    if isinstance(value, dict):
        if set(value) >= {"path", "sha256"} and isinstance(value["path"], str):
            return [{"path": value["path"], "sha256": str(value["sha256"])}]
        return [e for v in value.values() for e in _walk_files(v)]
    if isinstance(value, list):
        return [e for v in value for e in _walk_files(v)]
    return []


def _source_dsc_sha256(manifest: Mapping[str, Any], target: str) -> str | None:
    name = f"source {manifest.get('recipe')} {manifest.get('version')} {target}"
    files = manifest.get("actions", {}).get(name, {}).get("outputs", {}).get("files", [])
    return next((f["sha256"] for f in files if f["path"].endswith(".dsc")), None)


def carried_reproducibility(previous: Any, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The `verify-reproducible` results of the previous manifest that still apply.

    A result is about one .dsc: it is kept while the release's source of that target is the
    same .dsc, and dropped once the source changed (its builds are not the ones it measured).
    """
    if not isinstance(previous, dict) or not isinstance(previous.get("reproducible"), dict):
        return {}
    kept = {
        target: result
        for target, result in previous["reproducible"].items()
        if isinstance(result, dict)
        and result.get("dsc_sha256") is not None
        and result.get("dsc_sha256") == _source_dsc_sha256(manifest, target)
    }
    return {"reproducible": kept} if kept else {}


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    """Write the manifest atomically, keeping the reproducibility results that still apply."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = None
    if "reproducible" not in manifest:
        manifest = {**carried_reproducibility(previous, manifest), **manifest}
    write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pfbuild", "recipe", "version", "targets", "actions", "artifacts"],
    "properties": {
        "pfbuild": NON_EMPTY,
        "recipe": NON_EMPTY,
        "version": NON_EMPTY,
        "targets": {"type": "array", "items": NON_EMPTY},
        "actions": {"type": "object"},
        "artifacts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["path", "sha256"],
                "properties": {"path": NON_EMPTY, "sha256": SHA256},
            },
        },
    },
}


def read_manifest(path: Path) -> dict[str, Any]:
    """A release manifest, read and checked against its schema."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PfbuildError(
            f"cannot read manifest {path}",
            getattr(exc, "strerror", None) or str(exc),
            "pass the manifest a release wrote",
        ) from None
    validate(manifest, MANIFEST_SCHEMA, f"manifest {path}", "pass the manifest a release wrote")
    result: dict[str, Any] = manifest
    return result


def verify_manifest(path: Path) -> list[str]:
    """Re-hash every artifact a manifest names; return the problems (empty when all match)."""
    problems = []
    for entry in read_manifest(path)["artifacts"]:
        artifact = Path(entry["path"])
        if not artifact.is_file():
            problems.append(f"missing: {artifact}")
        elif sha256_file(artifact) != entry["sha256"]:
            problems.append(f"changed: {artifact}")
    return problems
