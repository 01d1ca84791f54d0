"""The TLS side of the proofs: an OpenSSL client image, its command lines, one-shot tool runs.

The host's OpenSSL is too old to offer the hybrid post-quantum group, so s_client runs in a
small image made from trixie (OpenSSL >= 3.5), with host networking to reach 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

import docker.errors

import docker
from builder.core import run
from builder.core.engine import ensure_tool_image
from builder.image.smtp import LOOPBACK

PQ_GROUP = "X25519MLKEM768"
TLS_CLIENT_REPO = "pfbuild-tlsclient"


def s_client_cmdline(port: int, *extra: str) -> list[str]:
    """openssl s_client speaking STARTTLS to the container's smtp port."""
    return ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{LOOPBACK}:{port}", *extra]


def pq_handshake_cmdline(port: int) -> list[str]:
    """A TLS 1.3 handshake that offers only the hybrid post-quantum group."""
    return s_client_cmdline(port, "-groups", PQ_GROUP)


def tls11_handshake_cmdline(port: int) -> list[str]:
    """A TLS 1.1-only handshake; security level 0 so the refusal is the server's, not ours."""
    return s_client_cmdline(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")


def negotiated_group(s_client_output: str) -> str | None:
    """The TLS 1.3 group s_client reports, if any."""
    for line in s_client_output.splitlines():
        if line.startswith("Negotiated TLS1.3 group:"):
            return line.split(":", 1)[1].strip()
    return None


def certificate_subject(s_client_output: str) -> str:
    """The subject of the certificate s_client was shown, as CN=name ("" when none)."""
    for line in s_client_output.splitlines():
        if line.startswith("subject="):
            return line.split("=", 1)[1].strip().replace(" = ", "=")
    return ""


def is_tls11_refused_by_server(rc: int, output: str) -> bool:
    """True when the server's alert ended the handshake, not our own client refusing."""
    # s_client prints "Protocol: TLSv1.1" for the attempted version even when it failed; a
    # failed handshake shows "Cipher is (NONE)".
    if rc == 0 or "no protocols available" in output:
        return False
    return "alert protocol version" in output or "Cipher is (NONE)" in output


def make_certificate(directory: Path, name: str) -> None:
    """A self-signed key and certificate named like certbot's (privkey.pem, fullchain.pem)."""
    key, cert = directory / "privkey.pem", directory / "fullchain.pem"
    run.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{key}.new", "-out", f"{cert}.new",
        ]
    )  # fmt: skip
    os.replace(f"{key}.new", key)
    os.replace(f"{cert}.new", cert)


def ensure_tls_client_image(client: docker.DockerClient, base: str) -> str:
    """An OpenSSL >= 3.5 client image made once from a trixie base (the host's is too old)."""
    return ensure_tool_image(client, TLS_CLIENT_REPO, base, "openssl")


def run_tool(
    client: docker.DockerClient,
    image: str,
    cmd: Sequence[str],
    *,
    check: bool = True,
    accept: Collection[int] = (0,),
) -> tuple[int, str]:
    """Run a one-shot command in `image` (see run.run_in_image); return status and output."""
    proc = run.run_in_image(client, image, cmd, check=check, accept=accept)
    return proc.returncode, proc.stdout.decode(errors="replace")
