"""Debian source packages verified by the archive's chain: InRelease, Sources, .dsc, files."""

from __future__ import annotations

import hashlib
import logging
import lzma
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from builder.core import gpg
from builder.core.aptindex import release_hashes
from builder.core.atomic import atomic_file, pid_path, write_errors
from builder.core.context import Context
from builder.core.download import DownloadError, TooLargeError, download
from builder.core.errors import PfbuildError
from builder.model.recipe import ArchiveSource

log = logging.getLogger("pfbuild")


@dataclass(frozen=True)
class VerifiedFile:
    """A downloaded file whose hash was proven, the chain that proved it, and its role."""

    name: str
    path: Path
    sha256: str
    url: str
    verified_by: str
    role: str = ""


@dataclass(frozen=True)
class SourceEntry:
    """One source package's paragraph in a signed Sources index."""

    package: str
    version: str
    directory: str
    files: Mapping[str, tuple[str, int]]


def dsc_hashes(dsc_text: str) -> dict[str, tuple[str, int]]:
    """The Checksums-Sha256 table of a .dsc: file name -> (sha256, size)."""
    dsc = deb822.Dsc(dsc_text)
    table = {
        item["name"]: (item["sha256"], int(item["size"]))
        for item in dsc.get("Checksums-Sha256", [])
    }
    for name in table:
        # File names from the .dsc become local paths: nothing but a plain name may pass.
        if "/" in name or name.startswith(".") or not name:
            raise PfbuildError(f"the .dsc lists an unsafe file name {name!r}", "refusing it")
    return table


def find_source(index_text: str, package: str, version: str) -> SourceEntry | None:
    """Find `package` at `version` in a Sources index (text), or None."""
    # A full parse of ~80 MB with python-debian takes long; pick the paragraphs by name first.
    marker = f"Package: {package}\n"
    for para_text in index_text.split("\n\n"):
        if not para_text.startswith(marker) and f"\n{marker}" not in para_text:
            continue
        para = deb822.Sources(para_text)
        if para.get("Package") != package or para.get("Version") != version:
            continue
        files = {
            item["name"]: (item["sha256"], int(item["size"]))
            for item in para.get("Checksums-Sha256", [])
        }
        return SourceEntry(package, version, para["Directory"], files)
    return None


def pool_directory(package: str, component: str) -> str:
    """The pool folder of a source package (pool/main/libf/libfoo, pool/main/p/postfix)."""
    prefix = package[:4] if package.startswith("lib") else package[0]
    return f"pool/{component}/{prefix}/{package}"


class ArchiveChain:
    """Signed indexes of one archive, fetched once per run and kept by hash in the cache."""

    def __init__(self, ctx: Context, archive_url: str, keyring: Path) -> None:
        self.ctx = ctx
        self.archive_url = archive_url.rstrip("/")
        self.keyring = keyring
        self._indexes: dict[tuple[str, str], str] = {}

    def signed_release(self, suite: str) -> dict[str, tuple[str, int]]:
        """Download and verify `suite`'s InRelease; return its SHA256 table."""
        url = f"{self.archive_url}/dists/{suite}/InRelease"
        # Named for this process: a kill leaves it for the next run to remove.
        dest = pid_path(self.ctx.tmp_dir, f"InRelease-{suite}")
        try:
            download(url, dest)
            # The recipe trusts the host keyring as a whole: any of its keys may sign.
            signers = gpg.keyring_fingerprints(self.keyring)
            payload = gpg.clearsigned_text(self.keyring, dest, signers)
        finally:
            dest.unlink(missing_ok=True)
        release = deb822.Release(payload)
        # A validly signed Release of another suite must not stand in for this one.
        if suite not in (release.get("Suite"), release.get("Codename")):
            raise PfbuildError(
                f"{url} is signed for suite {release.get('Suite')}/{release.get('Codename')}",
                f"pfbuild asked for {suite}",
                "check the archive URL and suite in the recipe",
            )
        return release_hashes(payload)

    def sources_index(self, suite: str, component: str) -> str:
        """The text of `suite`/`component` Sources, its hash proven by the signed InRelease."""
        return self._signed_index(suite, f"{component}/source/Sources.xz")

    def packages_index(self, suite: str, component: str, arch: str) -> str:
        """The text of `suite`/`component` Packages for `arch` (with its Architecture: all
        packages), its hash proven by the signed InRelease."""
        return self._signed_index(suite, f"{component}/binary-{arch}/Packages.xz")

    def _signed_index(self, suite: str, name: str) -> str:
        key = (suite, name)
        if key in self._indexes:
            return self._indexes[key]
        want = self.signed_release(suite).get(name)
        if want is None:
            raise PfbuildError(
                f"{suite} InRelease does not list {name}",
                "the archive layout is not what pfbuild expects",
                "check the suite and component in the recipe",
            )
        # Content-addressed by the signed hash, and the bytes used are the bytes hashed: a
        # stale, tampered or half-written copy is never decompressed.
        cached = self.ctx.archive_cache / f"{want[0]}.xz"
        data = _read_verified(cached, want[0])
        if data is None:
            url = f"{self.archive_url}/dists/{suite}/{name}"
            with write_errors(cached), atomic_file(cached) as tmp:
                try:
                    got = download(url, tmp, max_bytes=want[1])
                except TooLargeError:
                    got = f"(more than the signed {want[1]} bytes)"
                if got != want[0]:
                    raise PfbuildError(
                        f"{suite} {name} does not match its signed InRelease",
                        f"sha256 {got} != {want[0]}",
                        "retry later: the mirror may be updating",
                    )
                data = tmp.read_bytes()
            if hashlib.sha256(data).hexdigest() != want[0]:
                raise PfbuildError(
                    f"{suite} {name} changed on disk after its download", fix="retry"
                )
        text = lzma.decompress(data).decode("utf-8", errors="replace")
        self._indexes[key] = text
        return text


