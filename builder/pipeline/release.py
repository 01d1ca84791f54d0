"""`pfbuild release`: fetch → source → build → check → publish → image, as keyed actions."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import __version__
from builder.bootstrap.buildenv import ensure_base_image
from builder.build import sbuild
from builder.build.sbuild import build_package, dsc_files
from builder.check import blhc, elf, hardening
from builder.check.hardening import check_build, require_passed, write_report
from builder.core import run, unpack
from builder.core.atomic import write_text
from builder.core.checkout import DOCKER_DIR, git_revision
from builder.core.context import Context
from builder.core.digest import code_digest, data_digest, file_entry, hash_tree, sha256_file
from builder.core.engine import docker_client
from builder.core.errors import CommandError, PfbuildError
from builder.fetch import archive, sources
from builder.fetch.sources import fetch
from builder.image import build as image
from builder.image import proofs as imagetest
from builder.model import version as version_scheme
from builder.model.distro import TRIXIE, Distribution
from builder.model.recipe import Recipe, load_recipe, template_root
from builder.pipeline.actions import Action, Outputs
from builder.publish import repo as publish
from builder.publish import signing
from builder.source import package as source_package
from builder.source.package import prepare_source

log = logging.getLogger("pfbuild")

TOOLS = ("sbuild", "mmdebstrap", "aptly", "gpg", "lintian", "blhc", "devscripts", "docker.io")


@dataclass(frozen=True)
class ReleaseRequest:
    """What the user asked to release."""

    recipe: str
    version: str
    targets: tuple[Distribution, ...]
    variants: tuple[str, ...]
    images: bool = True
    jobs: int = 1
    repo_url: str = "http://127.0.0.1:8080/"


def tool_versions() -> dict[str, str]:
    """Installed versions of the Debian tools a release runs."""
    versions = {}
    for package in TOOLS:
        try:
            versions[package] = run.output(["dpkg-query", "-W", "-f", "${Version}", package])
        except (CommandError, PfbuildError):
            versions[package] = "not installed"
    return versions


def recipe_digest(recipe: Recipe) -> str:
    """The recipe's data as the engine sees it."""
    return data_digest(recipe)


def templates_digest(recipe: Recipe) -> str:
    """Every template the recipe renders (its own folder and the shared ones)."""
    root = template_root()
    parts = [hash_tree(root / "common")] if (root / "common").is_dir() else []
    if recipe.templates:
        parts.append(hash_tree(root / recipe.templates))
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:20]


def dist_digest(dist: Distribution) -> str:
    """The target's data (archive, components, keyring, suffix)."""
    return data_digest(dist)


# ---- stage runners: each takes the outputs of the actions it needs, returns its own outputs ----


