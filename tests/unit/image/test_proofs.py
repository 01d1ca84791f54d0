"""The image proofs without Docker: command lines, how their output is judged, the runners."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import cast

import docker.models.containers
import pytest

import docker
from builder.core.errors import CommandError
from builder.image import container, proofs, smtp, tlsclient

pytestmark = pytest.mark.unit

S_CLIENT_PQ = """\
CONNECTED(00000003)
---
Peer signature type: rsa_pss_rsae_sha256
Negotiated TLS1.3 group: X25519MLKEM768
---
New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384
"""

S_CLIENT_TLS11_REFUSED = """\
40F7A1B2C37F0000:error:0A00042E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version
CONNECTED(00000003)
---
no peer certificate available
---
New, (NONE), Cipher is (NONE)
Protocol: TLSv1.1
"""

S_CLIENT_TLS11_ACCEPTED = """\
CONNECTED(00000003)
---
New, TLSv1.1, Cipher is ECDHE-RSA-AES256-SHA
Protocol: TLSv1.1
"""

MAPS = """\
55d0c0a00000-55d0c0a10000 r--p 00000000 00:2a 1234 /usr/lib/postfix/sbin/master
7f1e2a000000-7f1e2a020000 r-xp 00000000 00:2a 5678 /usr/lib/x86_64-linux-gnu/libmimalloc-secure.so.2
7f1e2b000000-7f1e2b001000 rw-p 00000000 00:00 0
7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 [heap]
7f1e2d000000-7f1e2d100000 r-xp 00000000 00:2a 91 /usr/lib/x86_64-linux-gnu/libc.so.6
"""


def test_pq_handshake_cmdline() -> None:
    assert tlsclient.pq_handshake_cmdline(2525) == [
        "openssl",
        "s_client",
        "-starttls",
        "smtp",
        "-connect",
        "127.0.0.1:2525",
        "-groups",
        "X25519MLKEM768",
    ]


def test_tls11_cmdline_lowers_only_the_client_security_level() -> None:
    cmd = tlsclient.tls11_handshake_cmdline(2525)
    assert cmd[:6] == tlsclient.s_client_cmdline(2525)
    assert cmd[6:] == ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]


def test_negotiated_group() -> None:
    assert tlsclient.negotiated_group(S_CLIENT_PQ) == "X25519MLKEM768"
    assert tlsclient.negotiated_group("CONNECTED(00000003)\n") is None


@pytest.mark.parametrize(
    ("rc", "output", "refused"),
    [
        (1, S_CLIENT_TLS11_REFUSED, True),
        (0, S_CLIENT_TLS11_ACCEPTED, False),
        (1, S_CLIENT_TLS11_ACCEPTED, False),
        # Our own client refusing to offer TLS 1.1 proves nothing about the server.
        (1, "error:0A0000BF:SSL routines::no protocols available\n", False),
    ],
)
def test_tls11_refusal_is_judged_from_the_server_side(rc: int, output: str, refused: bool) -> None:
    assert tlsclient.is_tls11_refused_by_server(rc, output) is refused


def test_maps_libraries_and_prefix_match() -> None:
    libs = container.maps_libraries(MAPS)
    assert libs == {"master", "libmimalloc-secure.so.2", "libc.so.6"}
    assert container.has_library(libs, proofs.MIMALLOC_LIB)
    assert not container.has_library(libs, proofs.JEMALLOC_LIB)


def test_warning_lines() -> None:
    text = "postconf: warning: /etc/postfix/main.cf: unused parameter: foo=bar\nok\n"
    assert proofs.warning_lines(text) == [
        "postconf: warning: /etc/postfix/main.cf: unused parameter: foo=bar"
    ]


def test_container_env_is_loopback_only_with_our_port() -> None:
    env = container.container_env(2600, {"MALLOC": "none"})
    assert env == {
        "SMTP_PORT": "2600",
        "POSTFIX_inet_interfaces": "127.0.0.1",
        "POSTFIX_mynetworks": "127.0.0.1/32",
        "MALLOC": "none",
    }


def test_free_port_is_bindable() -> None:
    port = smtp.free_port()
    assert 1024 <= port <= 65535


def test_certificate_subject() -> None:
    out = "CONNECTED(00000003)\n---\nsubject=CN = pfbuild-mounted-1\nissuer=CN = x\n"
    assert tlsclient.certificate_subject(out) == "CN=pfbuild-mounted-1"
    assert tlsclient.certificate_subject("CONNECTED(00000003)\n") == ""


@dataclass
class FakeExecResult:
    exit_code: int
    output: bytes


@dataclass
class FakeContainer:
    """The slice of a docker Container that the runners use."""

    name: str = "pfbuild-imagetest-2525"
    status: int = 0
    output: bytes = b""
    calls: list[list[str]] = field(default_factory=list)
    removed: bool = False

    def exec_run(self, cmd: list[str], stdout: bool, stderr: bool, user: str) -> FakeExecResult:
        self.calls.append(cmd)
        return FakeExecResult(self.status, self.output)

    def wait(self, timeout: float) -> dict[str, int]:
        return {"StatusCode": self.status}

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        return self.output

    def remove(self, force: bool, v: bool) -> None:
        self.removed = True


@dataclass
class FakeContainers:
    made: FakeContainer
    runs: list[tuple[str, list[str], str]] = field(default_factory=list)

    def run(self, image: str, cmd: list[str], network_mode: str, detach: bool) -> FakeContainer:
        self.runs.append((image, cmd, network_mode))
        return self.made


@dataclass
class FakeClient:
    containers: FakeContainers


def postfix_container(fake: FakeContainer) -> container.PostfixContainer:
    """A PostfixContainer around a fake (the casts: fakes, not docker's classes)."""
    client = cast(docker.DockerClient, None)
    return container.PostfixContainer(client, cast(docker.models.containers.Container, fake), 2525)


def test_exec_goes_through_the_logged_runner(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeContainer(status=0, output=b'{"queue_id": "4ABC"}\n')
    running = postfix_container(fake)
    with caplog.at_level(logging.DEBUG, logger="pfbuild"):
        assert proofs.queue_ids(running) == {"4ABC"}
    assert fake.calls == [["postqueue", "-j"]]
    assert "$ docker exec pfbuild-imagetest-2525 postqueue -j" in caplog.messages


def test_exec_failure_names_the_command() -> None:
    fake = FakeContainer(status=1, output=b"postqueue: fatal: no queue\n")
    running = postfix_container(fake)
    with pytest.raises(CommandError, match="docker exec pfbuild-imagetest-2525 postqueue -j"):
        proofs.queue_ids(running)
    assert running.exec(["postconf"], check=False) == (1, "postqueue: fatal: no queue\n")


def test_run_tool_logs_judges_and_removes(caplog: pytest.LogCaptureFixture) -> None:
    made = FakeContainer(status=1, output=b"handshake failure\n")
    fake = FakeClient(FakeContainers(made))
    client = cast(docker.DockerClient, fake)  # a fake, not a DockerClient
    cmd = tlsclient.tls11_handshake_cmdline(2525)
    with caplog.at_level(logging.DEBUG, logger="pfbuild"):
        assert tlsclient.run_tool(client, "tls:1", cmd, check=False) == (1, "handshake failure\n")
    assert fake.containers.runs == [("tls:1", cmd, "host")]
    assert made.removed
    assert f"$ docker run --rm --network host tls:1 {' '.join(cmd)}" in caplog.messages
    assert tlsclient.run_tool(client, "tls:1", ["false"], accept=(0, 1))[0] == 1
    with pytest.raises(CommandError, match="exit status 1: docker run"):
        tlsclient.run_tool(client, "tls:1", ["false"])
