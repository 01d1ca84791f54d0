"""The pure parts of builder/imagetest.py: command lines and how their output is judged."""

from __future__ import annotations

import pytest

from builder.image import proofs as imagetest

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
    assert imagetest.pq_handshake_cmdline(2525) == [
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
    cmd = imagetest.tls11_handshake_cmdline(2525)
    assert cmd[:6] == imagetest.s_client_cmdline(2525)
    assert cmd[6:] == ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]


def test_negotiated_group() -> None:
    assert imagetest.negotiated_group(S_CLIENT_PQ) == "X25519MLKEM768"
    assert imagetest.negotiated_group("CONNECTED(00000003)\n") is None


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
    assert imagetest.is_tls11_refused_by_server(rc, output) is refused


def test_maps_libraries_and_prefix_match() -> None:
    libs = imagetest.maps_libraries(MAPS)
    assert libs == {"master", "libmimalloc-secure.so.2", "libc.so.6"}
    assert imagetest.has_library(libs, imagetest.MIMALLOC_LIB)
    assert not imagetest.has_library(libs, imagetest.JEMALLOC_LIB)


def test_warning_lines() -> None:
    text = "postconf: warning: /etc/postfix/main.cf: unused parameter: foo=bar\nok\n"
    assert imagetest.warning_lines(text) == [
        "postconf: warning: /etc/postfix/main.cf: unused parameter: foo=bar"
    ]


def test_container_env_is_loopback_only_with_our_port() -> None:
    env = imagetest.container_env(2600, {"MALLOC": "none"})
    assert env == {
        "SMTP_PORT": "2600",
        "POSTFIX_inet_interfaces": "127.0.0.1",
        "POSTFIX_mynetworks": "127.0.0.1/32",
        "MALLOC": "none",
    }


def test_free_port_is_bindable() -> None:
    port = imagetest.free_port()
    assert 1024 <= port <= 65535
