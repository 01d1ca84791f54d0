"""HTTP(S) and file:// downloads: hashed while they stream, bounded in time and size.

A mirror is untrusted until its file is verified, and so is its behaviour: a server may answer
slowly on purpose, or without end. Every read waits at most `timeout` seconds, every file gets
`deadline` seconds in all (a watchdog shuts its connection when the time is up, so a server that
trickles a byte at a time cannot hold a read past it), and no file grows past `max_bytes`.
Transient failures (a reset, a timeout, a 5xx) are retried after a pause; then the caller moves
on to the next mirror.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from builder.core.atomic import atomic_file, write_errors
from builder.core.errors import PfbuildError

log = logging.getLogger("pfbuild")

CHUNK = 1 << 16
USER_AGENT = "pfbuild (+https://github.com/pfbuild)"
# The defaults are read when a download starts (not bound at import), so tests may shorten them.
DEFAULT_TIMEOUT = 30.0  # seconds one read may wait for data
DEFAULT_DEADLINE = 900.0  # seconds one file may take in all (per attempt)
DEFAULT_MAX_BYTES = 512 << 20  # a file on disk: the largest orig tarball is a fraction of it
DEFAULT_MAX_MEMORY_BYTES = 64 << 20  # a document read into memory (an index, a listing)
DEFAULT_RETRIES = 1  # further attempts after a transient failure
DEFAULT_BACKOFF = 2.0  # seconds before the first retry; doubled for each further one
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


class DownloadError(PfbuildError):
    """A URL could not be fetched; `reason` is short enough to list beside other mirrors."""

    def __init__(self, url: str, reason: str, *, transient: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.transient = transient
        super().__init__(f"cannot download {url}", reason, "check the URL or the network")


class TooLargeError(DownloadError):
    """The file grew past its size limit while it streamed (it was cut off there)."""


@dataclass(frozen=True)
class Limits:
    """How long and how large one download may be, and how often a transient failure is retried."""

    timeout: float
    deadline: float
    max_bytes: int
    retries: int
    backoff: float


def _limits(
    timeout: float | None,
    deadline: float | None,
    max_bytes: int | None,
    retries: int | None,
    backoff: float | None,
    default_max_bytes: int,
) -> Limits:
    return Limits(
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        deadline=DEFAULT_DEADLINE if deadline is None else deadline,
        max_bytes=default_max_bytes if max_bytes is None else max_bytes,
        retries=DEFAULT_RETRIES if retries is None else retries,
        backoff=DEFAULT_BACKOFF if backoff is None else backoff,
    )


class _Watchdog:
    """Ends one download attempt at its deadline by shutting down the sockets it opened."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        # The plain socket call even on TLS: SSLSocket.shutdown would drop its TLS state under
        # the reading thread. A blocked recv() then returns at once.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes (at once if it has)."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def stop(self) -> None:
        """The attempt is over: forget its sockets, never touch them again."""
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # As http.client's own: the system's CAs, HTTP/1.1. Made once: loading the CAs takes a while.
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's opener whose HTTP(S) connections report their sockets to `watchdog`."""

    class _HTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    tls = _tls_context()

    class _HTTPSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            # As HTTPSConnection.connect, but the TLS socket is watched before its handshake:
            # a server that trickles the handshake is cut off at the deadline too.
            http.client.HTTPConnection.connect(self)
            host = getattr(self, "_tunnel_host", None) or self.host
            self.sock = tls.wrap_socket(
                self.sock, server_hostname=host, do_handshake_on_connect=False
            )
            watchdog.watch(self.sock)
            self.sock.do_handshake()

    class _HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(_HTTPConnection, req)

    class _HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(_HTTPSConnection, req)

    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)


def _too_slow(url: str, limits: Limits, size: int) -> DownloadError:
    return DownloadError(url, f"too slow: {size} bytes within the {limits.deadline:g} s deadline")


def _too_large(url: str, limits: Limits, announced: int | None = None) -> DownloadError:
    if announced is not None:
        return TooLargeError(
            url, f"too large: {announced} bytes announced, at most {limits.max_bytes} allowed"
        )
    return TooLargeError(url, f"too large: more than the {limits.max_bytes} bytes allowed")


