"""What the publish action records stays valid after later flips of the tree (attest adds one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from builder.core.context import Context
from builder.model.distro import TRIXIE
from builder.pipeline import runners
from builder.pipeline.request import ReleaseRequest

pytestmark = pytest.mark.unit


class FakeKey:
    fingerprint = "F" * 40


def test_publish_records_inrelease_through_the_live_link(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    generation = ctx.dist_dir / "apt.1"
    (generation / "dists" / "trixie").mkdir(parents=True)
    (generation / "dists" / "trixie" / "InRelease").write_text("signed index\n")
    ctx.apt_tree.symlink_to("apt.1")
    monkeypatch.setattr("builder.pipeline.runners.signing.ensure_signing_key", lambda *_: FakeKey())
    monkeypatch.setattr("builder.pipeline.runners.signing.stop_agent", lambda *_: None)
    monkeypatch.setattr("builder.pipeline.runners.publish.publish_repo", lambda *_a, **_k: [])
    request = ReleaseRequest("postfix", "3.11.6", (TRIXIE,), ("debian",))
    outputs: Any = runners.publish_runner(ctx, request, [("postfix", "3.11.6")])({})
    recorded = Path(outputs["suites"]["trixie"]["inrelease"]["path"])
    assert recorded == ctx.apt_tree / "dists" / "trixie" / "InRelease"
    # A later generation with the same suites: the recorded file is still there, same bytes.
    later = ctx.dist_dir / "apt.2"
    (later / "dists" / "trixie").mkdir(parents=True)
    (later / "dists" / "trixie" / "InRelease").write_text("signed index\n")
    ctx.apt_tree.unlink()
    ctx.apt_tree.symlink_to("apt.2")
    (generation / "dists" / "trixie" / "InRelease").unlink()
    assert recorded.read_text() == "signed index\n"
