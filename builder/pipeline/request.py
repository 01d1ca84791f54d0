"""What the user asked a release to make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.model.distro import Distribution


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
    # The cosign private key that signs the images; None: the workspace's local pair.
    cosign_key: Path | None = None
    # Builds use the compiler cache (same .debs, less time).
    ccache: bool = True
    # The live repository (URL or folder) the release extends; None: the workspace's own.
    base: str | None = None
    # (recipe, target) -> rebuild counter, where the live repository asks for another one.
    rebuilds: Mapping[tuple[str, str], int] = field(default_factory=dict)