def _network_error(
    url: str, exc: BaseException, watchdog: _Watchdog, limits: Limits, size: int
) -> DownloadError:
    if watchdog.expired:
        return _too_slow(url, limits, size)
    if isinstance(exc, urllib.error.HTTPError):
        transient = exc.code in TRANSIENT_HTTP or exc.code >= 500
        return DownloadError(url, f"HTTP {exc.code} {exc.reason}", transient=transient)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return DownloadError(url, f"unreachable: {reason}", transient=_is_transient(reason))
    return DownloadError(url, f"failed: {exc}", transient=_is_transient(exc))


def _is_transient(exc: object) -> bool:
    # A reset or a timeout may pass; a refused port, an unknown host or bad TLS will not.
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror, ssl.SSLError)):
        return False
    return isinstance(
        exc,
        (
            TimeoutError,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            http.client.IncompleteRead,
            http.client.RemoteDisconnected,
        ),
    )


def _content_length(response: Any) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _stream(url: str, limits: Limits, sink: Callable[[bytes], None]) -> int:
    """One attempt: pass every chunk of `url` to `sink` within the limits; return the size."""
    log.debug("GET %s", url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    watchdog = _Watchdog(limits.deadline)
    start = time.monotonic()
    size = 0
    try:
        try:
            # file:// is a supported mirror scheme (local mirrors, offline tests).
            response = _opener(watchdog).open(request, timeout=min(limits.timeout, limits.deadline))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _network_error(url, exc, watchdog, limits, size) from None
        with response:
            expected = _content_length(response)
            if expected is not None and expected > limits.max_bytes:
                raise _too_large(url, limits, expected)
            # read1: at most one read from the socket, so the deadline is checked between reads
            # (read(n) would wait for n bytes however slowly they come).
            read = getattr(response, "read1", response.read)
            while True:
                if watchdog.expired or time.monotonic() - start > limits.deadline:
                    raise _too_slow(url, limits, size)
                try:
                    chunk = read(CHUNK)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    raise _network_error(url, exc, watchdog, limits, size) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > limits.max_bytes:
                    raise _too_large(url, limits)
                sink(chunk)
            if watchdog.expired:
                raise _too_slow(url, limits, size)
            if expected is not None and expected != size:
                raise DownloadError(
                    url, f"truncated: got {size} of {expected} bytes", transient=True
                )
    finally:
        watchdog.stop()
    return size


def _with_retries(url: str, limits: Limits, attempt: Callable[[], T]) -> T:
    for n in range(limits.retries + 1):
        try:
            return attempt()
        except DownloadError as exc:
            if not exc.transient or n >= limits.retries:
                if n == 0:
                    raise
                # The same kind of error (TooLargeError stays one), saying it was retried.
                raise type(exc)(url, f"{exc.reason} ({n + 1} attempts)") from None
            pause = limits.backoff * 2**n
            log.info("%s: %s; trying again in %g s", url, exc.reason, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def download(
    url: str,
    dest: Path,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
    max_bytes: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
) -> str:
    """Fetch `url` into `dest` atomically; return the SHA-256 of what was written.

    None takes the module default (DEFAULT_TIMEOUT and the like). A local write failure (a full
    disk, a read-only folder) is a WriteError naming the path, never a network problem.
    """
    limits = _limits(timeout, deadline, max_bytes, retries, backoff, DEFAULT_MAX_BYTES)
    with write_errors(dest), atomic_file(dest) as tmp:

        def once() -> str:
            digest = hashlib.sha256()
            with tmp.open("wb") as out:

                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    out.write(chunk)

                _stream(url, limits, sink)
            return digest.hexdigest()

        return _with_retries(url, limits, once)


def fetch_bytes(
    url: str,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
    max_bytes: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
) -> bytes:
    """Fetch a small document (an index, a Release file) into memory, within the same limits."""
    limits = _limits(timeout, deadline, max_bytes, retries, backoff, DEFAULT_MAX_MEMORY_BYTES)

    def once() -> bytes:
        parts: list[bytes] = []
        _stream(url, limits, parts.append)
        return b"".join(parts)

    return _with_retries(url, limits, once)
