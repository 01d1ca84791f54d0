"""Stage image: build a variant's image from the published repository, then prove it.

`pfbuild image` and the release's image and image-test actions call these functions, so a
subcommand and a release build and prove an image the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from builder.bootstrap.buildenv import ensure_base_image
from builder.core.atomic import pid_temp_dir
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.core.errors import PfbuildError
from builder.core.lock import resource_lock
from builder.image.build import (
    BuiltImage,
    ImageConfig,
    assemble_context,
    build_args,
    build_context_dir,
    docker_build,
    image_packages,
    image_tags,
    oci_labels,
    push_tags,
    pushed_digests,
    repo_state,
    require_published,
    serve_repo,
    variant_target,
)
from builder.image.proofs import Proof, prove_image
from builder.image.tlsclient import ensure_tls_client_image
from builder.model.distro import TRIXIE, Distribution
from builder.publish.cosign import cosign_for_signing, ensure_cosign_key, sign_image
from builder.publish.tree import inrelease_date

log = logging.getLogger("pfbuild")


def base_image_for(ctx: Context, dist: Distribution, base_images: Mapping[str, str]) -> str:
    """The configured registry base for the variant, else pfbuild's bootstrapped minbase."""
    configured = base_images.get(dist.variant)
    if configured:
        return configured
    return ensure_base_image(ctx, dist)


def build_variant_image(ctx: Context, config: ImageConfig, variant: str) -> BuiltImage:
    """Build one variant from the published repository; push it when a registry is set."""
    dist = variant_target(variant)
    if dist.name in dict(ctx.archive_overrides):
        dist = dist.with_archive(ctx.archive_override(dist.name))
    tree = ctx.apt_tree
    packages = image_packages(dist)
    version = require_published(tree, dist, packages)
    if config.version and config.version != version:
        raise PfbuildError(
            f"our {dist.name} suite has postfix {version}, not {config.version}",
            fix=f"publish {config.version} first or drop --version",
        )
    if not config.created_epoch:
        # No SOURCE_DATE_EPOCH given: the repository state the image is made of dates it.
        date = inrelease_date(tree / "dists" / dist.name / "InRelease")
        config = dataclasses.replace(config, created_epoch=int(date or 0))
    client = docker_client(ctx)
    base = base_image_for(ctx, dist, config.base_images)
    tags = image_tags(config.name, version, variant, config.registry, config.date_tag)
    log.info("%s: building %s on %s", variant, tags[0], base)
    started = time.monotonic()
    # One build at a time serves the repository on its fixed port: on another port the apt
    # source in the build context differs, and the install layer is not reused.
    with (
        resource_lock(ctx.resource_lock("image-repo-server"), "the image build's repo server"),
        build_context_dir(ctx) as context,
        serve_repo(tree) as url,
    ):
        assemble_context(context, tree, url, dist.name)
        image_id = docker_build(
            client,
            context,
            tags,
            build_args(base, packages, repo_state(tree, dist.name)),
            oci_labels(config, version, dist),
            ctx.logs_dir / f"image-{variant}.log",
        )
    size = int(client.images.get(image_id).attrs.get("Size", 0))
    log.info(
        "%s: %s built in %.0f s (%d MB)",
        variant,
        image_id[:19],
        time.monotonic() - started,
        size // 10**6,
    )
    signed: list[str] = []
    if config.registry:
        push_tags(client, tags)
        signed = sign_pushed_image(ctx, pushed_digests(client, image_id, tags), config.cosign_key)
    return BuiltImage(variant, image_id, tuple(tags), version, size, tuple(signed))


def sign_pushed_image(ctx: Context, refs: Sequence[str], key_file: Path | None) -> list[str]:
    """Sign each pushed REPO@DIGEST with cosign (in its registry); return what was signed."""
    cosign = cosign_for_signing(ctx)
    key = ensure_cosign_key(ctx, cosign, key_file)
    for ref in refs:
        sign_image(cosign, key, ref)
    return list(refs)


def prove_variant(
    ctx: Context,
    variant: str,
    tag: str,
    *,
    base_images: Mapping[str, str] | None = None,
    healthcheck: bool = True,
    check: bool = True,
) -> list[Proof]:
    """Run every acceptance proof against containers of `tag`, by default and locked down.

    A failed proof raises PfbuildError naming the failures, unless `check` is False (the caller
    judges the proofs itself).
    """
    client = docker_client(ctx)
    # The client needs OpenSSL >= 3.5: trixie's, on the same base the debian variant uses.
    base = base_image_for(ctx, TRIXIE, base_images or {})
    # The proofs of two variants run side by side: one of them makes the client image.
    with resource_lock(ctx.resource_lock("tls-client-image"), "the TLS client image"):
        tls_client = ensure_tls_client_image(client, base)
    with pid_temp_dir(ctx.tmp_dir, "imagetest-") as tmp:
        proofs = [
            proof
            for locked_down in (False, True)
            for proof in prove_image(
                client, tag, tls_client, scratch=Path(tmp), healthcheck=healthcheck,
                locked_down=locked_down,
            )
        ]  # fmt: skip
    failed = [p for p in proofs if not p.ok]
    if check and failed:
        raise PfbuildError(
            f"{len(failed)} proof(s) failed for the {variant} image: "
            + ", ".join(p.name for p in failed),
            f"{failed[0].name}: {failed[0].detail}",
            f"run `pfbuild image --variant {variant} --test` to see every proof",
        )
    return proofs
