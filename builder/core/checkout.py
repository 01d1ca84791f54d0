"""The pfbuild checkout itself: where recipes, templates and image files live, and its revision."""

from __future__ import annotations

from pathlib import Path

from builder.core import run
from builder.core.errors import PfbuildError

ROOT = Path(__file__).resolve().parents[2]
RECIPES_DIR = ROOT / "recipes"
TEMPLATES_DIR = ROOT / "debian-templates"
DOCKER_DIR = ROOT / "docker"


def git_revision() -> str:
    """The checkout's commit, for labels and records; "unknown" outside a git checkout."""
    try:
        return run.output(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip()
    except PfbuildError:
        return "unknown"
