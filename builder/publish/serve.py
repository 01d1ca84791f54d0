"""Serve the published apt tree over HTTP on the loopback interface."""

from __future__ import annotations

import errno
import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from builder.core.errors import PfbuildError

log = logging.getLogger("pfbuild")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _TreeHandler(SimpleHTTPRequestHandler):
    """Static files of the tree; every request re-resolves the `dist/apt` symlink."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("serve: %s %s", self.address_string(), format % args)


def make_server(
    root: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ThreadingHTTPServer:
    """An HTTP server for `root` (not started); port 0 picks a free port."""
    if not root.is_dir():
        raise PfbuildError(
            f"nothing to serve at {root}",
            "no repository has been published in this workspace",
            "run `pfbuild publish` first",
        )
    # The directory is passed as the symlink path, not resolved: a publish that flips the link
    # is picked up by the next request without a restart.
    handler = functools.partial(_TreeHandler, directory=str(root))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fix = "pick another --port (0 picks a free one)"
        else:
            fix = "pass --bind an address of this host, e.g. 127.0.0.1"
        raise PfbuildError(
            f"cannot listen on {host}:{port}", exc.strerror or str(exc), fix
        ) from None


def server_url(server: ThreadingHTTPServer) -> str:
    """The base URL a local client uses to reach `server`."""
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/"


@contextmanager
def running_server(
    root: Path, host: str = DEFAULT_HOST, port: int = 0
) -> Iterator[ThreadingHTTPServer]:
    """Serve `root` from a background thread for the duration of the block."""
    server = make_server(root, host, port)
    thread = threading.Thread(target=server.serve_forever, name="pfbuild-serve", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve_forever(root: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve `root` until interrupted."""
    server = make_server(root, host, port)
    print(f"serving {root} at {server_url(server)} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
