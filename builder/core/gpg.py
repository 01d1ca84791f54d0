"""OpenPGP checks with gpg/gpgv: which keys a keyring holds, and who made a good signature.

gpgv accepts a signature by any key in the keyring it is given. Every check here therefore
names its signer, and the callers that know a pin pass it: a signature by another key, even one
the keyring holds, is refused.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path

from builder.core import run
from builder.core.errors import CommandError, PfbuildError


def _show_keys(keyring: Path) -> list[list[str]]:
    with tempfile.TemporaryDirectory(prefix="pfbuild-gnupg-") as home:
        try:
            text = run.output(
                ["gpg", "--homedir", home, "--batch", "--with-colons", "--show-keys", keyring]
            )
        except CommandError:
            return []
    return [line.split(":") for line in text.splitlines()]


def keyring_fingerprints(keyring: Path) -> set[str]:
    """Fingerprints of the primary keys and subkeys in a keyring file (binary or armored)."""
    return {fields[9].upper() for fields in _show_keys(keyring) if fields[0] == "fpr"}


def primary_fingerprints(keyring: Path) -> set[str]:
    """Fingerprints of the primary keys alone (the ones a pin names) in a keyring file."""
    found: set[str] = set()
    after_pub = False
    for fields in _show_keys(keyring):
        if fields[0] == "fpr" and after_pub:
            found.add(fields[9].upper())
        after_pub = fields[0] == "pub"
    return found


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


def import_keys_cmdline(home: object, keyring: object) -> list[str]:
    """gpg call that imports every key of a keyring file into a throwaway home."""
    return ["gpg", "--homedir", str(home), "--batch", "--quiet", "--import", str(keyring)]


def export_keys_cmdline(home: object, fingerprints: Iterable[str], output: object) -> list[str]:
    """gpg call that writes exactly the named keys (with their subkeys) as a binary keyring."""
    return [
        "gpg", "--homedir", str(home), "--batch", "--yes", "--output", str(output),
        "--export", *(fp.upper() for fp in fingerprints),
    ]  # fmt: skip


def export_pinned_keys(source: Path, fingerprints: Collection[str], dest: Path, what: str) -> None:
    """Write to `dest` a keyring holding only the pinned keys taken from `source`.

    A keyring package may carry more keys than the one pfbuild pins (older archive keys, the CD
    image key, or one slipped in): gpgv would accept any of them, so none but the pin is kept.
    """
    require_fingerprints(source, fingerprints, what)
    with tempfile.TemporaryDirectory(prefix="pfbuild-gnupg-") as home:
        run.run(import_keys_cmdline(home, source.absolute()))
        run.run(export_keys_cmdline(home, fingerprints, dest.absolute()))
    got = primary_fingerprints(dest)
    want = {fp.upper() for fp in fingerprints}
    if got != want:
        raise PfbuildError(
            f"the keyring exported from {what} holds {', '.join(sorted(got)) or 'no key'}",
            f"expected exactly the pinned {', '.join(sorted(want))}",
            "pin primary-key fingerprints (40 hex digits) in the target data",
        )


def _status_signers(status: str) -> list[tuple[str, str]]:
    # VALIDSIG <signing-key fpr> ... <primary-key fpr>: both ends, as a pin may name either.
    signers = []
    for line in status.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[:2] == ["[GNUPG:]", "VALIDSIG"]:
            signers.append((fields[2].upper(), fields[-1].upper()))
    return signers


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


def gpgv_cmdline(
    keyring: Path, signed: Path, signature: Path | None = None, output: Path | None = None
) -> list[str]:
    """gpgv call that verifies `signed` (inline, or against a detached `signature`)."""
    cmd = ["gpgv", "--status-fd", "1", "--keyring", str(keyring.absolute())]
    if output is not None:
        cmd += ["--output", str(output)]
    return cmd + ([str(signature), str(signed)] if signature is not None else [str(signed)])


def verify_signature(
    keyring: Path,
    signed: Path,
    signature: Path | None = None,
    *,
    signers: Collection[str] | None = None,
    output: Path | None = None,
) -> str:
    """Verify an inline (`signature` None) or detached signature; return the signer's primary key.

    With `signers`, every good signature must be by one of those keys (primary or signing
    subkey): the keyring alone does not decide who may sign. `output` receives the signed data.
    """
    try:
        proc = run.run(gpgv_cmdline(keyring, signed, signature, output))
    except CommandError as exc:
        raise PfbuildError(
            f"bad or unknown OpenPGP signature on {signed.name}",
            refusal_reason(exc.tail),
            "the file is corrupt or was not signed by the pinned key: do not use it",
        ) from None
    found = _status_signers(proc.stdout.decode(errors="replace"))
    if not found:
        raise PfbuildError(f"no valid signature on {signed.name}", "gpgv reported no VALIDSIG")
    if signers is not None:
        pins = {fp.upper() for fp in signers}
        others = [primary for key, primary in found if not {key, primary} & pins]
        if others or not pins:
            raise PfbuildError(
                f"{signed.name} is signed by {', '.join(others) or found[0][1]}, "
                f"not by the pinned {', '.join(sorted(pins)) or 'key'}",
                "a key the keyring happens to hold is not the key pfbuild trusts",
                "use the genuine file; check the pinned fingerprint if the signer changed its key",
            )
    return found[0][1]


def clearsigned_text(keyring: Path, signed: Path, signers: Collection[str]) -> bytes:
    """Verify a clearsigned file (an InRelease) made by one of `signers`; return the payload.

    The payload is what gpgv verified, written by the same gpgv run: text outside the signed
    part of the file never reaches the caller.
    """
    with tempfile.TemporaryDirectory(prefix="pfbuild-gpgv-") as tmp:
        out = Path(tmp) / "payload"
        verify_signature(keyring, signed, signers=signers, output=out)
        return out.read_bytes()
