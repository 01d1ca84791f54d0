"""DSSE envelopes signed by real gpg keys, checked by securesystemslib as well as by gpgv."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import GPGSigner  # type: ignore[attr-defined]  # not re-exported

from builder.core import run
from builder.core.errors import PfbuildError
from builder.publish.dsse import envelope_json, sign_envelope, verify_envelope
from builder.publish.signing import SigningKey, generate_key_cmdline
from tests.fixtures.attest import export_key, make_key

# gpg signs and gpgv verifies: host tools.
pytestmark = pytest.mark.integration

PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1","subject":[]}'


def keyring_of(key: SigningKey, where: Path) -> Path:
    keyring = where / "keyring.gpg"
    run.run(
        ["gpg", "--homedir", key.gnupghome, "--batch", "--yes", "--output", keyring, "--export",
         key.fingerprint]
    )  # fmt: skip
    return keyring


def independent_verify(key: SigningKey, document: bytes) -> None:
    """securesystemslib's own reading of our envelope, with the public key gpg exports."""
    _uri, public = GPGSigner.import_(key.fingerprint.lower(), str(key.gnupghome))
    Envelope.from_dict(json.loads(document)).verify([public], 1)


def tampered(document: bytes, payload: bytes) -> bytes:
    envelope = json.loads(document)
    envelope["payload"] = base64.b64encode(payload).decode()
    return json.dumps(envelope).encode()


def rsa_key(where: Path) -> SigningKey:
    home = where / "rsa"
    home.mkdir(mode=0o700)
    run.run(generate_key_cmdline(home, "rsa2048"))
    text = run.output(["gpg", "--homedir", home, "--batch", "--with-colons", "--list-keys"])
    fpr = next(line.split(":")[9] for line in text.splitlines() if line.startswith("fpr:"))
    return SigningKey(fpr, home, local=True)


@pytest.mark.parametrize("algo", ["ed25519", "rsa"])
def test_securesystemslib_verifies_what_we_sign(tmp_path: Path, algo: str) -> None:
    key = make_key(tmp_path) if algo == "ed25519" else rsa_key(tmp_path)
    document = envelope_json(sign_envelope(key, PAYLOAD))
    envelope = json.loads(document)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(envelope["payload"]) == PAYLOAD
    (signature,) = envelope["signatures"]
    assert signature["keyid"] == key.fingerprint.lower()
    independent_verify(key, document)
    assert verify_envelope(document, keyring_of(key, tmp_path), key.fingerprint, "x") == PAYLOAD


def test_a_changed_payload_fails_both_verifiers(tmp_path: Path) -> None:
    key = make_key(tmp_path)
    document = tampered(envelope_json(sign_envelope(key, PAYLOAD)), PAYLOAD.replace(b"[]", b"[1]"))
    with pytest.raises(VerificationError):
        independent_verify(key, document)
    with pytest.raises(PfbuildError, match=r"no good signature .* the signature does not match"):
        verify_envelope(document, keyring_of(key, tmp_path), key.fingerprint, "provenance")


def test_another_payload_type_or_another_key_is_refused(tmp_path: Path) -> None:
    key = make_key(tmp_path)
    document = envelope_json(sign_envelope(key, PAYLOAD, "application/json"))
    keyring = keyring_of(key, tmp_path)
    with pytest.raises(PfbuildError, match="'application/json' payload"):
        verify_envelope(document, keyring, key.fingerprint, "provenance")
    other = make_key(tmp_path / "other")
    mine = envelope_json(sign_envelope(key, PAYLOAD))
    export_key(other, tmp_path / "other.asc")
    with pytest.raises(PfbuildError, match="not by the pinned"):
        verify_envelope(mine, keyring, other.fingerprint, "provenance")