def _fetch(
    ctx: Context, recipe: Recipe, version: str
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_fetch(_deps: Mapping[str, Outputs]) -> Outputs:
        result = fetch(ctx, recipe, version)
        return {
            "files": [
                {
                    "role": f.role,
                    "name": f.name,
                    "path": str(f.path),
                    "sha256": f.sha256,
                    "url": f.url,
                    "verified_by": f.verified_by,
                }
                for f in result.files
            ]
        }

    return run_fetch


def _source(
    ctx: Context, recipe: Recipe, version: str, dist: Distribution
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_source(_deps: Mapping[str, Outputs]) -> Outputs:
        dsc = prepare_source(ctx, recipe, version, dist)
        return {"dsc": str(dsc), "files": [file_entry(p) for p in dsc_files(dsc)]}

    return run_source


def _build(
    ctx: Context, recipe: Recipe, version: str, dist: Distribution, jobs: int
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_build(deps: Mapping[str, Outputs]) -> Outputs:
        (source,) = deps.values()
        out = ctx.build_dir(recipe.name, version, dist.name)
        result = build_package(ctx, recipe.name, Path(source["dsc"]), dist, out, jobs=jobs)
        return {
            "dir": str(out),
            "files": [file_entry(out / name) for name in result.files],
            "log": str(result.log_path),
        }

    return run_build


def _check(
    ctx: Context, recipe: Recipe, version: str, dist: Distribution
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_check(_deps: Mapping[str, Outputs]) -> Outputs:
        expected = frozenset(recipe.expected_hardening[dist.name][dist.arch])
        build_dir = ctx.build_dir(recipe.name, version, dist.name)
        report = check_build(ctx, build_dir, dist, dist.arch, expected)
        report_dir = ctx.report_dir(recipe.name, version, dist.name)
        write_report(report, report_dir)
        require_passed(report, report_dir)
        return {"verdict": report.verdict, "report": str(report_dir / "hardening.json")}

    return run_check


def _publish(
    ctx: Context, request: ReleaseRequest, builds: Sequence[tuple[str, str]]
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_publish(_deps: Mapping[str, Outputs]) -> Outputs:
        key = signing.ensure_signing_key(ctx, signing.SigningConfig())
        try:
            options = publish.PublishOptions(url=request.repo_url)
            states = publish.publish_repo(ctx, request.targets, key, options, builds=builds)
        finally:
            signing.stop_agent(ctx, key)
        tree = publish.tree_link(ctx).resolve()
        changed = {s.suite: s.snapshot for s in states}
        suites = {}
        for dist in request.targets:
            inrelease = tree / "dists" / dist.name / "InRelease"
            suites[dist.name] = {
                "snapshot": changed.get(dist.name, "unchanged"),
                "inrelease": file_entry(inrelease),
            }
        return {"tree": str(tree), "key": key.fingerprint, "suites": suites}

    return run_publish


def release_actions(ctx: Context, request: ReleaseRequest) -> list[Action]:
    """The release graph, in execution order (a pure function of recipes and the request)."""
    main = load_recipe(request.recipe)
    main.validate_version(request.version)
    recipes: list[tuple[Recipe, str]] = [(main, request.version)]
    for name, version in main.companions:
        companion = load_recipe(name)
        companion.validate_version(version)
        recipes.append((companion, version))
    dists = {d.name: d for d in request.targets}
    actions: list[Action] = []
    checks: list[str] = []
    for recipe, version in recipes:
        rid = f"{recipe.name} {version}"
        digest = recipe_digest(recipe)
        actions.append(
            Action(
                f"fetch {rid}", "fetch",
                {"recipe": digest, "version": version, "code": code_digest(sources, archive)},
                run=_fetch(ctx, recipe, version),
            )
        )  # fmt: skip
        for name, dist in dists.items():
            if name not in recipe.binary_packages:
                continue
            inputs = {
                "recipe": digest,
                "templates": templates_digest(recipe),
                "target": dist_digest(dist),
                "code": code_digest(source_package, version_scheme, unpack),
            }
            actions.append(
                Action(f"source {rid} {name}", "source", inputs, (f"fetch {rid}",),
                       run=_source(ctx, recipe, version, dist))
            )  # fmt: skip
            actions.append(
                Action(f"build {rid} {name}", "build", {"code": code_digest(sbuild)},
                       (f"source {rid} {name}",),
                       run=_build(ctx, recipe, version, dist, request.jobs), long=True)
            )  # fmt: skip
            expected = sorted(recipe.expected_hardening[name][dist.arch])
            actions.append(
                Action(f"check {rid} {name}", "check",
                       {"expected": ",".join(expected),
                        "code": code_digest(hardening, elf, blhc)},
                       (f"build {rid} {name}",), run=_check(ctx, recipe, version, dist), long=True)
            )  # fmt: skip
            checks.append(f"check {rid} {name}")
    builds = [(r.name, v) for r, v in recipes]
    actions.append(
        Action("publish", "publish",
               {"targets": ",".join(dists), "url": request.repo_url,
                "code": code_digest(publish, signing)},
               tuple(checks), run=_publish(ctx, request, builds))
    )  # fmt: skip
    if request.images:
        actions.extend(image_actions(ctx, request))
    return actions


def source_date_epoch(build_files: Sequence[Mapping[str, str]]) -> int:
    """SOURCE_DATE_EPOCH as the build recorded it in its .buildinfo (0 when absent)."""
    for entry in build_files:
        if entry["path"].endswith(".buildinfo"):
            text = Path(entry["path"]).read_text()
            match = re.search(r'SOURCE_DATE_EPOCH="?(\d+)"?', text)
            if match:
                return int(match.group(1))
    return 0


def _image(
    ctx: Context, version: str, variant: str, build_action: str
) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_image(deps: Mapping[str, Outputs]) -> Outputs:
        config = image.ImageConfig(
            version=version,
            revision=git_revision(),
            created_epoch=source_date_epoch(deps[build_action]["files"]),
        )
        built = image.build_image(ctx, config, variant)
        return {"image_id": built.image_id, "tags": list(built.tags), "size": built.size}

    return run_image


def _image_test(ctx: Context, variant: str) -> Callable[[Mapping[str, Outputs]], Outputs]:
    def run_image_test(deps: Mapping[str, Outputs]) -> Outputs:
        (built,) = deps.values()
        client = docker_client(ctx)
        tls_client = imagetest.ensure_tls_client_image(client, ensure_base_image(ctx, TRIXIE))
        with tempfile.TemporaryDirectory(prefix="imagetest-", dir=ctx.tmp_dir) as tmp:
            proofs = imagetest.prove_image(client, built["tags"][0], tls_client, scratch=Path(tmp))
        failed = [p for p in proofs if not p.ok]
        if failed:
            raise PfbuildError(
                f"{len(failed)} proof(s) failed for the {variant} image: "
                + ", ".join(p.name for p in failed),
                f"{failed[0].name}: {failed[0].detail}",
                f"run `pfbuild image --variant {variant} --test` to see every proof",
            )
        return {"proofs": [{"name": p.name, "ok": p.ok, "detail": p.detail} for p in proofs]}

    return run_image_test


def image_actions(ctx: Context, request: ReleaseRequest) -> list[Action]:
    """Build and prove one image per variant from the published repository."""
    docker_dir = hash_tree(DOCKER_DIR)
    by_variant = {d.variant: d for d in request.targets}
    actions: list[Action] = []
    for variant in request.variants:
        build_action = f"build {request.recipe} {request.version} {by_variant[variant].name}"
        actions.append(
            Action(f"image {variant}", "image",
                   {"docker": docker_dir, "code": code_digest(image)},
                   ("publish", build_action),
                   run=_image(ctx, request.version, variant, build_action), long=True)
        )  # fmt: skip
        actions.append(
            Action(f"image-test {variant}", "image",
                   {"code": code_digest(imagetest)}, (f"image {variant}",),
                   run=_image_test(ctx, variant), long=True)
        )  # fmt: skip
    return actions


# ---- the manifest --------------------------------------------------------------------------


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
    return {
        "pfbuild": __version__,
        "recipe": request.recipe,
        "version": request.version,
        "targets": [d.name for d in request.targets],
        "variants": list(request.variants) if request.images else [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tools": tool_versions(),
        "actions": actions,
        "artifacts": sorted(unique.values(), key=lambda e: e["path"]),
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


def verify_manifest(path: Path) -> list[str]:
    """Re-hash every artifact a manifest names; return the problems (empty when all match)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PfbuildError(
            f"cannot read manifest {path}", str(exc), "pass the manifest a release wrote"
        ) from None
    problems = []
    for entry in manifest.get("artifacts", []):
        artifact = Path(entry["path"])
        if not artifact.is_file():
            problems.append(f"missing: {artifact}")
        elif sha256_file(artifact) != entry["sha256"]:
            problems.append(f"changed: {artifact}")
    return problems
