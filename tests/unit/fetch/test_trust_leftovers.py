"""What a killed run leaves in the workspace is removed at the next start, unless still held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from builder import cli
from builder.core.context import Context
from builder.fetch import sources
from builder.fetch.archive import VerifiedFile
from builder.model.recipe import Recipe
from tests.conftest import REPO
from tests.fixtures.sources import ORIG, file_mirror, offline_postfix

pytestmark = pytest.mark.unit


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _fetch(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> int:
    recipe = offline_postfix((file_mirror(ORIG.parent),))
    monkeypatch.setattr("builder.commands.fetch.load_recipe", lambda name: recipe)
    return cli.main(["-q", "--workspace", str(ctx.workspace), "fetch", "postfix", "3.11.6"])


# A fetch that is killed (SIGKILL: no finally runs) right after the upstream tarball verified.
KILLED_FETCH = """
import os, signal, sys
from pathlib import Path
from builder.core.context import Context
from builder.fetch import sources
from tests.fixtures.sources import ORIG, file_mirror, offline_postfix

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

sources.fetch_packaging = killed
sources.fetch(Context(workspace=Path(sys.argv[1])), offline_postfix((file_mirror(ORIG.parent),)),
              "3.11.6")
"""


def test_a_killed_fetch_leaves_nothing_after_the_next_start(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = textwrap.dedent(KILLED_FETCH)
    proc = subprocess.run([sys.executable, "-c", code, str(ctx.workspace)], cwd=REPO, check=False)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in ctx.tmp_dir.iterdir() if p.name.startswith("fetch-")]
    assert len(left) == 1
    assert any(left[0].rglob("postfix_3.11.6.orig.tar.gz"))
    assert _fetch(ctx, monkeypatch) == 0
    assert list(ctx.tmp_dir.iterdir()) == []


def test_only_what_no_live_process_holds_is_removed(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, live = _dead_pid(), os.getppid()
    tmp = ctx.tmp_dir
    stale = [
        tmp / f"fetch-k2j4h5g6.pid{dead}",
        tmp / f"source-a8b7c6d5.pid{dead}",
        tmp / f"InRelease-sid.pid{dead}",
        ctx.cache_dir / "sources" / f".index.json.tmp-{dead}",
        ctx.cache_dir / "archive" / f".{'a' * 64}.xz.tmp-{dead}",
    ]
    held = [
        tmp / f"fetch-q1w2e3r4.pid{live}",
        tmp / f"source-z9y8x7w6.pid{live}",
        ctx.cache_dir / "sources" / f".index.json.tmp-{live}",
    ]
    # Not named by pfbuild's temporary-path scheme: never touched.
    foreign = [tmp / "keyring-12345678", tmp / "base-trixie.tar", tmp / "notes-1234"]
    for path in stale + held + foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.startswith(("fetch-", "source-", "keyring-")):
            path.mkdir()
            (path / "big.tar.gz").write_bytes(b"x" * 1000)
        else:
            path.write_bytes(b"x")
    assert _fetch(ctx, monkeypatch) == 0
    assert [p for p in stale if p.exists()] == []
    assert [p for p in held + foreign if not p.exists()] == []


def test_the_fetch_folder_is_named_for_its_process(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []
    real = sources.fetch_upstream

    def spy(ctx: Context, recipe: Recipe, version: str, tmp: Path) -> list[VerifiedFile]:
        seen.append(tmp)
        return real(ctx, recipe, version, tmp)

    monkeypatch.setattr(sources, "fetch_upstream", spy)
    assert _fetch(ctx, monkeypatch) == 0
    assert len(seen) == 1
    assert seen[0].parent == ctx.tmp_dir
    assert seen[0].name.startswith("fetch-")
    assert seen[0].name.endswith(f".pid{os.getpid()}")
    assert not seen[0].exists()
