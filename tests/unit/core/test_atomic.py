"""Outputs appear whole or not at all."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from builder.core.atomic import atomic_dir, atomic_file, owner_pid, pid_path

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


def test_threads_writing_one_file_never_share_a_temporary_path(tmp_path: Path) -> None:
    final = tmp_path / "index.json"
    temps: list[Path] = []
    both = threading.Barrier(2, timeout=10)

    def write(text: str) -> None:
        with atomic_file(final) as tmp:
            temps.append(tmp)
            tmp.write_text(text)
            both.wait()  # both temporary files exist at once

    threads = [threading.Thread(target=write, args=(t,)) for t in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(temps)) == 2
    assert final.read_text() in ("one", "two")
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]
    # A killed process's worker-thread leftovers are still known by their process.
    assert {owner_pid(t) for t in temps} == {os.getpid()}
    assert owner_pid(pid_path(tmp_path, "InRelease-sid")) == os.getpid()
