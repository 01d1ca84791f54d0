"""The live repository a publish starts from: fetched, verified by the pinned key, then used.

`pfbuild publish --base URL|DIR` runs on a machine whose aptly has never seen the repository.
The tree clients see is copied (a folder) or downloaded (a URL) into the workspace, file by file
as its indexes name them, and then checked the way apt and `image --from` check it
(builder.publish.treecheck): InRelease by the pinned key, every index by its signed hash, every
package file by its index entry, nothing unlisted. Its signed history (builder.publish.history)
must verify by the same key. Only then are its packages and history used.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from builder.core import gpg, run
from builder.core.aptindex import dearmor_cmdline, release_hashes
from builder.core.atomic import pid_temp_dir
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.publish.history import HISTORY_NAME, History, State, read_signed_history
from builder.publish.signing import SigningConfig, ensure_signing_key, stop_agent
from builder.publish.tree import KEY_FILE_NAME, MANIFEST_NAME
from builder.publish.treecheck import PACKAGES_NAMES, index_text, verify_tree
from builder.publish.treefiles import TreeFiles

log = logging.getLogger("pfbuild")


@dataclass(frozen=True)
class IndexedFile:
    """One package file of a suite's verified index."""

    filename: str
    sha256: str


@dataclass(frozen=True)
class LiveTree:
    """A verified published tree and what it holds."""

    path: Path
    fingerprint: str
    suites: tuple[str, ...]
    index: dict[str, dict[str, IndexedFile]]
    history: History

    def file(self, key: str, suite: str) -> Path | None:
        """The package file of `key` in `suite`, if the tree has it."""
        entry = self.index.get(suite, {}).get(key)
        return self.path / entry.filename if entry else None


def _packages_indexes(suite_dir: Path) -> list[Path]:
    found = [p for p in suite_dir.rglob("*") if p.is_file() and p.name in PACKAGES_NAMES]
    return sorted(found, key=lambda p: (str(p.parent), PACKAGES_NAMES.index(p.name)))


def suite_index(tree: Path, suite: str) -> dict[str, IndexedFile]:
    """aptly key (name_version_arch) -> package file, from a suite's Packages indexes."""
    index: dict[str, IndexedFile] = {}
    seen_dirs: set[Path] = set()
    for path in _packages_indexes(tree / "dists" / suite):
        if path.parent in seen_dirs:
            continue  # one compression of each index is enough
        seen_dirs.add(path.parent)
        for para in deb822.Packages.iter_paragraphs(index_text(path).decode(), use_apt_pkg=False):
            key = f"{para['Package']}_{para['Version']}_{para['Architecture']}"
            index[key] = IndexedFile(para["Filename"], para["SHA256"])
    return index


def _copy_in(files: TreeFiles, rel: str, dest: Path, *, required: bool = True) -> Path | None:
    """Copy one file of the tree into `dest` (downloading it when the tree is remote)."""
    source = files.get(rel)
    if source is None:
        if required:
            raise PfbuildError(
                f"the live tree has no {rel}",
                "a tree pfbuild published has it",
                "pass --base the URL or folder clients use (the folder `publish` wrote)",
            )
        return None
    target = dest / rel
    if source != target:  # a download lands in `dest` itself
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return target


def _required(files: TreeFiles, rel: str, dest: Path) -> Path:
    path = _copy_in(files, rel, dest)
    if path is None:  # pragma: no cover - _copy_in raises for a required file
        raise PfbuildError(f"the live tree has no {rel}")
    return path


def _unverified_suites(manifest: Path) -> list[str]:
    try:
        return sorted(str(s) for s in json.loads(manifest.read_text())["suites"])
    except (OSError, ValueError, KeyError, TypeError):
        raise PfbuildError(
            f"the live tree's {MANIFEST_NAME} is unreadable",
            fix="pass --base the URL or folder of a tree pfbuild published",
        ) from None


