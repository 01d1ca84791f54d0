"""DSSE's pre-authentication encoding and the OpenPGP signature packet securesystemslib reads."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from builder.core.errors import PfbuildError
from builder.publish.dsse import pae, parse_signature, sign_cmdline
from builder.publish.signing import SigningKey

pytestmark = pytest.mark.unit

FPR = bytes(range(20))


def test_pae_is_the_dsse_spec_encoding() -> None:
    # The example of the DSSE protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("application/vnd.in-toto+json", b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "


def _subpacket(kind: int, data: bytes) -> bytes:
    return bytes([len(data) + 1, kind]) + data


def _mpi(value: bytes, bits: int) -> bytes:
    return struct.pack(">H", bits) + value


def eddsa_packet(*, new_format: bool = True, sig_type: int = 0) -> tuple[bytes, bytes]:
    """A v4 EdDSA signature packet over SHA-256; also its hashed part."""
    hashed = _subpacket(2, b"\x69\x00\x00\x00") + _subpacket(33, b"\x04" + FPR)
    head = bytes([4, sig_type, 22, 8]) + struct.pack(">H", len(hashed)) + hashed
    unhashed = _subpacket(16, FPR[-8:])
    r, s = b"\x7f" * 32, b"\x01" * 31  # s has a leading zero byte dropped, as MPIs do
    body = (
        head + struct.pack(">H", len(unhashed)) + unhashed + b"\xab\xcd"
        + _mpi(r, 255) + _mpi(s, 241)
    )  # fmt: skip
    header = bytes([0xC2, len(body)]) if new_format else bytes([0x88, len(body)])
    return header + body, head


@pytest.mark.parametrize("new_format", [True, False])
def test_signature_packet_yields_issuer_hashed_headers_and_raw_signature(new_format: bool) -> None:
    packet, head = eddsa_packet(new_format=new_format)
    parsed = parse_signature(packet)
    assert parsed.keyid == FPR.hex()
    assert parsed.other_headers == head
    assert parsed.value == b"\x7f" * 32 + b"\x00" + b"\x01" * 31
    assert (parsed.algorithm, parsed.digest) == (22, 8)


def test_only_one_binary_v4_signature_packet_is_read() -> None:
    packet, _ = eddsa_packet(sig_type=1)  # a text-mode signature
    with pytest.raises(PfbuildError, match="expected a v4 binary signature"):
        parse_signature(packet)
    good, _ = eddsa_packet()
    with pytest.raises(PfbuildError, match="not exactly one signature packet"):
        parse_signature(good + good)
    with pytest.raises(PfbuildError, match="not exactly one signature packet"):
        parse_signature(bytes([0xC6, 1, 0]))  # a public key packet
    with pytest.raises(PfbuildError, match="not an OpenPGP packet"):
        parse_signature(b"{}")


def test_sign_cmdline_makes_a_detached_sha256_signature_by_the_repository_key() -> None:
    key = SigningKey("A" * 40, Path("/ws/signing"), local=True)
    cmd = sign_cmdline(key)
    assert cmd[:3] == ["gpg", "--homedir", "/ws/signing"]
    assert cmd[cmd.index("--local-user") + 1] == "A" * 40
    assert cmd[cmd.index("--digest-algo") + 1] == "SHA256"
    assert "--detach-sign" in cmd and "--armor" not in cmd and "--clearsign" not in cmd