def _read_verified(path: Path, sha256: str) -> bytes | None:
    """The bytes of a cached file when they hash to `sha256`, else None (missing or changed)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _download_checked(url: str, dest: Path, sha256: str, size: int | None, what: str) -> None:
    # A file whose size is signed may not grow past it: a hostile mirror cannot fill the disk.
    try:
        got = download(url, dest, max_bytes=size)
    except TooLargeError:
        got = f"(more than the listed {size} bytes)"
    if got != sha256 or (size is not None and dest.stat().st_size != size):
        dest.unlink(missing_ok=True)
        raise PfbuildError(
            f"{dest.name} does not match {what}",
            f"sha256 {got} != {sha256}",
            "the mirror serves a corrupt or tampered file: do not use it",
        )


def _locate_dsc(chain: ArchiveChain, src: ArchiveSource) -> tuple[str, str, str]:
    """(directory, dsc sha256, how it is trusted) for `src`, from the chain or the pin."""
    dsc_name = dsc_file_name(src)
    reasons: list[str] = []
    for suite in src.suites:
        try:
            entry = find_source(chain.sources_index(suite, src.component), src.package, src.version)
        except DownloadError as exc:
            reasons.append(f"{suite}: {exc.reason}")
            continue
        if entry is None:
            reasons.append(f"{suite}: not listed")
            continue
        if dsc_name not in entry.files:
            raise PfbuildError(f"{suite} Sources lists {src.package} {src.version} without .dsc")
        sha = entry.files[dsc_name][0]
        if src.dsc_sha256 and sha != src.dsc_sha256:
            raise PfbuildError(
                f"{dsc_name}: the recipe's pinned sha256 disagrees with {suite}'s signed index",
                f"{src.dsc_sha256} != {sha}",
                "find out which is right before updating the pin",
            )
        how = f"{suite} InRelease signature -> {src.component}/source/Sources.xz sha256 -> .dsc"
        return entry.directory, sha, how
    if src.dsc_sha256:
        log.info("%s: %s; trusting the recipe's pinned .dsc hash", dsc_name, "; ".join(reasons))
        return pool_directory(src.package, src.component), src.dsc_sha256, "recipe pin -> .dsc"
    raise PfbuildError(
        f"no signed Sources index lists {src.package} {src.version}",
        "; ".join(reasons),
        "pin dsc_sha256 in the recipe or list a suite that has this version",
    )


def dsc_file_name(src: ArchiveSource) -> str:
    """The .dsc file name of a source package version (no epoch in file names)."""
    return f"{src.package}_{src.version.split(':', 1)[-1]}.dsc"


def fetch_source_package(
    ctx: Context, src: ArchiveSource, dest: Path, *, only: re.Pattern[str] | None = None
) -> list[VerifiedFile]:
    """Download and verify a source package's .dsc and its files (or those matching `only`)."""
    chain = ArchiveChain(ctx, src.archive_url, Path(src.keyring))
    directory, dsc_sha, how = _locate_dsc(chain, src)
    base = f"{chain.archive_url}/{directory}"
    dsc_name = dsc_file_name(src)
    dsc_path = dest / dsc_name
    _download_checked(f"{base}/{dsc_name}", dsc_path, dsc_sha, None, f"the {how.split()[0]} hash")
    files = [VerifiedFile(dsc_name, dsc_path, dsc_sha, f"{base}/{dsc_name}", how)]
    for name, (sha, size) in dsc_hashes(dsc_path.read_text(errors="replace")).items():
        if only is not None and not only.search(name):
            continue
        path = dest / name
        _download_checked(f"{base}/{name}", path, sha, size, f"{dsc_name}'s Checksums-Sha256")
        files.append(VerifiedFile(name, path, sha, f"{base}/{name}", f"{how} -> file sha256"))
    return files
