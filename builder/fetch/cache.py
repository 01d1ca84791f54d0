"""The verified-source cache: files by sha256, an index keyed by recipe, version and trust anchor,
and the sources.json record of what a source package was made from.

A cached file is reused only for a recipe that trusts what verified it (the upstream key's
fingerprint, the packaging's pinned .dsc hash or archive keyring), so a site recipe's files never
pass as the built-in recipe's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from builder.core.atomic import (
    atomic_file,
    remove_path,
    write_errors,
    write_json,
)
from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError
from builder.core.lock import resource_lock
from builder.core.schema import NON_EMPTY, SHA256, validate
from builder.fetch.archive import VerifiedFile
from builder.model.loader import recipe_origin
from builder.model.recipe import Recipe

log = logging.getLogger("pfbuild")

ROLE_TARBALL = "upstream-tarball"
ROLE_SIGNATURE = "upstream-signature"
ROLE_DSC = "dsc"
ROLE_DEBIAN = "debian-tarball"
ROLE_SOURCE = "source-file"
TARBALL_RE = re.compile(r"\.tar\.(gz|xz|bz2|zst)$")


@dataclass(frozen=True)
class FetchResult:
    """Every verified file of one recipe version."""

    recipe: str
    version: str
    files: tuple[VerifiedFile, ...]
    from_cache: bool = False
    # What the files were verified against (see trust_anchor).
    anchor: Mapping[str, str] = field(default_factory=dict)

    def get(self, role: str) -> VerifiedFile:
        """The one file with `role` (e.g. upstream-tarball, dsc, debian-tarball)."""
        for f in self.files:
            if f.role == role:
                return f
        raise PfbuildError(f"{self.recipe} {self.version} has no {role} in its fetch result")

    @property
    def tarball(self) -> VerifiedFile:
        """The verified upstream tarball."""
        return self.get(ROLE_TARBALL)

    @property
    def signature(self) -> VerifiedFile:
        """The upstream tarball's detached signature."""
        return self.get(ROLE_SIGNATURE)

    @property
    def dsc(self) -> VerifiedFile:
        """The verified .dsc of the base packaging."""
        return self.get(ROLE_DSC)


# A file name from a record becomes a path: a plain name, never hidden, never a folder.
FILE_NAME = {"type": "string", "pattern": "^[^./][^/]*$"}
FINGERPRINT = {"type": "string", "pattern": "^[0-9A-F]{40}$"}
ANCHOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["packaging"],
    "additionalProperties": False,
    "properties": {
        "upstream_fingerprint": FINGERPRINT,
        "packaging": NON_EMPTY,
        "dsc_sha256": SHA256,
        "archive_keyring": NON_EMPTY,
        "archive_keyring_sha256": {"type": "string", "pattern": "^([0-9a-f]{64}|missing)$"},
    },
}
INDEX_ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["anchor", "files"],
    "additionalProperties": False,
    "properties": {
        "anchor": ANCHOR_SCHEMA,
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "name", "sha256", "url", "how"],
                "additionalProperties": False,
                "properties": {
                    "role": NON_EMPTY,
                    "name": FILE_NAME,
                    "sha256": SHA256,
                    "url": NON_EMPTY,
                    "how": NON_EMPTY,
                },
            },
        },
    },
}
INDEX_FIX = "nothing to do: pfbuild ignores the bad entries and rewrites the index"
PROVENANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["recipe", "recipe_file", "version", "anchor", "files"],
    "additionalProperties": False,
    "properties": {
        "recipe": NON_EMPTY,
        "version": NON_EMPTY,
        "anchor": ANCHOR_SCHEMA,
        "recipe_file": {
            "type": "object",
            "required": ["name", "path", "sha256", "site", "shadows_builtin"],
            "properties": {
                "name": NON_EMPTY,
                "path": NON_EMPTY,
                "sha256": SHA256,
                "site": {"type": "boolean"},
                "shadows_builtin": {"type": "boolean"},
            },
        },
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "path", "sha256", "url", "verified_by", "role"],
                "additionalProperties": False,
                "properties": {
                    "name": FILE_NAME,
                    "path": NON_EMPTY,
                    "sha256": SHA256,
                    "url": NON_EMPTY,
                    "verified_by": NON_EMPTY,
                    "role": NON_EMPTY,
                },
            },
        },
    },
}


