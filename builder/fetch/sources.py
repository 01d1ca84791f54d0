"""Fetch a recipe's sources: mirrors in order, verified before use, kept by sha256 in the cache."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from builder.core import gpg, run
from builder.core.aptindex import dearmor_cmdline
from builder.core.atomic import atomic_file, remove_path, write_text
from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.download import DownloadError, download
from builder.core.errors import PfbuildError
from builder.core.unpack import check_tarball
from builder.fetch import archive
from builder.fetch.archive import VerifiedFile
from builder.model.recipe import Recipe, Upstream, recipe_origin

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


def index_path(ctx: Context) -> Path:
    """The JSON index (recipe, version) -> cached entries."""
    return ctx.sources_cache / "index.json"


def cache_path(ctx: Context, sha256: str, name: str) -> Path:
    """Where a verified file lives: sources/<sha256>/<name> (the name tools expect)."""
    return ctx.sources_cache / sha256 / name


def _read_index(ctx: Context) -> dict[str, list[dict[str, str]]]:
    try:
        data = json.loads(index_path(ctx).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _key(recipe: Recipe, version: str) -> str:
    return f"{recipe.name} {version}"


def _cached(ctx: Context, recipe: Recipe, version: str) -> FetchResult | None:
    entries = _read_index(ctx).get(_key(recipe, version))
    if not entries:
        return None
    files = []
    for e in entries:
        try:
            path = cache_path(ctx, e["sha256"], e["name"])
            ok = path.is_file() and sha256_file(path) == e["sha256"]
            files.append(VerifiedFile(e["name"], path, e["sha256"], e["url"], e["how"], e["role"]))
        except (KeyError, TypeError, OSError):
            ok = False
        if not ok:
            # Re-hash on every use: a corrupted entry is dropped and fetched again.
            log.warning("%s %s: cache entry %s is corrupt; fetching again", *_key_parts(e))
            remove_path(cache_path(ctx, str(e.get("sha256", "x")), str(e.get("name", "x"))))
            return None
    return FetchResult(recipe.name, version, tuple(files), from_cache=True)


def _key_parts(entry: dict[str, str]) -> tuple[str, str, str]:
    return entry.get("role", "?"), entry.get("sha256", "?")[:12], entry.get("name", "?")


def _store(
    ctx: Context, recipe: Recipe, version: str, files: Sequence[VerifiedFile]
) -> FetchResult:
    """Move verified files into the content-addressed cache and record them in the index."""
    stored = []
    for f in files:
        final = cache_path(ctx, f.sha256, f.name)
        if not final.is_file() or sha256_file(final) != f.sha256:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f.path, final)
        stored.append(replace(f, path=final))
    index = _read_index(ctx)
    index[_key(recipe, version)] = [
        {"role": f.role, "name": f.name, "sha256": f.sha256, "url": f.url, "how": f.verified_by}
        for f in stored
    ]
    write_text(index_path(ctx), json.dumps(index, indent=2, sort_keys=True) + "\n")
    return FetchResult(recipe.name, version, tuple(stored))


def upstream_keyring(ctx: Context, upstream: Upstream, tmp: Path) -> Path:
    """The recipe's signing key as a binary keyring, proven to hold the pinned fingerprint."""
    keyring = tmp / "upstream-keyring.gpg"
    run.run(dearmor_cmdline(upstream.key_path, keyring))
    gpg.require_fingerprints(keyring, [upstream.fingerprint], f"key {upstream.signing_key}")
    return keyring


def _try_mirror(
    upstream: Upstream, version: str, urls: tuple[str, str], keyring: Path, tmp: Path
) -> list[VerifiedFile]:
    tarball_url, signature_url = urls
    name = upstream.tarball_name.format(version=version)
    tarball, signature = tmp / name, tmp / f"{name}.asc"
    tar_sha = download(tarball_url, tarball)
    sig_sha = download(signature_url, signature)
    signer = gpg.verify_signature(keyring, tarball, signature)
    if signer != upstream.fingerprint:
        # gpgv accepts any key in the keyring; only the pinned primary key counts.
        raise PfbuildError(f"{name} is signed by {signer}", f"expected {upstream.fingerprint}")
    how = f"OpenPGP signature by {upstream.fingerprint}"
    return [
        VerifiedFile(name, tarball, tar_sha, tarball_url, how, ROLE_TARBALL),
        VerifiedFile(signature.name, signature, sig_sha, signature_url, how, ROLE_SIGNATURE),
    ]


