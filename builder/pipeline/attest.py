"""The release's attest action: SBOMs, signed provenance and image statements, published.

It runs after the image proofs (after publish with --no-image) and reads what the actions
before it recorded: the builds' .debs (matched to the live tree's pool), the fetched sources and
their trust anchors, the source packages, the images' IDs. The files go into the published tree
as `attestations/<recipe>-<version>/`, in one new generation (builder.publish.attestations).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from builder import __version__
from builder.bootstrap.buildenv import chroot_tarball_path
from builder.core.checkout import git_revision
from builder.core.context import Context
from builder.core.digest import file_entry, sha256_file
from builder.core.engine import docker_client
from builder.core.errors import PfbuildError
from builder.fetch.cache import trust_anchor
from builder.image.build import variant_target
from builder.image.sbom import image_id, image_packages_installed
from builder.model.recipe import Recipe
from builder.pipeline.actions import Outputs
from builder.pipeline.manifest import tool_versions
from builder.pipeline.provenance import (
    builder_identity,
    fetched_resources,
    output_files,
    pfbuild_resource,
    provenance_predicate,
    recipe_resources,
    resource,
    source_resources,
    templates_sha256,
)
from builder.pipeline.request import ReleaseRequest
from builder.publish.attestations import (
    COSIGN_KEY_NAME,
    PROVENANCE_NAME,
    CosignSignatures,
    ImageFacts,
    TargetPackages,
    image_cosign_name,
    image_sbom_name,
    image_statement_name,
    make_attestations,
    publish_attestations,
    release_name,
    target_sbom_name,
)
from builder.publish.cosign import (
    cosign_for_signing,
    ensure_cosign_key,
    image_id_blob,
    sign_blob,
    verify_blob,
)
from builder.publish.signing import SigningKey

log = logging.getLogger("pfbuild")

Release = Sequence[tuple[Recipe, str]]


def _rid(recipe: Recipe, version: str) -> str:
    return f"{recipe.name} {version}"


def target_packages(
    request: ReleaseRequest, recipes: Release, deps: Mapping[str, Outputs]
) -> list[TargetPackages]:
    """Each target's built .debs of every recipe of the release."""
    found = []
    for dist in request.targets:
        debs = [
            deb
            for recipe, version in recipes
            if dist.name in recipe.binary_packages
            for deb in output_files(deps[f"build {_rid(recipe, version)} {dist.name}"], ".deb")
        ]
        found.append(TargetPackages(dist.name, dist.vendor, dist.arch, tuple(sorted(debs))))
    return found


def image_facts(
    client: docker.DockerClient, request: ReleaseRequest, deps: Mapping[str, Outputs]
) -> list[ImageFacts]:
    """Each image the release built, with what dpkg in it says is installed."""
    found = []
    for variant in request.variants:
        built = deps[f"image {variant}"]
        name, _, version = str(built["tags"][-1]).rpartition(":")
        records = image_packages_installed(client, str(built["image_id"]))
        vendor = variant_target(variant).vendor
        found.append(
            ImageFacts(variant, name, version, str(built["image_id"]), vendor, tuple(records))
        )
    return found


def _environment_resources(
    ctx: Context, request: ReleaseRequest, client: docker.DockerClient | None
) -> list[dict[str, Any]]:
    """The base chroot tarball of each target and, with images, each variant's base image."""
    found = []
    for dist in request.targets:
        tarball = chroot_tarball_path(ctx, dist)
        if tarball.is_file():
            found.append(
                resource(f"base chroot {dist.name}", uri=tarball.as_uri(),
                         digest={"sha256": sha256_file(tarball)})
            )  # fmt: skip
    if client is None:
        return found
    for variant in request.variants:
        dist = variant_target(variant)
        try:
            ref = json.loads((ctx.images_dir / f"base-{dist.name}.json").read_text())["ref"]
            digest = image_id(client, str(ref)).removeprefix("sha256:")
        except (OSError, ValueError, KeyError, PfbuildError):
            continue  # a base image from elsewhere (--base-image) has no record here
        found.append(resource(f"base image {variant}", uri=str(ref), digest={"sha256": digest}))
    return found


def _deps_chroots(
    request: ReleaseRequest, recipes: Release, deps: Mapping[str, Outputs]
) -> list[dict[str, Any]]:
    """The build-deps chroot each build ran in, with the packages it had installed."""
    found = []
    for recipe, version in recipes:
        for dist in request.targets:
            name = f"build {_rid(recipe, version)} {dist.name}"
            if name not in deps:
                continue
            try:
                record = json.loads((Path(deps[name]["dir"]) / "result.json").read_text())
                chroot = record["deps"]
            except (OSError, ValueError, KeyError):
                continue
            found.append(
                resource(f"build-deps chroot {recipe.name} {dist.name}",
                         annotations={"key": chroot.get("key"),
                                      "packages": list(chroot.get("resolved", []))})
            )  # fmt: skip
    return found