def index_path(ctx: Context) -> Path:
    """The JSON index (recipe, version, trust anchor) -> cached entries."""
    return ctx.sources_cache / "index.json"


def cache_path(ctx: Context, sha256: str, name: str) -> Path:
    """Where a verified file lives: sources/<sha256>/<name> (the name tools expect)."""
    return ctx.sources_cache / sha256 / name


def trust_anchor(recipe: Recipe, version: str) -> dict[str, str]:
    """What `recipe` trusts for `version`: files verified against anything else are not reused.

    The upstream tarball is trusted through the pinned key's fingerprint; the packaging through
    its pinned .dsc hash when there is one (then the archive keyring cannot change what is
    accepted), else through the archive keyring, by content.
    """
    src = recipe.packaging_for(version)
    anchor = {"packaging": f"{src.package} {src.version}"}
    if recipe.upstream is not None:
        anchor["upstream_fingerprint"] = recipe.upstream.fingerprint.upper()
    if src.dsc_sha256:
        anchor["dsc_sha256"] = src.dsc_sha256
    else:
        keyring = Path(src.keyring)
        anchor["archive_keyring"] = str(keyring)
        anchor["archive_keyring_sha256"] = sha256_file(keyring) if keyring.is_file() else "missing"
    return anchor


def _anchor_id(anchor: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(anchor), sort_keys=True).encode()).hexdigest()[:16]


def _key(recipe: Recipe, version: str, anchor: Mapping[str, str]) -> str:
    return f"{recipe.name} {version} {_anchor_id(anchor)}"


def read_index(ctx: Context, *, quiet: bool = False) -> dict[str, Any]:
    """The cache index; unreadable or malformed entries are dropped with a warning."""
    path = index_path(ctx)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        if not quiet:
            why = getattr(exc, "strerror", None) or str(exc)
            log.warning(
                "cache index %s is unreadable (%s); ignoring it, it is rewritten", path, why
            )
        return {}
    if not isinstance(data, dict):
        data = {"": data}
    index: dict[str, Any] = {}
    bad: list[str] = []
    for key, entry in data.items():
        try:
            validate(entry, INDEX_ENTRY_SCHEMA, f"entry {key!r}", INDEX_FIX)
        except PfbuildError as exc:
            bad.append(f"{exc.what}: {exc.why}")
            continue
        index[key] = entry
    if bad and not quiet:
        log.warning(
            "cache index %s is malformed: %s%s; ignoring %s, it is rewritten",
            path,
            bad[0],
            f" (and {len(bad) - 1} more)" if len(bad) > 1 else "",
            "that entry" if len(bad) == 1 else "those entries",
        )
    return index


def _required_roles(recipe: Recipe) -> set[str]:
    # An entry without the files a recipe uses is no entry (an index edited by hand, say).
    if recipe.upstream is None:
        return {ROLE_DSC}
    return {ROLE_DSC, ROLE_TARBALL, ROLE_SIGNATURE}


def cached_result(
    ctx: Context, recipe: Recipe, version: str, anchor: Mapping[str, str], index: Mapping[str, Any]
) -> FetchResult | None:
    entry = index.get(_key(recipe, version, anchor))
    if entry is None or entry["anchor"] != dict(anchor):
        others = [k for k in index if k.startswith(f"{recipe.name} {version} ")]
        if others:
            # The same release, verified against another key or pin (a site recipe's, an old
            # pin): not proof for this recipe.
            log.warning(
                "%s %s: the cached copy was verified against another trust anchor; verifying again",
                recipe.name,
                version,
            )
        return None
    if not _required_roles(recipe) <= {e["role"] for e in entry["files"]}:
        return None
    files = []
    for e in entry["files"]:
        path = cache_path(ctx, e["sha256"], e["name"])
        try:
            ok = path.is_file() and sha256_file(path) == e["sha256"]
        except OSError:
            ok = False
        if not ok:
            # Re-hash on every use: a corrupted entry is dropped and fetched again.
            log.warning("%s %s: cache entry %s is corrupt; fetching again", *_key_parts(e))
            remove_path(path)
            return None
        files.append(VerifiedFile(e["name"], path, e["sha256"], e["url"], e["how"], e["role"]))
    return FetchResult(recipe.name, version, tuple(files), from_cache=True, anchor=dict(anchor))


