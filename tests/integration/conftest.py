"""Fixtures shared by the integration modules: the shared workspace with our packages published."""

from __future__ import annotations

import pytest

from builder.cli import main
from builder.core.context import Context
from builder.image import build as image
from builder.model.distro import TARGETS
from builder.model.loader import load_recipe
from builder.publish.cosign import Cosign, cosign_for_signing

POSTFIX_VERSION = "3.11.6"


def _has_packages(ctx: Context, suite: str) -> bool:
    try:
        versions = image.published_versions(ctx.apt_tree, suite)
    except Exception:
        return False
    malloc = load_recipe("mimalloc-secure").binary_packages[suite]
    return all(name in versions for name in ("postfix", *malloc))


def _cli(ctx: Context, *args: str) -> None:
    assert main(["--workspace", str(ctx.workspace), *args]) == 0, f"pfbuild {' '.join(args)}"


@pytest.fixture(scope="session")
def published(shared_ctx: Context) -> Context:
    """The shared workspace with postfix and mimalloc-secure published for every target."""
    missing = [t for t in TARGETS if not _has_packages(shared_ctx, t)]
    if missing:
        # Every stage is keyed by its inputs: only what the workspace lacks is done here.
        targets = [a for t in missing for a in ("--target", t)]
        _cli(shared_ctx, "release", POSTFIX_VERSION, "--no-image", *targets)
    return shared_ctx


@pytest.fixture(scope="session")
def cosign_tool(shared_ctx: Context) -> Cosign:
    """The cosign pfbuild signs with here: the host's, else the tool image made from trixie."""
    return cosign_for_signing(shared_ctx)
