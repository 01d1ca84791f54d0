"""Outputs appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.core.atomic import atomic_dir, atomic_file

pytestmark = pytest.mark.unit


def test_failed_file_write_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_file(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_failed_dir_replace_keeps_the_old_dir(tmp_path: Path) -> None:
    final = tmp_path / "result"
    with atomic_dir(final) as tmp:
        (tmp / "a.deb").write_text("good")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "b.deb").write_text("half")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]
    assert [p.name for p in final.iterdir()] == ["a.deb"]


def test_dir_replace_swaps_content(tmp_path: Path) -> None:
    final = tmp_path / "result"
    for name in ("one", "two"):
        with atomic_dir(final) as tmp:
            (tmp / name).write_text(name)
    assert [p.name for p in final.iterdir()] == ["two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]