def _key_parts(entry: Mapping[str, str]) -> tuple[str, str, str]:
    return entry["role"], entry["sha256"][:12], entry["name"]


def _forget(paths: Sequence[Path]) -> None:
    """Remove files moved into the cache by a store that failed (no index entry names them)."""
    for path in paths:
        try:
            remove_path(path)
            if not any(path.parent.iterdir()):
                path.parent.rmdir()
        except OSError as exc:
            log.warning("cannot remove %s after the failed store: %s", path, exc.strerror)


def store_files(
    ctx: Context,
    recipe: Recipe,
    version: str,
    anchor: Mapping[str, str],
    files: Sequence[VerifiedFile],
) -> FetchResult:
    """Move verified files into the content-addressed cache and record them in the index.

    Either every file moved in is named by the index, or (the disk full, a folder read-only)
    the files moved in are removed again: nothing stays that no entry would ever reuse.
    """
    stored = []
    moved: list[Path] = []
    try:
        for f in files:
            final = cache_path(ctx, f.sha256, f.name)
            if not final.is_file() or sha256_file(final) != f.sha256:
                with write_errors(final):
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(f.path, final)
                moved.append(final)
            stored.append(replace(f, path=final))
        entry = {
            "anchor": dict(anchor),
            "files": [
                {
                    "role": f.role,
                    "name": f.name,
                    "sha256": f.sha256,
                    "url": f.url,
                    "how": f.verified_by,
                }
                for f in stored
            ],
        }
        # Fetches of several recipes run side by side: each adds its entry to the index as
        # it is then, or one would write back an index without the other's.
        lock = ctx.resource_lock("sources-index")
        with write_errors(lock), resource_lock(lock, "the source cache index"):
            index = read_index(ctx, quiet=True)
            index[_key(recipe, version, anchor)] = entry
            with write_errors(index_path(ctx)):
                write_json(index_path(ctx), index)
    except BaseException:
        _forget(moved)
        raise
    return FetchResult(recipe.name, version, tuple(stored), anchor=dict(anchor))


PROVENANCE_FIX = "run `pfbuild source` again: it writes sources.json afresh"


def write_provenance(path: Path, result: FetchResult) -> None:
    """Record a fetch result as JSON (which file, hash, origin, proof, trust anchor)."""
    data = {
        "recipe": result.recipe,
        "recipe_file": recipe_origin(result.recipe).as_json(),
        "version": result.version,
        "anchor": dict(result.anchor),
        "files": [{**asdict(f), "path": str(f.path)} for f in result.files],
    }
    # What pfbuild writes, it must be able to read back.
    validate(data, PROVENANCE_SCHEMA, f"the record {path}", "this is a bug in pfbuild: report it")
    with write_errors(path), atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_provenance(path: Path) -> FetchResult:
    """A sources.json read back and checked against its schema before anything in it is used."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PfbuildError(
            f"cannot read {path}", getattr(exc, "strerror", None) or str(exc), PROVENANCE_FIX
        ) from None
    validate(data, PROVENANCE_SCHEMA, str(path), PROVENANCE_FIX)
    files = tuple(
        VerifiedFile(f["name"], Path(f["path"]), f["sha256"], f["url"], f["verified_by"], f["role"])
        for f in data["files"]
    )
    return FetchResult(data["recipe"], data["version"], files, anchor=data["anchor"])