def release_predicate(
    ctx: Context,
    request: ReleaseRequest,
    recipes: Release,
    deps: Mapping[str, Outputs],
    key: SigningKey,
    client: docker.DockerClient | None,
    started: float,
) -> dict[str, Any]:
    """The SLSA provenance predicate of this release."""
    dependencies = recipe_resources([r.name for r, _ in recipes])
    for recipe, version in recipes:
        rid = _rid(recipe, version)
        fetched = deps[f"fetch {rid}"]["files"]
        dependencies += fetched_resources(
            recipe.name, version, fetched, trust_anchor(recipe, version)
        )
        dependencies.append(
            resource(f"templates {recipe.name}", digest={"sha256": templates_sha256(recipe)})
        )
        for dist in request.targets:
            source = deps.get(f"source {rid} {dist.name}")
            if source is not None:
                dependencies += source_resources(dist.name, source["files"])
    dependencies += _environment_resources(ctx, request, client)
    dependencies += _deps_chroots(request, recipes, deps)
    revision = git_revision()
    dependencies.append(pfbuild_resource(revision))
    external = {
        "recipe": request.recipe,
        "version": request.version,
        "targets": [d.name for d in request.targets],
        "variants": list(request.variants) if request.images else [],
        "repositoryUrl": request.repo_url,
    }
    internal = {
        "jobs": request.jobs,
        "signingKey": key.fingerprint,
        "recipes": [[r.name, v] for r, v in recipes],
    }
    versions = {"pfbuild": __version__, "pfbuild-revision": revision, **tool_versions()}
    return provenance_predicate(
        external=external,
        internal=internal,
        dependencies=dependencies,
        builder=builder_identity(os.environ),
        started=started,
        finished=datetime.now(UTC).timestamp(),
        versions=versions,
    )


def sign_images(
    ctx: Context, images: Sequence[ImageFacts], key_file: Path | None
) -> CosignSignatures:
    """cosign's signature of each image's ID (a blob: no registry holds these images)."""
    cosign = cosign_for_signing(ctx)
    key = ensure_cosign_key(ctx, cosign, key_file)
    public = key.public.read_bytes()
    signatures = {}
    for image in images:
        blob = image_id_blob(image.image_id)
        signature = sign_blob(cosign, key, blob, ctx.tmp_dir)
        # Checked as a consumer will before it is published: a bad signature never leaves here.
        verify_blob(cosign, public, signature, blob, ctx.tmp_dir)
        signatures[image.variant] = signature
        log.info("%s: image %s signed with cosign (%s)", image.variant, image.image_id[:19],
                 cosign.where)  # fmt: skip
    return CosignSignatures(public, signatures)


def attest_release(
    ctx: Context,
    request: ReleaseRequest,
    recipes: Release,
    deps: Mapping[str, Outputs],
    key: SigningKey,
    started: float,
) -> Outputs:
    """Make the release's attestations, publish them beside the repository, say where."""
    tree = ctx.apt_tree.resolve()
    targets = target_packages(request, recipes, deps)
    client = docker_client(ctx) if request.images else None
    images = image_facts(client, request, deps) if client is not None else []
    predicate = release_predicate(ctx, request, recipes, deps, key, client, started)
    cosign = sign_images(ctx, images, request.cosign_key) if images else None
    files = make_attestations(
        tree, key, recipe=request.recipe, version=request.version, targets=targets,
        images=images, predicate=predicate, created=datetime.now(UTC), cosign=cosign,
    )  # fmt: skip
    folder = publish_attestations(ctx, release_name(request.recipe, request.version), files)
    return {
        "folder": str(folder),
        "provenance": file_entry(folder / PROVENANCE_NAME),
        "sboms": [file_entry(folder / target_sbom_name(t.suite)) for t in targets]
        + [file_entry(folder / image_sbom_name(i.variant)) for i in images],
        "image_statements": [file_entry(folder / image_statement_name(i.variant)) for i in images],
        "image_signatures": [file_entry(folder / image_cosign_name(i.variant)) for i in images],
        **({"cosign_key": file_entry(folder / COSIGN_KEY_NAME)} if images else {}),
        "key": key.fingerprint,
    }
