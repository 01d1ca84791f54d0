"""Write outputs to a temporary path next to their final place, then rename them into place.

Also: local write failures (a full disk, a read-only folder) in words, and the temporary paths
a killed process leaves behind, named for their process so the next run can remove them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from builder.core.errors import PfbuildError

log = logging.getLogger("pfbuild")


def _thread_tag() -> str:
    # Actions run side by side in threads of one process: two writing the same file (a shared
    # keyring, the cache index) must not share a temporary path, or one renames the other's.
    if threading.current_thread() is threading.main_thread():
        return ""
    return f".t{threading.get_native_id()}"


def _temp_sibling(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}{_thread_tag()}.{kind}-{os.getpid()}")


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


# ---- local write failures ------------------------------------------------------------------

_WRITE_FIXES = {
    errno.ENOSPC: "free space on that file system (or pass --workspace on another), then rerun",
    errno.EDQUOT: "free space within your disk quota (or pass --workspace elsewhere), then rerun",
    errno.EROFS: "the file system is read-only: pass --workspace on a writable one",
    errno.EACCES: "check who owns that folder and its permissions",
    errno.EPERM: "check who owns that folder and its permissions",
}


class WriteError(PfbuildError):
    """A local file or folder could not be written: the disk is at fault, not the input."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = path
        self.errno = exc.errno
        cause = exc.strerror or str(exc) or type(exc).__name__
        super().__init__(
            f"cannot write {path}",
            cause[:1].lower() + cause[1:],
            _WRITE_FIXES.get(exc.errno or 0, "check the disk and that folder"),
        )


@contextmanager
def write_errors(path: Path | None = None) -> Iterator[None]:
    """Turn an OSError of the local writes in the block into a WriteError naming `path`.

    Without `path`, the error names the file the OSError names. Only local writes belong in the
    block: a network error is an OSError too, and must not be reported as a full disk.
    """
    try:
        yield
    except PfbuildError:
        raise
    except OSError as exc:
        where = (
            path if path is not None or exc.filename is None else Path(os.fsdecode(exc.filename))
        )
        raise WriteError(where or Path("?"), exc) from None


# ---- temporary files a killed process leaves behind ----------------------------------------

# `pid_temp_dir` names `<prefix>XXXXXXXX.pid<pid>`; `_temp_sibling` names `.<name>.tmp-<pid>`
# (both with `.t<thread>` before the suffix when a worker thread makes them).
_OWNER_RES = (re.compile(r"\.pid([0-9]+)$"), re.compile(r"^\..+\.(?:tmp|old)-([0-9]+)$"))


def is_alive(pid: int) -> bool:
    """Whether process `pid` exists (on this host, in this PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def owner_pid(path: Path) -> int | None:
    """The process a temporary path was made by, from its name (None: not one of ours)."""
    for pattern in _OWNER_RES:
        match = pattern.search(path.name)
        if match:
            return int(match.group(1))
    return None


def pid_path(parent: Path, name: str) -> Path:
    """A path in `parent` named for this process (and thread), so a kill's leftover is known."""
    return parent / f"{name}{_thread_tag()}.pid{os.getpid()}"


@contextmanager
def pid_temp_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh folder `<prefix>XXXXXXXX.pid<pid>` in `parent`, removed when the block ends.

    If the process is killed the folder stays; `remove_stale_temps` removes it at the next start.
    """
    with write_errors(parent):
        parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=prefix, suffix=f".pid{os.getpid()}", dir=parent))
    try:
        yield path
    finally:
        remove_path(path)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove what killed pfbuild processes left in `folder`; return what was removed.

    Only paths named by this module (`pid_temp_dir`, `pid_path`, `atomic_file`) are candidates,
    and only when the process that made them is gone: a running pfbuild keeps its own.
    """
    removed: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid = owner_pid(entry)
        if pid is None or pid == os.getpid() or is_alive(pid):
            continue
        try:
            remove_path(entry)
        except OSError as exc:
            log.warning("cannot remove %s, left by killed process %d: %s", entry, pid, exc)
            continue
        removed.append(entry)
    if removed:
        log.info("removed %d leftover(s) of killed pfbuild processes in %s", len(removed), folder)
    return removed
