"""A full disk or a read-only folder: one line naming the path and the cause, nothing orphaned.

The tests run as root, where chmod 0555 stops nothing, and no small tmpfs is at hand: the
os-level writes are made to fail the way the kernel fails them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from builder.core.context import Context
from builder.fetch.cache import index_path
from builder.fetch.sources import fetch
from builder.model.recipe import Recipe
from tests.fixtures.sources import ORIG, cached_files, file_mirror, offline_postfix

pytestmark = pytest.mark.unit

REAL_OPEN = Path.open
REAL_MKDIR = Path.mkdir


class _FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, inner: Any, path: Path) -> None:
        self._inner = inner
        self._path = path

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._path))

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _fill_disk_for(monkeypatch: pytest.MonkeyPatch, applies: Callable[[Path], bool]) -> None:
    def full_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = REAL_OPEN(self, mode, *args, **kwargs)
        if any(c in mode for c in "wax") and applies(self):
            return _FullDisk(handle, self)
        return handle

    monkeypatch.setattr(Path, "open", full_open)


def _recipe() -> Recipe:
    return offline_postfix((file_mirror(ORIG.parent),))


def _fetch(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> int:
    recipe = _recipe()
    monkeypatch.setattr("builder.commands.fetch.load_recipe", lambda name: recipe)
    return cli.main(["-q", "--workspace", str(ctx.workspace), "fetch", "postfix", "3.11.6"])


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pfbuild: error: ")
    return err[0]


def _leftovers(ctx: Context) -> list[Path]:
    return sorted(ctx.tmp_dir.iterdir())


def test_a_full_disk_during_a_download_is_named_not_blamed_on_the_network(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill_disk_for(monkeypatch, lambda p: p.name.startswith(".postfix_3.11.6.orig.tar.gz.tmp"))
    assert _fetch(ctx, monkeypatch) == 3
    line = _one_error(capsys)
    assert line.startswith("pfbuild: error: cannot write ")
    assert "/postfix_3.11.6.orig.tar.gz: no space left on device (fix: free space" in line
    assert "network" not in line
    assert "no mirror delivered" not in line
    assert cached_files(ctx.cache_dir / "sources") == []
    assert _leftovers(ctx) == []


def test_a_full_disk_writing_the_index_orphans_nothing(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill_disk_for(monkeypatch, lambda p: p.name.startswith(".index.json.tmp"))
    assert _fetch(ctx, monkeypatch) == 3
    line = _one_error(capsys)
    assert line.startswith(f"pfbuild: error: cannot write {index_path(ctx)}: no space left")
    # The verified files moved into the cache have no entry: they are gone again.
    assert cached_files(ctx.cache_dir / "sources") == []
    assert not index_path(ctx).exists()
    assert _leftovers(ctx) == []
    # With space again, the next run fetches, indexes, and reuses.
    monkeypatch.setattr(Path, "open", REAL_OPEN)
    first = fetch(ctx, _recipe(), "3.11.6")
    assert not first.from_cache
    assert fetch(ctx, _recipe(), "3.11.6").from_cache


def test_a_read_only_cache_folder_is_named_and_orphans_nothing(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[Path] = []

    def read_only_mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        # The first cache folder is made, the second is refused: one file is already moved in.
        if self.parent == ctx.cache_dir / "sources":
            if made:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            made.append(self)
        REAL_MKDIR(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    assert _fetch(ctx, monkeypatch) == 3
    line = _one_error(capsys)
    assert line.startswith(f"pfbuild: error: cannot write {ctx.cache_dir / 'sources'}/")
    assert ": read-only file system (fix: the file system is read-only" in line
    assert made
    assert cached_files(ctx.cache_dir / "sources") == []
    assert _leftovers(ctx) == []


def test_a_read_only_workspace_tmp_is_named(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_mkdtemp = os.mkdir

    def read_only(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).parent == ctx.workspace / "tmp":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real_mkdtemp(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    assert _fetch(ctx, monkeypatch) == 3
    line = _one_error(capsys)
    assert line.startswith(f"pfbuild: error: cannot write {ctx.workspace / 'tmp'}")
    assert "read-only file system" in line
