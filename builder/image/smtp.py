"""The SMTP client side of the image proofs: loopback addresses, free ports, SMTP sessions.

Every test container listens on 127.0.0.1 only; a second loopback address (OUTSIDE_CLIENT) is
not in the container's mynetworks, so it stands for a client on the internet.
"""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from builder.core.errors import PfbuildError

LOOPBACK = "127.0.0.1"
OUTSIDE_CLIENT = "127.0.0.5"
CLIENT_HELO = "client.example.com"
BANNER_TIMEOUT = 60.0
SESSION_TIMEOUT = 10


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_banner(
    port: int, timeout: float = BANNER_TIMEOUT, alive: Callable[[], bool] | None = None
) -> str:
    """Poll 127.0.0.1:port until the server sends its greeting; return that line."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
                line = sock.makefile("rb").readline().decode(errors="replace").strip()
                with suppress(OSError):
                    sock.sendall(b"QUIT\r\n")
                if line:
                    return line
        except OSError:
            pass
        if time.monotonic() > deadline or (alive is not None and not alive()):
            raise PfbuildError(f"no SMTP banner on {LOOPBACK}:{port} after {timeout:g} s")
        time.sleep(0.02)


def _connect(port: int, source: str | None = None) -> smtplib.SMTP:
    return smtplib.SMTP(
        LOOPBACK,
        port,
        local_hostname=CLIENT_HELO,
        timeout=SESSION_TIMEOUT,
        source_address=(source, 0) if source else None,
    )


def ehlo_features(port: int) -> dict[str, str]:
    """The ESMTP extensions advertised after EHLO."""
    with _connect(port) as smtp:
        smtp.ehlo()
        return dict(smtp.esmtp_features)


def rcpt_reply(port: int, rcpt: str, source: str = LOOPBACK) -> tuple[int, str]:
    """The reply to RCPT TO (null sender, FQDN HELO) from client address `source`."""
    with _connect(port, source) as smtp:
        smtp.ehlo()
        smtp.mail("<>")
        code, msg = smtp.rcpt(rcpt)
        smtp.rset()
        return code, msg.decode(errors="replace")


def send_message(port: int, rcpt: str, subject: str) -> str:
    """Submit a message from 127.0.0.1 (in mynetworks); return the server's final reply."""
    body = f"Subject: {subject}\r\nFrom: <>\r\nTo: <{rcpt}>\r\n\r\npfbuild image test\r\n"
    with _connect(port) as smtp:
        smtp.ehlo()
        smtp.mail("<>")
        code, msg = smtp.rcpt(rcpt)
        if code != 250:
            raise PfbuildError(f"RCPT TO:<{rcpt}> got {code} {msg.decode(errors='replace')}")
        code, msg = smtp.data(body.encode())
        return f"{code} {msg.decode(errors='replace')}"


@contextmanager
def open_session(port: int) -> Iterator[smtplib.SMTP]:
    """An SMTP session held open, so an smtpd process exists while the block runs."""
    smtp = _connect(port)
    try:
        smtp.ehlo()
        yield smtp
    finally:
        with suppress(smtplib.SMTPException, OSError):
            smtp.quit()
