"""Exclusive locks by flock on a file that names its holder.

The workspace locks (release, publish) refuse a second holder after a timeout; a shared
resource's lock (a chroot tarball, a base image) waits for as long as it takes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.core.errors import PfbuildError

log = logging.getLogger("pfbuild")

DEFAULT_FIX = "wait for it to finish, or use another --workspace"
POLL_SECONDS = 0.1


def holder_record() -> str:
    """Who holds a lock: written into the lock file for the next one who wants it."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"pid {os.getpid()} on {socket.gethostname()} since {since}\n"


@contextmanager
def workspace_lock(
    path: Path,
    what: str,
    *,
    timeout: float = 0.0,
    fix: str = DEFAULT_FIX,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold an exclusive lock on `path`; wait up to `timeout` s for its holder, then fail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text().strip() or "another process"
                if time.monotonic() >= deadline:
                    waited = f"; waited {timeout:g} s" if timeout > 0 else ""
                    raise PfbuildError(
                        f"another {what} is running on this workspace",
                        f"lock {path} is held by {holder}{waited}",
                        fix,
                    ) from None
                if not announced:
                    log.info("waiting for the %s lock held by %s", what, holder)
                    announced = True
                sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, holder_record().encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock, also when we are killed


@contextmanager
def resource_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting for its holder for as long as it takes.

    For what concurrent actions share (a chroot tarball, a base image): the second one waits
    while the first makes it, then finds it made. flock conflicts between two open file
    descriptions, so threads of one process exclude each other as processes do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process"
            log.info("waiting for %s, locked by %s", what, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, holder_record().encode())
        yield
    finally:
        os.close(fd)
