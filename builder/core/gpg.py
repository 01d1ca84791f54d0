"""OpenPGP checks with gpg/gpgv: which keys a keyring holds, and whether a signature is good."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from builder.core import run
from builder.core.errors import CommandError, PfbuildError


def keyring_fingerprints(keyring: Path) -> set[str]:
    """Fingerprints of the primary keys and subkeys in a keyring file (binary or armored)."""
    with tempfile.TemporaryDirectory(prefix="pfbuild-gnupg-") as home:
        try:
            text = run.output(
                ["gpg", "--homedir", home, "--batch", "--with-colons", "--show-keys", keyring]
            )
        except CommandError:
            return set()
    return {line.split(":")[9].upper() for line in text.splitlines() if line.startswith("fpr:")}


def require_fingerprints(keyring: Path, fingerprints: Iterable[str], what: str) -> None:
    """Refuse a keyring that lacks any of the pinned fingerprints."""
    present = keyring_fingerprints(keyring)
    missing = [fp for fp in fingerprints if fp.upper() not in present]
    if missing:
        raise PfbuildError(
            f"{what} does not hold the pinned key {', '.join(missing)}",
            f"{keyring} has {len(present)} key(s), none of them the one pfbuild trusts",
            "use the genuine keyring package from the archive (or a local copy of it)",
        )


def _status_fingerprints(status: str) -> list[str]:
    # VALIDSIG <fpr> ... <primary-fpr>: the last field names the primary key.
    return [line.split()[-1].upper() for line in status.splitlines() if " VALIDSIG " in line]


def refusal_reason(output: str) -> str:
    """Why gpgv refused, from its status lines, in words (its last line is often cryptic)."""
    status = [line.split()[1:] for line in output.splitlines() if line.startswith("[GNUPG:] ")]
    words = {fields[0] for fields in status if fields}
    if "BADSIG" in words:
        return "the signature does not match the file: one of them was changed"
    if "ERRSIG" in words or "NO_PUBKEY" in words:
        return "signed by a key that is not in the pinned keyring"
    if "NODATA" in words or "NEWSIG" not in words:
        return "not an OpenPGP signature (empty, truncated or another kind of file)"
    lines = output.strip().splitlines()
    return lines[-1] if lines else "gpgv refused it"


def verify_signature(keyring: Path, signed: Path, signature: Path | None = None) -> str:
    """Verify an inline (`signature` None) or detached signature with gpgv; return the signer."""
    cmd: list[str | Path] = ["gpgv", "--status-fd", "1", "--keyring", keyring.absolute()]
    cmd += [signature, signed] if signature is not None else [signed]
    try:
        proc = run.run(cmd)
    except CommandError as exc:
        raise PfbuildError(
            f"bad or unknown OpenPGP signature on {signed.name}",
            refusal_reason(exc.tail),
            "the file is corrupt or was not signed by the pinned key: do not use it",
        ) from None
    signers = _status_fingerprints(proc.stdout.decode(errors="replace"))
    if not signers:
        raise PfbuildError(f"no valid signature on {signed.name}", "gpgv reported no VALIDSIG")
    return signers[0]


def clearsigned_text(keyring: Path, signed: Path) -> bytes:
    """Verify a clearsigned file (an InRelease) and return only the signed payload."""
    verify_signature(keyring, signed)
    with tempfile.TemporaryDirectory(prefix="pfbuild-gpgv-") as tmp:
        out = Path(tmp) / "payload"
        run.run(["gpgv", "--keyring", keyring.absolute(), "--output", out, signed])
        return out.read_bytes()
