"""The SLSA v1 provenance predicate of a release, from what its actions recorded.

buildDefinition says what was asked (recipe, version, targets, variants), how (jobs, signing
key, companions) and from what: the recipe files, every fetched source with how it was verified
and what it was verified against, the source packages made here, the packaging templates, the
base chroots and base images, and pfbuild's own revision. runDetails says who built it (this
host, or the GitHub Actions run) and when.
"""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from builder import __version__
from builder.core.digest import hash_tree
from builder.model.loader import recipe_origin
from builder.model.recipe import Recipe, template_root
from builder.pipeline.actions import Outputs
from builder.publish.attestations import BUILD_TYPE

LOCAL_BUILDER = "https://pfbuild.invalid/builder/host/"
PFBUILD_SOURCE = "https://github.com/pfbuild/pfbuild"


def rfc3339(epoch: float) -> str:
    """A Unix time as an RFC 3339 UTC stamp."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def templates_sha256(recipe: Recipe) -> str:
    """Every template the recipe renders (its own folder and the shared ones), as one sha256."""
    root = template_root()
    parts = [hash_tree(root / "common")] if (root / "common").is_dir() else []
    if recipe.templates:
        parts.append(hash_tree(root / recipe.templates))
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def builder_identity(environ: Mapping[str, str], hostname: str | None = None) -> tuple[str, str]:
    """(builder id, invocation id): the GitHub Actions run when there is one, else this host."""
    server = environ.get("GITHUB_SERVER_URL")
    repository = environ.get("GITHUB_REPOSITORY")
    run_id = environ.get("GITHUB_RUN_ID")
    if server and repository and run_id:
        run_url = f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
        return run_url, f"{run_url}/attempts/{environ.get('GITHUB_RUN_ATTEMPT', '1')}"
    host = hostname or socket.gethostname()
    return f"{LOCAL_BUILDER}{host}", f"urn:uuid:{uuid.uuid4()}"


def resource(
    name: str,
    *,
    uri: str = "",
    digest: Mapping[str, str] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An in-toto ResourceDescriptor."""
    entry: dict[str, Any] = {"name": name}
    if uri:
        entry["uri"] = uri
    if digest:
        entry["digest"] = dict(digest)
    if annotations:
        entry["annotations"] = dict(annotations)
    return entry


def recipe_resources(names: Sequence[str]) -> list[dict[str, Any]]:
    """The recipe files the release loaded (a site recipe is code the user ran)."""
    found = []
    for name in names:
        origin = recipe_origin(name)
        found.append(
            resource(
                f"recipe {name}",
                uri=origin.path.as_uri(),
                digest={"sha256": origin.sha256},
                annotations={"site": origin.site, "shadowsBuiltin": origin.shadows},
            )
        )
    return found


def fetched_resources(
    recipe: str, version: str, files: Sequence[Mapping[str, str]], anchor: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every fetched source with how it was verified and the trust anchor it was checked against.

    The upstream tarball names the pinned key's fingerprint; the Debian packaging (.dsc and its
    files) names the pinned .dsc hash or archive keyring it was proven through.
    """
    found = []
    for entry in files:
        notes: dict[str, Any] = {
            "recipe": f"{recipe} {version}",
            "role": entry["role"],
            "verifiedBy": entry["verified_by"],
        }
        if entry["role"].startswith("upstream") and "upstream_fingerprint" in anchor:
            notes["signingKeyFingerprint"] = anchor["upstream_fingerprint"]
        elif not entry["role"].startswith("upstream"):
            notes["trustAnchor"] = {k: v for k, v in anchor.items() if k != "upstream_fingerprint"}
        found.append(
            resource(entry["name"], uri=entry["url"], digest={"sha256": entry["sha256"]},
                     annotations=notes)
        )  # fmt: skip
    return found


def source_resources(target: str, files: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """The source package made here for one target (.dsc and the files it names)."""
    return [
        resource(
            f"{target}/{Path(f['path']).name}",
            digest={"sha256": f["sha256"]},
            annotations={"role": "source-package", "target": target},
        )
        for f in files
    ]


def pfbuild_resource(revision: str) -> dict[str, Any]:
    """pfbuild itself, at the checkout's commit."""
    if revision == "unknown":
        return resource("pfbuild", annotations={"version": __version__})
    return resource(
        "pfbuild",
        uri=f"git+{PFBUILD_SOURCE}@{revision}",
        digest={"gitCommit": revision},
        annotations={"version": __version__},
    )


def provenance_predicate(
    *,
    external: Mapping[str, Any],
    internal: Mapping[str, Any],
    dependencies: Sequence[Mapping[str, Any]],
    builder: tuple[str, str],
    started: float,
    finished: float,
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """A SLSA provenance v1 predicate (https://slsa.dev/spec/v1.0/provenance)."""
    builder_id, invocation_id = builder
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": dict(external),
            "internalParameters": dict(internal),
            "resolvedDependencies": [dict(d) for d in dependencies],
        },
        "runDetails": {
            "builder": {"id": builder_id, "version": dict(versions)},
            "metadata": {
                "invocationId": invocation_id,
                "startedOn": rfc3339(started),
                "finishedOn": rfc3339(finished),
            },
        },
    }


def output_files(outputs: Outputs, suffix: str) -> list[Path]:
    """Paths of an action's recorded files that end with `suffix`."""
    return [Path(f["path"]) for f in outputs.get("files", []) if f["path"].endswith(suffix)]