def fetch_upstream(ctx: Context, recipe: Recipe, version: str, tmp: Path) -> list[VerifiedFile]:
    """Try each mirror in order; the first whose tarball verifies wins."""
    upstream = recipe.upstream
    if upstream is None:
        return []
    keyring = upstream_keyring(ctx, upstream, tmp)
    failures: list[str] = []
    for mirror in upstream.mirrors:
        urls = mirror.urls(version)
        attempt = tmp / f"mirror-{len(failures)}"
        attempt.mkdir()
        try:
            files = _try_mirror(upstream, version, urls, keyring, attempt)
        except DownloadError as exc:
            failures.append(f"{exc.url}: {exc.reason}")
            continue
        except PfbuildError as exc:
            failures.append(f"{urls[0]}: {exc.what}: {exc.why}")
            continue
        log.info("%s %s: verified %s", recipe.name, version, urls[0])
        return files
    raise PfbuildError(
        f"no mirror delivered a verified {recipe.name} {version}",
        " | ".join(failures),
        "check the version exists and the network; a bad signature means do not use that file",
    )


def fetch_packaging(ctx: Context, recipe: Recipe, version: str, tmp: Path) -> list[VerifiedFile]:
    """The base Debian source package; only its debian/ tarball when upstream comes separately."""
    src = recipe.packaging_for(version)
    only = re.compile(r"\.debian\.tar\.[a-z0-9]+$") if recipe.upstream is not None else None
    dest = tmp / "packaging"
    dest.mkdir()
    files = archive.fetch_source_package(ctx, src, dest, only=only)
    result = []
    for f in files:
        role = ROLE_DSC if f.name.endswith(".dsc") else ROLE_SOURCE
        if re.search(r"\.debian\.tar\.[a-z0-9]+$", f.name):
            role = ROLE_DEBIAN
        result.append(replace(f, role=role))
    return result


def _check_consistent(recipe: Recipe, version: str, files: Sequence[VerifiedFile]) -> None:
    """Debian's .dsc must name the very tarball we verified when it packages the same release."""
    src = recipe.packaging_for(version)
    if recipe.upstream is None or src.upstream_version != version:
        return
    dsc = next(f for f in files if f.role == ROLE_DSC)
    tarball = next(f for f in files if f.role == ROLE_TARBALL)
    listed = archive.dsc_hashes(dsc.path.read_text(errors="replace")).get(tarball.name)
    if listed is not None and listed[0] != tarball.sha256:
        raise PfbuildError(
            f"Debian's {dsc.name} names another {tarball.name}",
            f"{listed[0]} != verified {tarball.sha256}",
            "the upstream release was re-rolled; investigate before building",
        )


def fetch(ctx: Context, recipe: Recipe, version: str) -> FetchResult:
    """Fetch and verify `recipe` at `version`, or reuse its verified cache entry offline."""
    recipe.validate_version(version)
    cached = _cached(ctx, recipe, version)
    if cached is not None:
        log.info("%s %s: verified sources from the cache", recipe.name, version)
        return cached
    with tempfile.TemporaryDirectory(dir=ctx.tmp_dir, prefix="fetch-") as tmpdir:
        tmp = Path(tmpdir)
        files = fetch_upstream(ctx, recipe, version, tmp)
        _check_members(files)
        packaging = fetch_packaging(ctx, recipe, version, tmp)
        _check_members(packaging)
        files += packaging
        _check_consistent(recipe, version, files)
        return _store(ctx, recipe, version, files)


def _check_members(files: Sequence[VerifiedFile]) -> None:
    # Verified, but never admitted to the cache before its members are proven safe to unpack.
    for f in files:
        if TARBALL_RE.search(f.name):
            check_tarball(f.path)


def describe(result: FetchResult) -> str:
    """A short human report of a fetch: one line per file."""
    origin = "cache" if result.from_cache else "network"
    lines = [f"{result.recipe} {result.version} (from {origin}):"]
    lines += [
        f"  {f.role:19} {f.name}  sha256 {f.sha256}\n      from {f.url}\n      by {f.verified_by}"
        for f in result.files
    ]
    return "\n".join(lines)


def write_provenance(path: Path, result: FetchResult) -> None:
    """Record a fetch result as JSON (which file, hash, origin, proof)."""
    data = {
        "recipe": result.recipe,
        "recipe_file": recipe_origin(result.recipe).as_json(),
        "version": result.version,
        "files": [{**asdict(f), "path": str(f.path)} for f in result.files],
    }
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
