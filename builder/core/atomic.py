"""Write outputs to a temporary path next to their final place, then rename them into place."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _temp_sibling(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}.{kind}-{os.getpid()}")


def remove_path(path: Path) -> None:
    """Remove a file, link or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path that replaces `final` in one rename on success, else vanishes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final, "tmp")
    remove_path(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        remove_path(tmp)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that takes the place of `final` once filled."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final, "tmp")
    old = _temp_sibling(final, "old")
    remove_path(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        remove_path(tmp)
        remove_path(old)


def write_text(final: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_file(final) as tmp:
        tmp.write_text(text)


def write_json(final: Path, data: Any) -> None:
    """Write a JSON document atomically, keys sorted, as every record of pfbuild is written."""
    write_text(final, json.dumps(data, indent=2, sort_keys=True) + "\n")


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link `src` to `dest` when they share a file system, else copy it."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