def fetch_tree(location: str, dest: Path) -> None:
    """Copy the files of a published tree that its indexes name into `dest` (not verified).

    A remote tree's files are downloaded into `dest` as they are (`verify_release` can reuse
    them there); a folder's are copied, so that it may change under us without effect.
    """
    files = TreeFiles(location, dest)
    manifest = _required(files, MANIFEST_NAME, dest)
    _required(files, KEY_FILE_NAME, dest)
    _copy_in(files, HISTORY_NAME, dest, required=False)
    pool: set[str] = set()
    for suite in _unverified_suites(manifest):
        inrelease = _required(files, f"dists/{suite}/InRelease", dest)
        # Which files to fetch is read from the unverified copy; verify_tree then checks
        # every one of them against the signature, so a lie here only fails the check.
        for name in release_hashes(inrelease.read_bytes()):
            if Path(name).name not in PACKAGES_NAMES:
                continue
            index = _copy_in(files, f"dists/{suite}/{name}", dest, required=False)
            if index is None:
                continue
            for para in deb822.Packages.iter_paragraphs(
                index_text(index).decode(errors="replace"), use_apt_pkg=False
            ):
                pool.add(para["Filename"])
    for rel in sorted(pool):
        _required(files, rel, dest)


def _history(tree: Path, fingerprint: str, index: dict[str, dict[str, IndexedFile]]) -> History:
    path = tree / HISTORY_NAME
    if not path.is_file():
        # A tree from before histories: its live state is all the history there is.
        log.warning("%s has no %s: starting its history from the live indexes", tree, HISTORY_NAME)
        history = History()
        for suite, entries in index.items():
            packages = {key: entry.sha256 for key, entry in entries.items()}
            history.suite(suite).record(State("", "publish", packages, None))
        return history
    with tempfile.TemporaryDirectory(prefix="pfbuild-live-key-") as tmp:
        keyring = Path(tmp) / "live.gpg"
        run.run(dearmor_cmdline(tree / KEY_FILE_NAME, keyring))
        gpg.require_fingerprints(keyring, [fingerprint], str(tree / KEY_FILE_NAME))
        history = read_signed_history(path, keyring, fingerprint)
    for suite, entries in index.items():
        live = history.suite(suite).live
        indexed = {key: entry.sha256 for key, entry in entries.items()}
        if live is None or dict(live.packages) != indexed:
            raise PfbuildError(
                f"the live tree's history does not describe suite {suite} as published",
                "its last state and the signed Packages index list different packages",
                "do not publish on this tree: restore the tree pfbuild published",
            )
    return history


def load_tree(tree: Path, fingerprint: str | None) -> LiveTree:
    """Verify a tree in place (pinned to `fingerprint` when given) and read what it holds."""
    verified = verify_tree(tree, fingerprint)
    index = {suite: suite_index(tree, suite) for suite in verified.suites}
    history = _history(tree, verified.fingerprint, index)
    return LiveTree(tree, verified.fingerprint, verified.suites, index, history)


def fetch_live(location: str, dest: Path, fingerprint: str) -> LiveTree:
    """The live repository at `location`, copied into `dest` and verified by `fingerprint`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    fetch_tree(location, dest)
    live = load_tree(dest, fingerprint)
    log.info(
        "live repository %s: %s, signed by %s",
        location,
        ", ".join(f"{s} ({len(live.index[s])} packages)" for s in live.suites),
        live.fingerprint,
    )
    return live


def pinned_fingerprint(ctx: Context, environ: Mapping[str, str]) -> str:
    """The fingerprint a live tree must be signed by: the repository's signing key.

    PFBUILD_SIGNING_KEY names it without the secret (a job that only reads the tree); otherwise
    it is the key this workspace signs with (PFBUILD_SIGNING_KEY_FILE, or the local key).
    """
    config = SigningConfig.from_env(environ)
    if config.fingerprint:
        return config.fingerprint.upper()
    key = ensure_signing_key(ctx, config)
    stop_agent(ctx, key)
    return key.fingerprint


def read_live(ctx: Context, location: str, environ: Mapping[str, str]) -> LiveTree:
    """What the live repository at `location` holds (index and history), verified as
    `pinned_fingerprint` says; its files are gone when this returns (nothing reads them)."""
    fingerprint = pinned_fingerprint(ctx, environ)
    with pid_temp_dir(ctx.tmp_dir, "live-") as scratch:
        return fetch_live(location, scratch / "tree", fingerprint)
