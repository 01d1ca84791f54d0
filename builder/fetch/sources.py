"""Fetch a recipe's sources: mirrors in order, each file verified before it enters the cache."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from builder.core import gpg, run
from builder.core.aptindex import dearmor_cmdline
from builder.core.atomic import (
    WriteError,
    pid_temp_dir,
    remove_stale_temps,
    write_errors,
)
from builder.core.context import Context
from builder.core.download import DownloadError, download
from builder.core.errors import PfbuildError
from builder.core.unpack import check_tarball
from builder.fetch import archive
from builder.fetch.archive import VerifiedFile
from builder.fetch.cache import (
    ROLE_DEBIAN,
    ROLE_DSC,
    ROLE_SIGNATURE,
    ROLE_SOURCE,
    ROLE_TARBALL,
    TARBALL_RE,
    FetchResult,
    cached_result,
    read_index,
    store_files,
    trust_anchor,
)
from builder.model.recipe import Recipe, Upstream

log = logging.getLogger("pfbuild")


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
        except WriteError:
            # Our disk, not the mirror: another mirror would fail the same way.
            raise
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


def remove_leftovers(ctx: Context) -> None:
    """Remove what killed runs left in the fetch folders (no live process holds it)."""
    with write_errors():
        tmp = ctx.tmp_dir
    for folder in (tmp, ctx.sources_cache, ctx.archive_cache):
        remove_stale_temps(folder)


def fetch(ctx: Context, recipe: Recipe, version: str) -> FetchResult:
    """Fetch and verify `recipe` at `version`, or reuse its verified cache entry offline."""
    recipe.validate_version(version)
    anchor = trust_anchor(recipe, version)
    remove_leftovers(ctx)
    cached = cached_result(ctx, recipe, version, anchor, read_index(ctx))
    if cached is not None:
        log.info("%s %s: verified sources from the cache", recipe.name, version)
        return cached
    with pid_temp_dir(ctx.tmp_dir, "fetch-") as tmp:
        files = fetch_upstream(ctx, recipe, version, tmp)
        _check_members(files)
        packaging = fetch_packaging(ctx, recipe, version, tmp)
        _check_members(packaging)
        files += packaging
        _check_consistent(recipe, version, files)
        return store_files(ctx, recipe, version, anchor, files)


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
