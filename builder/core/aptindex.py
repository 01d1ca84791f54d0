"""Reading an apt archive's signed indices: the Release hash table."""

from __future__ import annotations

from pathlib import Path

from debian import deb822


def release_hashes(release: bytes) -> dict[str, tuple[str, int]]:
    """The SHA256 table of a (verified) Release payload: index name -> (sha256, size)."""
    entry = deb822.Release(release)
    return {item["name"]: (item["sha256"], int(item["size"])) for item in entry.get("SHA256", [])}


def dearmor_cmdline(armored: Path | str, output: Path | str) -> list[str]:
    """gpg call that turns an armored key into the binary keyring gpgv needs."""
    return ["gpg", "--batch", "--yes", "--dearmor", "--output", str(output), str(armored)]
