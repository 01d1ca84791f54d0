"""`pfbuild verify --repo URL|DIR --key FPR`: a consumer's check of a published release."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from builder.core.context import Context
from builder.core.engine import docker_client
from builder.core.errors import PfbuildError
from builder.image.sbom import image_id
from builder.publish.cosign import Cosign, cosign_for_verifying
from builder.publish.verify import verify_release

NAME = "verify"
HELP = (
    "check a published release link by link: pinned key, InRelease, Packages, .debs, signed "
    "provenance, SBOMs, images and their cosign signatures (no workspace needed)"
)
# A consumer runs this anywhere: no workspace is made or read.
USES_WORKSPACE = False

log = logging.getLogger("pfbuild")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repo", required=True, metavar="URL|DIR",
        help="the repository: its http(s):// or file:// URL, or a local copy of the folder",
    )  # fmt: skip
    parser.add_argument(
        "--key", required=True, metavar="FPR",
        help="the fingerprint of the repository key you trust (40 hex digits)",
    )  # fmt: skip
    parser.add_argument(
        "--image", action="append", default=[], metavar="TAG",
        help="also check that this local image is the attested one (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--release", metavar="RECIPE-VERSION",
        help="the release to check, e.g. postfix-3.11.6 (default: the one attested last)",
    )  # fmt: skip


def run(ctx: Context, args: argparse.Namespace) -> int:
    lookup: Callable[[str], str] | None = None
    cosign: Callable[[], Cosign] | None = None
    if args.image:

        def lookup(tag: str) -> str:
            return image_id(docker_client(ctx), tag)

        def cosign() -> Cosign:
            return cosign_for_verifying(lambda: docker_client(ctx))

    name, links = verify_release(
        args.repo, args.key, release=args.release, images=args.image, image_id_of=lookup,
        cosign=cosign,
    )  # fmt: skip
    log.info("%s in %s, pinned key %s", name, args.repo, args.key.upper())
    for link in links:
        print(link.line(), flush=True)
    failed = [link for link in links if not link.ok]
    if failed:
        raise PfbuildError(
            f"{len(failed)} of {len(links)} link(s) do not hold for {name}",
            f"first: {failed[0].name}",
            "do not install from this repository until every link holds",
        )
    return 0
