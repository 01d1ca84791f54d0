"""`pfbuild image [--variant V] [--test]`: the Postfix container images, built from our repo."""

from __future__ import annotations

import argparse
import os
import time
import urllib.parse
from pathlib import Path

from builder.core.atomic import pid_temp_dir
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.image import build as image
from builder.image.stage import build_variant_image, prove_variant
from builder.publish import cosign
from builder.publish.live import fetch_tree
from builder.publish.tree import install_tree
from builder.publish.treecheck import verify_tree

NAME = "image"
HELP = "build the Postfix container image per variant from the published repository"


def _base_pair(text: str) -> tuple[str, str]:
    variant, sep, ref = text.partition("=")
    if not sep or not variant or not ref:
        raise argparse.ArgumentTypeError(f"expected VARIANT=IMAGE, got {text!r}")
    return variant, ref


def _epoch(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"SOURCE_DATE_EPOCH must be a whole number, got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        choices=image.variants(),
        help="debian (trixie) or ubuntu (resolute); repeatable; default: both",
    )
    parser.add_argument(
        "--name",
        default=os.environ.get("PFBUILD_IMAGE_NAME", image.DEFAULT_NAME),
        help="image repository name (env PFBUILD_IMAGE_NAME; default %(default)s)",
    )
    parser.add_argument(
        "--registry",
        default=os.environ.get("PFBUILD_REGISTRY") or None,
        help="push the tags to this registry and sign them there with cosign "
        "(env PFBUILD_REGISTRY); default: no push",
    )
    parser.add_argument(
        "--cosign-key",
        type=Path,
        metavar="FILE",
        default=os.environ.get(cosign.KEY_FILE_ENV) or None,
        help="with --registry: the cosign private key that signs the pushed images, its "
        f"password in COSIGN_PASSWORD (env {cosign.KEY_FILE_ENV}); default: the workspace's "
        "local key pair",
    )
    parser.add_argument(
        "--base-image",
        type=_base_pair,
        action="append",
        default=[],
        metavar="VARIANT=IMAGE",
        help="a registry base image for VARIANT; default: pfbuild's bootstrapped minbase",
    )
    parser.add_argument(
        "--release",
        default="",
        metavar="VERSION",
        help="refuse to build unless our repo has this postfix version (default: what it has)",
    )
    parser.add_argument(
        "--revision",
        default=os.environ.get("PFBUILD_REVISION", "unknown"),
        help="the source revision for the OCI label (env PFBUILD_REVISION)",
    )
    parser.add_argument(
        "--source-date-epoch",
        type=_epoch,
        default=_epoch(os.environ.get("SOURCE_DATE_EPOCH", "0")),
        help="the created label's time (env SOURCE_DATE_EPOCH; default: the Date of our "
        "suite's signed index)",
    )
    parser.add_argument(
        "--from",
        dest="from_tree",
        metavar="TREE|URL",
        help="build from this published tree (the publish job's dist/apt, made elsewhere, or "
        "the live repository's URL): verified like apt would (signature, index and package "
        "hashes), then made this workspace's dist/apt",
    )
    parser.add_argument(
        "--require-key",
        default=os.environ.get("PFBUILD_REQUIRE_KEY") or None,
        metavar="FPR",
        help="with --from: the fingerprint the tree must be signed by (env PFBUILD_REQUIRE_KEY); "
        "default: trust the key the tree carries, with a warning",
    )
    parser.add_argument(
        "--date-tag",
        action="store_true",
        help="also tag <version>-<variant>-<YYYYMMDD> (UTC today): a scheduled image rebuild on "
        "a newer base gets a tag of its own",
    )
    parser.add_argument(
        "--test",
        action="store_true",
        help="after building, run the acceptance proofs against running containers",
    )
    parser.add_argument(
        "--no-healthcheck-wait",
        action="store_true",
        help="with --test: skip waiting (about a minute) for the HEALTHCHECK to turn healthy",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.require_key and not args.from_tree:
        raise PfbuildError(
            "--require-key applies to a tree given with --from",
            fix="add --from TREE, or drop --require-key",
        )
    if args.from_tree:
        with pid_temp_dir(ctx.tmp_dir, "from-") as scratch:
            tree = Path(args.from_tree)
            if urllib.parse.urlsplit(args.from_tree).scheme in ("http", "https"):
                tree = scratch / "tree"
                fetch_tree(args.from_tree, tree)
            verified = verify_tree(tree, args.require_key)
            install_tree(ctx, verified.path)
        print(
            f"tree    verified {verified.path} "
            f"({verified.debs} packages, key {verified.fingerprint})"
        )
    config = image.ImageConfig(
        name=args.name,
        version=args.release,
        revision=args.revision,
        created_epoch=args.source_date_epoch,
        registry=args.registry,
        base_images=dict(args.base_image),
        cosign_key=args.cosign_key,
        date_tag=time.strftime("%Y%m%d", time.gmtime()) if args.date_tag else None,
    )
    built = [build_variant_image(ctx, config, v) for v in args.variant or image.variants()]
    for result in built:
        tags = " ".join(result.tags)
        print(f"{result.variant:8}{result.image_id[:19]}  {result.size / 1e6:.0f} MB  {tags}")
        for ref in result.signed:
            print(f"{result.variant:8}signed  {ref} (cosign)")
    if not args.test:
        return 0
    failed = 0
    for result in built:
        # Every variant is proven before the command judges: the FAIL lines show them all.
        proofs = prove_variant(
            ctx,
            result.variant,
            result.tags[0],
            base_images=config.base_images,
            healthcheck=not args.no_healthcheck_wait,
            check=False,
        )
        for proof in proofs:
            print(
                f"{result.variant:8}{'ok' if proof.ok else 'FAIL':6}{proof.name:22}{proof.detail}"
            )
        failed += sum(not p.ok for p in proofs)
    if failed:
        raise PfbuildError(
            f"{failed} image proof(s) failed",
            "see the FAIL lines above",
            "fix the image or the packages, then run `pfbuild image --test` again",
        )
    return 0
