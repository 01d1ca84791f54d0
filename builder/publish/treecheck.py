"""A published apt tree made elsewhere, verified the way apt would before pfbuild uses it.

The image job of a CI rebuild gets the repository as a downloaded folder. Its manifest is the
signed InRelease of each suite: the signature must be good and made by the tree's key (pinned by
fingerprint when the caller knows it), every index the InRelease lists must match its hash, and
every .deb in the pool must be listed in a Packages index with a matching hash. A file nobody
vouches for is refused.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from builder.core import gpg, run
from builder.core.aptindex import dearmor_cmdline, release_hashes
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError
from builder.publish.tree import KEY_FILE_NAME, MANIFEST_NAME

log = logging.getLogger("pfbuild")


@dataclass(frozen=True)
class VerifiedTree:
    """What the checks established about a tree."""

    path: Path
    fingerprint: str
    suites: tuple[str, ...]
    debs: int


def _refuse(what: str, why: str) -> PfbuildError:
    return PfbuildError(what, why, "do not use this tree: download the publish job's tree again")


def _tree_manifest(tree: Path) -> tuple[str, list[str]]:
    try:
        data = json.loads((tree / MANIFEST_NAME).read_text())
        fingerprint = str(data["fingerprint"]).upper()
        suites = sorted(str(s) for s in data["suites"])
    except (OSError, ValueError, KeyError, TypeError):
        raise PfbuildError(
            f"{tree} is not a tree pfbuild published",
            f"it has no readable {MANIFEST_NAME}",
            "pass the folder `pfbuild publish` left as dist/apt (the publish job's artifact)",
        ) from None
    return fingerprint, suites


# The Packages index in each compression apt may fetch it in.
PACKAGES_NAMES = ("Packages", "Packages.gz", "Packages.bz2")


def index_text(path: Path) -> bytes:
    """A Packages index's text, whichever compression it has."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".bz2":
        return bz2.decompress(data)
    return data


def verified_release(keyring: Path, inrelease: Path, fingerprint: str, suite: str) -> bytes:
    """The signed payload of a suite's InRelease, made by the pinned key for that suite."""
    # The tree's key file may carry more keys than its manifest names: only that one may sign,
    # and only the signed payload (not text around it) lists the indexes.
    payload = gpg.clearsigned_text(keyring, inrelease, [fingerprint])
    release = deb822.Release(payload)
    if release.get("Suite") != suite and release.get("Codename") != suite:
        raise _refuse(
            f"{inrelease} is signed for {release.get('Suite')!r}, not {suite}",
            "a validly signed index of another suite must not stand in for this one",
        )
    return payload


def _verify_suite(
    tree: Path, keyring: Path, fingerprint: str, suite: str
) -> dict[str, tuple[str, int]]:
    """Check a suite's InRelease and indexes; return its pool files: path -> (sha256, size)."""
    suite_dir = tree / "dists" / suite
    inrelease = suite_dir / "InRelease"
    if not inrelease.is_file():
        raise _refuse(f"{tree}: suite {suite} has no InRelease", "its manifest names the suite")
    payload = verified_release(keyring, inrelease, fingerprint, suite)
    packages: dict[str, tuple[str, int]] = {}
    indexes = 0
    for name, (sha256, size) in sorted(release_hashes(payload).items()):
        path = suite_dir / name
        if not path.is_file():
            continue  # aptly lists compressions it did not write; apt fetches one of them
        if path.stat().st_size != size or sha256_file(path) != sha256:
            raise _refuse(f"{path} does not match its signed InRelease", "the index changed")
        if Path(name).name in PACKAGES_NAMES:
            indexes += 1
            for para in deb822.Packages.iter_paragraphs(
                index_text(path).decode(), use_apt_pkg=False
            ):
                packages[para["Filename"]] = (para["SHA256"], int(para["Size"]))
    if not indexes:
        raise _refuse(f"{tree}: suite {suite} has no Packages index", "nothing vouches for a .deb")
    return packages


def _refuse_outside_links(tree: Path) -> None:
    """A served tree must not link to anything outside it (by-hash links stay inside)."""
    top = tree.resolve()
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() and not path.resolve().is_relative_to(top):
                raise _refuse(f"{path} links outside the tree", "the server would expose it")


def verify_tree(tree: Path, require_key: str | None = None) -> VerifiedTree:
    """Verify a published tree; `require_key` pins the signer's fingerprint."""
    fingerprint, suites = _tree_manifest(tree)
    if require_key and require_key.upper() != fingerprint:
        raise _refuse(
            f"{tree} is signed by {fingerprint}, not the required {require_key.upper()}",
            "the tree comes from another signing key",
        )
    if not require_key:
        log.warning(
            "%s: no --require-key given: trusting the key the tree carries (%s)", tree, fingerprint
        )
    with tempfile.TemporaryDirectory(prefix="pfbuild-tree-") as tmp:
        keyring = Path(tmp) / "tree-keyring.gpg"
        run.run(dearmor_cmdline(tree / KEY_FILE_NAME, keyring))
        gpg.require_fingerprints(keyring, [fingerprint], f"{tree / KEY_FILE_NAME}")
        listed: dict[str, tuple[str, int]] = {}
        for suite in suites:
            listed.update(_verify_suite(tree, keyring, fingerprint, suite))
    _refuse_outside_links(tree)
    debs = 0
    for root, _dirs, files in os.walk(tree / "pool"):
        for name in files:
            path = Path(root) / name
            rel = str(path.relative_to(tree))
            if rel not in listed:
                raise _refuse(f"{path} is in no Packages index", "a stray file in the pool")
            sha256, size = listed[rel]
            if path.stat().st_size != size or sha256_file(path) != sha256:
                raise _refuse(f"{path} does not match its Packages entry", "the file changed")
            debs += 1
    missing = sorted(rel for rel in listed if not (tree / rel).is_file())
    if missing:
        raise _refuse(f"{tree} lacks {missing[0]}", f"{len(missing)} indexed file(s) are missing")
    log.info("%s: %d suite(s), %d package(s), signed by %s", tree, len(suites), debs, fingerprint)
    return VerifiedTree(tree, fingerprint, tuple(suites), debs)
