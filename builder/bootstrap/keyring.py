"""Archive keyrings per target: the host's, or the pinned keys out of the archive's package."""

from __future__ import annotations

import hashlib
import io
import logging
import lzma
import tarfile
import tempfile
from pathlib import Path

from debian import deb822

from builder.core import gpg, run
from builder.core.aptindex import release_hashes
from builder.core.atomic import atomic_file
from builder.core.context import Context
from builder.core.download import download, fetch_bytes
from builder.core.errors import PfbuildError
from builder.model.distro import ArchiveKeyring, Distribution

log = logging.getLogger("pfbuild")


def keyring_path(ctx: Context, dist: Distribution) -> Path:
    """Where the trusted archive keyring for `dist` is (or will be)."""
    if isinstance(dist.keyring, ArchiveKeyring):
        return ctx.keyrings_dir / f"{dist.name}-archive-keyring.gpg"
    return Path(dist.keyring.path)


def is_world_readable(path: Path) -> bool:
    """True when any uid can read `path`: the file o+r and every folder above it o+x."""
    path = path.absolute()
    if not path.is_file() or not path.stat().st_mode & 0o004:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in path.parents)


def unshare_readable(ctx: Context, keyring: Path) -> Path:
    """`keyring` where mmdebstrap's unshared apt (a subordinate uid) can read it.

    A workspace under /root (mode 0700) or a pytest tmp folder is closed to that uid: apt then
    reports the archive as unsigned right after pfbuild verified the keyring. Such a keyring is
    copied, by content hash, into the world-traversable stage root.
    """
    if is_world_readable(keyring):
        return keyring
    data = keyring.read_bytes()
    staged = ctx.stage_root / "keyrings" / f"{hashlib.sha256(data).hexdigest()}.gpg"
    if not staged.is_file() or staged.read_bytes() != data:
        staged.parent.mkdir(parents=True, exist_ok=True)
        ctx.stage_root.chmod(0o1777)
        staged.parent.chmod(0o755)
        with atomic_file(staged) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o644)
    return staged


def extract_deb_member(deb: Path, member: str) -> bytes:
    """Read one file out of a .deb's data archive (dpkg-deb does the ar and compression work)."""
    tar_bytes = run.run(["dpkg-deb", "--fsys-tarfile", deb]).stdout
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for name in (member, f"./{member}"):
            try:
                info = tar.getmember(name)
            except KeyError:
                continue
            handle = tar.extractfile(info)
            if handle is not None:
                return handle.read()
    raise PfbuildError(
        f"{deb.name} has no {member}",
        "this is not the archive keyring package pfbuild expects",
        "pass the distribution's genuine keyring .deb",
    )


def _index_name(dist: Distribution) -> str:
    return f"main/binary-{dist.arch}/Packages.xz"


def _find_keyring_deb(
    dist: Distribution, keyring: ArchiveKeyring, packages_xz: bytes, tmp: Path
) -> Path:
    """Locate and download the keyring package through the (not yet trusted) Packages index."""
    packages = lzma.decompress(packages_xz)
    for para in deb822.Packages.iter_paragraphs(packages.decode(), use_apt_pkg=False):
        if para.get("Package") == keyring.package:
            deb = tmp / Path(para["Filename"]).name
            digest = download(f"{dist.archive_url}/{para['Filename']}", deb)
            if digest != para["SHA256"]:
                raise PfbuildError(
                    f"{deb.name} does not match the archive's Packages index",
                    f"sha256 {digest} != {para['SHA256']}",
                    "retry; if it persists the mirror is corrupt",
                )
            return deb
    raise PfbuildError(
        f"{keyring.package} is not in the {dist.name} {_index_name(dist)} of {dist.archive_url}",
        "the archive does not look like a complete Ubuntu mirror",
        "check --archive, or pass --keyring-deb with a local copy of the package",
    )


def _check_archive_signed(
    dist: Distribution, keyring: ArchiveKeyring, keyring_file: Path, packages_xz: bytes, tmp: Path
) -> None:
    """Close the loop: the pinned key signed InRelease, and it vouches for the index we used."""
    inrelease = tmp / "InRelease"
    download(f"{dist.archive_url}/dists/{dist.name}/InRelease", inrelease)
    release = gpg.clearsigned_text(keyring_file, inrelease, keyring.fingerprints)
    index_name = _index_name(dist)
    want = release_hashes(release).get(index_name)
    if want is None or hashlib.sha256(packages_xz).hexdigest() != want[0]:
        raise PfbuildError(
            f"{index_name} of {dist.name} is not the one InRelease signs",
            "the index changed or the mirror is inconsistent",
            "retry later, or use a consistent mirror",
        )


def ensure_keyring(ctx: Context, dist: Distribution) -> Path:
    """Return a trusted keyring for `dist`, fetched and checked once if the archive ships it."""
    final = keyring_path(ctx, dist)
    keyring = dist.keyring
    if not isinstance(keyring, ArchiveKeyring):
        if not final.is_file():
            raise PfbuildError(
                f"archive keyring {final} is missing",
                f"it comes with the {keyring.package} package",
                f"apt-get install {keyring.package} (or run `pfbuild doctor --fix`)",
            )
        return final
    if final.is_file():
        gpg.require_fingerprints(final, keyring.fingerprints, f"cached keyring {final}")
        if gpg.primary_fingerprints(final) != {fp.upper() for fp in keyring.fingerprints}:
            # Made by an older pfbuild that kept every key of the package: keep only the pin.
            with atomic_file(final) as out:
                gpg.export_pinned_keys(final, keyring.fingerprints, out, f"cached keyring {final}")
            log.warning("%s: dropped the unpinned keys from %s", dist.name, final)
        return final
    local_deb = ctx.keyring_deb(dist.name)
    with tempfile.TemporaryDirectory(dir=ctx.tmp_dir, prefix="keyring-") as tmpdir:
        tmp = Path(tmpdir)
        packages_xz = b""
        if local_deb is None:
            index_url = f"{dist.archive_url}/dists/{dist.name}/{_index_name(dist)}"
            packages_xz = fetch_bytes(index_url)
        deb = local_deb or _find_keyring_deb(dist, keyring, packages_xz, tmp)
        if not deb.is_file():
            raise PfbuildError(f"keyring package {deb} does not exist", fix="pass an existing .deb")
        shipped = tmp / "shipped.gpg"
        shipped.write_bytes(extract_deb_member(deb, keyring.member))
        # The package's keyring holds more keys than the pin (older archive keys, the CD image
        # key): gpgv would accept any of them, so only the pinned keys are exported for use.
        candidate = tmp / "keyring.gpg"
        gpg.export_pinned_keys(
            shipped, keyring.fingerprints, candidate, f"the keyring in {deb.name}"
        )
        if local_deb is None:
            _check_archive_signed(dist, keyring, candidate, packages_xz, tmp)
        with atomic_file(final) as out:
            out.write_bytes(candidate.read_bytes())
    log.info(
        "%s: archive keyring from %s: only the pinned %s",
        dist.name, keyring.package, ", ".join(keyring.fingerprints),
    )  # fmt: skip
    return final
