"""DSSE envelopes signed with the repository key: gpg signs the PAE, gpgv checks it.

The Dead Simple Signing Envelope (github.com/secure-systems-lab/dsse, protocol.md) signs
PAE(type, payload) = "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload, never the bare
payload, so a signature cannot be replayed on another payload type. Each signature entry
carries, beside the DSSE fields, what two kinds of verifier need:

- `openpgp_signature`: the whole detached OpenPGP signature (base64), which gpgv checks over
  the PAE bytes; `pfbuild verify` does that with the pinned key.
- `keyid`, `sig` and `other_headers` as securesystemslib's GPGKey reads them: the issuer
  fingerprint, the raw signature value (RSA or Ed25519) and the hashed part of the signature
  packet. An independent verifier (securesystemslib.dsse.Envelope.verify) needs no pfbuild code.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.core import gpg, run
from builder.core.errors import PfbuildError
from builder.core.schema import NON_EMPTY, validate
from builder.publish.signing import SigningKey, gpg_cmdline

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
# OpenPGP ids (RFC 4880 9.1, 9.4, 5.2.1, 5.2.3.1): securesystemslib verifies SHA-256 only.
SHA256_ALGO = 8
BINARY_DOCUMENT = 0x00
RSA_ALGOS = frozenset({1, 3})
EDDSA_ALGO = 22
ISSUER_FINGERPRINT = 33
ISSUER_KEYID = 16
SIGNATURE_PACKET = 2

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["payload", "payloadType", "signatures"],
    "properties": {
        "payload": {"type": "string"},
        "payloadType": NON_EMPTY,
        "signatures": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["keyid", "sig"],
                "properties": {
                    "keyid": {"type": "string"},
                    "sig": NON_EMPTY,
                    "other_headers": {"type": "string"},
                    "openpgp_signature": NON_EMPTY,
                },
            },
        },
    },
}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of a payload: the bytes a signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


# ---- reading one OpenPGP signature packet -----------------------------------------------------


@dataclass(frozen=True)
class OpenPGPSignature:
    """What securesystemslib needs from a v4 signature packet."""

    keyid: str
    other_headers: bytes
    value: bytes
    algorithm: int
    digest: int


def _bad_packet(why: str) -> PfbuildError:
    return PfbuildError("gpg made an unexpected signature", why, "sign with an RSA or Ed25519 key")


def _packet_body(data: bytes) -> bytes:
    """The body of the one signature packet `data` holds (old or new packet format)."""
    if len(data) < 2 or not data[0] & 0x80:
        raise _bad_packet("not an OpenPGP packet")
    if data[0] & 0x40:
        kind, first = data[0] & 0x3F, data[1]
        if first < 192:
            length, header = first, 2
        elif first < 224:
            length, header = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            length, header = struct.unpack(">I", data[2:6])[0], 6
        else:
            raise _bad_packet("a partial-length packet")
    else:
        kind, length_type = (data[0] >> 2) & 0x0F, data[0] & 0x03
        sizes = {0: ">B", 1: ">H", 2: ">I"}
        if length_type not in sizes:
            raise _bad_packet("a packet of indeterminate length")
        width = struct.calcsize(sizes[length_type])
        length, header = struct.unpack(sizes[length_type], data[1 : 1 + width])[0], 1 + width
    if kind != SIGNATURE_PACKET or header + length != len(data):
        raise _bad_packet("not exactly one signature packet")
    return data[header:]


def _subpackets(area: bytes) -> list[tuple[int, bytes]]:
    found, ptr = [], 0
    while ptr < len(area):
        first = area[ptr]
        if first < 192:
            length, ptr = first, ptr + 1
        elif first < 255:
            length, ptr = ((first - 192) << 8) + area[ptr + 1] + 192, ptr + 2
        else:
            length, ptr = struct.unpack(">I", area[ptr + 1 : ptr + 5])[0], ptr + 5
        found.append((area[ptr] & 0x7F, area[ptr + 1 : ptr + length]))
        ptr += length
    return found


def _mpis(data: bytes, count: int) -> list[bytes]:
    values, ptr = [], 0
    for _ in range(count):
        bits = struct.unpack(">H", data[ptr : ptr + 2])[0]
        size = (bits + 7) // 8
        values.append(data[ptr + 2 : ptr + 2 + size])
        ptr += 2 + size
    return values


def parse_signature(data: bytes) -> OpenPGPSignature:
    """Read a binary detached v4 signature: issuer, hashed headers, signature value."""
    body = _packet_body(data)
    try:
        version, sig_type, algorithm, digest = body[0], body[1], body[2], body[3]
        hashed_len = struct.unpack(">H", body[4:6])[0]
        hashed_end = 6 + hashed_len
        unhashed_len = struct.unpack(">H", body[hashed_end : hashed_end + 2])[0]
        unhashed_end = hashed_end + 2 + unhashed_len
        hashed, unhashed = body[6:hashed_end], body[hashed_end + 2 : unhashed_end]
        material = body[unhashed_end + 2 :]
        subpackets = _subpackets(unhashed) + _subpackets(hashed)  # hashed ones win
    except (IndexError, struct.error):
        raise _bad_packet("a truncated signature packet") from None
    if version != 4 or sig_type != BINARY_DOCUMENT:
        raise _bad_packet(f"version {version}, type {sig_type}; expected a v4 binary signature")
    keyid = ""
    for kind, value in subpackets:
        if kind == ISSUER_FINGERPRINT:
            keyid = value[1:].hex()
        elif kind == ISSUER_KEYID and not keyid:
            keyid = value.hex()
    if algorithm in RSA_ALGOS:
        value = _mpis(material, 1)[0]
    elif algorithm == EDDSA_ALGO:
        r, s = _mpis(material, 2)
        value = r.rjust(32, b"\0") + s.rjust(32, b"\0")
    else:
        # securesystemslib reads RSA and EdDSA only; gpgv still checks the whole signature.
        value = data
    return OpenPGPSignature(keyid, body[:hashed_end], value, algorithm, digest)


# ---- signing and verifying --------------------------------------------------------------------


def sign_cmdline(key: SigningKey) -> list[str]:
    """gpg call that writes a binary detached SHA-256 signature of stdin by the repository key."""
    return [
        *gpg_cmdline(key.gnupghome, "--local-user", key.fingerprint, "--digest-algo", "SHA256"),
        "--detach-sign", "--output", "-",
    ]  # fmt: skip


def sign_envelope(
    key: SigningKey, payload: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE
) -> dict[str, Any]:
    """A DSSE envelope of `payload`, signed over its PAE with the repository key."""
    signature = run.run(sign_cmdline(key), input=pae(payload_type, payload), env=key.env()).stdout
    parsed = parse_signature(signature)
    if parsed.digest != SHA256_ALGO:
        raise _bad_packet(f"digest algorithm {parsed.digest}, not SHA-256")
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {
                "keyid": parsed.keyid,
                "sig": base64.b64encode(parsed.value).decode(),
                "other_headers": parsed.other_headers.hex(),
                "openpgp_signature": base64.b64encode(signature).decode(),
            }
        ],
    }


def envelope_json(envelope: Mapping[str, Any]) -> bytes:
    """The envelope as the file pfbuild publishes."""
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PfbuildError(f"{what} is not base64") from None


def _agrees(entry: Mapping[str, Any], signature: bytes) -> bool:
    """The securesystemslib fields say what the OpenPGP signature says."""
    parsed = parse_signature(signature)
    return (
        str(entry.get("keyid", "")).lower() == parsed.keyid.lower()
        and _b64(str(entry["sig"]), "sig") == parsed.value
        and str(entry.get("other_headers", "")) == parsed.other_headers.hex()
    )


def verify_envelope(
    data: bytes,
    keyring: Path,
    fingerprint: str,
    what: str,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> bytes:
    """Check a DSSE envelope signed by the pinned key (gpgv over the PAE); return its payload."""
    try:
        envelope = json.loads(data)
    except ValueError:
        raise PfbuildError(f"{what} is not JSON", fix="download it again") from None
    validate(envelope, ENVELOPE_SCHEMA, what, "download it again")
    if envelope["payloadType"] != payload_type:
        raise PfbuildError(
            f"{what} carries a {envelope['payloadType']!r} payload, not {payload_type!r}"
        )
    payload = _b64(envelope["payload"], f"the payload of {what}")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pfbuild-dsse-") as tmp:
        signed = Path(tmp) / "dsse-pae"
        signed.write_bytes(pae(payload_type, payload))
        for n, entry in enumerate(envelope["signatures"]):
            if "openpgp_signature" not in entry:
                problems.append(f"signature {n} has no OpenPGP signature")
                continue
            raw = _b64(entry["openpgp_signature"], f"signature {n} of {what}")
            sig_path = Path(tmp) / f"sig-{n}"
            sig_path.write_bytes(raw)
            try:
                gpg.verify_signature(keyring, signed, sig_path, signers=[fingerprint])
                if not _agrees(entry, raw):
                    raise PfbuildError(
                        f"signature {n} of {what}: its securesystemslib fields differ from "
                        "its OpenPGP signature"
                    )
            except PfbuildError as exc:
                problems.append(f"{exc.what}: {exc.why}" if exc.why else exc.what)
                continue
            return payload
    raise PfbuildError(
        f"no good signature by {fingerprint} on {what}",
        "; ".join(problems),
        "the file was changed or signed by another key: do not trust it",
    )
