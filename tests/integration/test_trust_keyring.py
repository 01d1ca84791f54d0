"""Only the pinned key may sign: archive keyrings, InRelease files and published trees (real gpg).

A keyring package carries more keys than the one pfbuild pins (Ubuntu's holds three), and gpgv
accepts a signature by any key of the keyring it is given. These tests add a key of their own
to each keyring and sign with it: the key must not reach the keyring pfbuild keeps, and its
signature must be refused wherever a pin is known.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import subprocess
from pathlib import Path

import pytest
from debian import deb822

from builder.bootstrap.keyring import ensure_keyring, keyring_path
from builder.core import gpg
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, ArchiveKeyring
from builder.publish.tree import KEY_FILE_NAME, MANIFEST_NAME
from builder.publish.treecheck import verify_tree
from tests.conftest import UBUNTU_KEYRING_DEB

pytestmark = pytest.mark.integration

assert isinstance(RESOLUTE.keyring, ArchiveKeyring)
PIN = RESOLUTE.keyring.fingerprints[0]
MEMBER = RESOLUTE.keyring.member


# ---- keys, keyrings and signed files made with gpg --------------------------------------------


@dataclasses.dataclass(frozen=True)
class Key:
    """A throwaway signing key in a GnuPG home of its own."""

    home: Path
    fingerprint: str

    def gpg(self, *args: str) -> bytes:
        cmd = ["gpg", "--homedir", str(self.home), "--batch", "--yes", *args]
        return subprocess.run(cmd, check=True, capture_output=True).stdout

    def clearsign(self, text: str, dest: Path) -> Path:
        source = dest.with_suffix(".payload")
        source.write_text(text)
        self.gpg(
            "--local-user", self.fingerprint, "--output", str(dest), "--clearsign", str(source)
        )
        return dest


def make_key(where: Path, name: str) -> Key:
    home = where / f"gnupg-{name}"
    home.mkdir(mode=0o700, parents=True)
    key = Key(home, "")
    key.gpg("--passphrase", "", "--quick-gen-key", f"{name} <{name}@pfbuild.invalid>",
            "ed25519", "sign", "never")  # fmt: skip
    colons = key.gpg("--with-colons", "--list-keys").decode()
    fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    return Key(home, fpr)


def primary_keys(keyring: Path) -> set[str]:
    """The oracle: primary-key fingerprints `gpg --show-keys` finds in a keyring file."""
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--show-keys", str(keyring)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    return {
        lines[i + 1].split(":")[9]
        for i, line in enumerate(lines[:-1])
        if line.startswith("pub:") and lines[i + 1].startswith("fpr:")
    }


def genuine_keyring(where: Path) -> bytes:
    """The archive keyring inside Ubuntu's real ubuntu-keyring package."""
    subprocess.run(["dpkg-deb", "-x", str(UBUNTU_KEYRING_DEB), str(where / "genuine")], check=True)
    return (where / "genuine" / MEMBER).read_bytes()


def keyring_package(where: Path, keyring: bytes) -> Path:
    """An ubuntu-keyring package whose archive keyring is `keyring`."""
    tree = where / "keyring-deb"
    (tree / MEMBER).parent.mkdir(parents=True)
    (tree / MEMBER).write_bytes(keyring)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        "Package: ubuntu-keyring\nVersion: 2023.11.28.1build1\nArchitecture: all\n"
        "Maintainer: nobody <n@pfbuild.invalid>\nDescription: keyring\n keys\n"
    )
    deb = where / "ubuntu-keyring_2023.11.28.1build1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    return deb


@pytest.fixture
def extra(tmp_path: Path) -> Key:
    """A key nobody pinned, slipped into the keyring package."""
    return make_key(tmp_path, "extra")


@pytest.fixture
def padded_deb(tmp_path: Path, extra: Key) -> Path:
    """Ubuntu's keyring package with the extra key added to its archive keyring."""
    return keyring_package(tmp_path, genuine_keyring(tmp_path) + extra.gpg("--export"))


# ---- the archive keyring keeps the pinned key alone --------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["genuine", "with-extra-key"])
def test_only_the_pinned_key_enters_the_archive_keyring(
    ctx: Context, tmp_path: Path, extra: Key, padded: bool
) -> None:
    deb = UBUNTU_KEYRING_DEB
    if padded:
        deb = keyring_package(tmp_path, genuine_keyring(tmp_path) + extra.gpg("--export"))
    local = Context(workspace=ctx.workspace, keyring_debs=(("resolute", deb),))
    path = ensure_keyring(local, RESOLUTE)
    assert primary_keys(path) == {PIN}
    assert extra.fingerprint not in gpg.keyring_fingerprints(path)


def test_a_cached_keyring_with_extra_keys_keeps_only_the_pin(
    ctx: Context, tmp_path: Path, extra: Key
) -> None:
    # As an older pfbuild cached it: every key of the package, plus one slipped in.
    cached = keyring_path(ctx, RESOLUTE)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(genuine_keyring(tmp_path) + extra.gpg("--export"))
    assert ensure_keyring(ctx, RESOLUTE) == cached
    assert primary_keys(cached) == {PIN}


def _archive(root: Path, deb: Path, signer: Key) -> Path:
    """A file:// Ubuntu mirror holding `deb` as ubuntu-keyring, its InRelease signed by `signer`."""
    pool = root / "pool" / "main" / "u" / "ubuntu-keyring"
    pool.mkdir(parents=True)
    (pool / deb.name).write_bytes(deb.read_bytes())
    data = deb.read_bytes()
    para = deb822.Deb822(
        {
            "Package": "ubuntu-keyring",
            "Architecture": "all",
            "Version": "2023.11.28.1build1",
            "Filename": f"pool/main/u/ubuntu-keyring/{deb.name}",
            "Size": str(len(data)),
            "SHA256": hashlib.sha256(data).hexdigest(),
        }
    )
    index = lzma.compress(para.dump().encode())
    suite = root / "dists" / "resolute"
    (suite / "main" / "binary-amd64").mkdir(parents=True)
    (suite / "main" / "binary-amd64" / "Packages.xz").write_bytes(index)
    release = (
        "Origin: Ubuntu\nSuite: resolute\nCodename: resolute\nSHA256:\n"
        f" {hashlib.sha256(index).hexdigest()} {len(index)} main/binary-amd64/Packages.xz\n"
    )
    signer.clearsign(release, suite / "InRelease")
    return root


def test_an_inrelease_signed_by_an_extra_key_is_refused(
    ctx: Context, tmp_path: Path, extra: Key, padded_deb: Path
) -> None:
    # The extra key is in the package's keyring and signs the mirror's InRelease: before, gpgv
    # accepted it with the whole package keyring; now that keyring holds the pin alone.
    archive = _archive(tmp_path / "mirror", padded_deb, extra)
    dist = dataclasses.replace(RESOLUTE, archive_url=f"file://{archive}")
    with pytest.raises(PfbuildError) as refused:
        ensure_keyring(ctx, dist)
    assert refused.value.one_line().startswith(
        "bad or unknown OpenPGP signature on InRelease: signed by a key that is not in the "
        "pinned keyring"
    )
    assert not keyring_path(ctx, dist).exists()


# ---- clearsigned files: the signer is compared with the pin -----------------------------------


def test_a_clearsigned_file_by_another_key_of_the_keyring_is_refused(
    tmp_path: Path, extra: Key
) -> None:
    pinned = make_key(tmp_path, "pinned")
    keyring = tmp_path / "both.gpg"
    keyring.write_bytes(pinned.gpg("--export") + extra.gpg("--export"))
    good = pinned.clearsign("Suite: trixie\n", tmp_path / "good")
    assert gpg.clearsigned_text(keyring, good, [pinned.fingerprint]) == b"Suite: trixie\n"
    forged = extra.clearsign("Suite: trixie\n", tmp_path / "forged")
    with pytest.raises(PfbuildError) as refused:
        gpg.clearsigned_text(keyring, forged, [pinned.fingerprint])
    assert refused.value.one_line().startswith(
        f"forged is signed by {extra.fingerprint}, not by the pinned {pinned.fingerprint}"
    )


def _tree(root: Path, pinned: Key, key_file: bytes, signer: Key, *, prefix: str = "") -> Path:
    """A published tree with one empty suite, its InRelease signed by `signer`."""
    suite = root / "dists" / "trixie"
    (suite / "main" / "binary-amd64").mkdir(parents=True)
    packages = b""
    (suite / "main" / "binary-amd64" / "Packages").write_bytes(packages)
    release = (
        "Origin: pfbuild\nSuite: trixie\nCodename: trixie\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} 0 main/binary-amd64/Packages\n"
    )
    inrelease = signer.clearsign(release, suite / "InRelease")
    if prefix:
        inrelease.write_text(prefix + inrelease.read_text())
    (root / KEY_FILE_NAME).write_bytes(key_file)
    manifest = {"fingerprint": pinned.fingerprint, "suites": ["trixie"]}
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    return root


def test_a_tree_signed_by_another_key_its_key_file_carries_is_refused(
    tmp_path: Path, extra: Key
) -> None:
    # The tree's key file carries the key its manifest names and one more.
    pinned = make_key(tmp_path, "pinned")
    extra.gpg("--output", str(tmp_path / "extra.gpg"), "--export")
    pinned.gpg("--import", str(tmp_path / "extra.gpg"))
    both = pinned.gpg("--armor", "--export", pinned.fingerprint, extra.fingerprint)
    good = _tree(tmp_path / "good", pinned, both, pinned)
    assert verify_tree(good, pinned.fingerprint).fingerprint == pinned.fingerprint
    forged = _tree(tmp_path / "forged", pinned, both, extra)
    with pytest.raises(PfbuildError) as refused:
        verify_tree(forged, pinned.fingerprint)
    assert refused.value.one_line().startswith(
        f"InRelease is signed by {extra.fingerprint}, not by the pinned {pinned.fingerprint}"
    )


def test_index_hashes_outside_the_signed_part_of_inrelease_are_ignored(tmp_path: Path) -> None:
    # gpgv accepts a clearsigned file with text before it; that text is not signed, so a
    # Packages index it vouches for (here one listing a planted .deb) must not be believed.
    pinned = make_key(tmp_path, "pinned")
    key_file = pinned.gpg("--armor", "--export", pinned.fingerprint)
    evil = b"Package: evil\nFilename: pool/main/e/evil_1_amd64.deb\n"
    deb = b"!<arch>\n"
    evil += f"SHA256: {hashlib.sha256(deb).hexdigest()}\nSize: {len(deb)}\n".encode()
    prefix = (
        f"SHA256:\n {hashlib.sha256(evil).hexdigest()} {len(evil)} main/binary-amd64/Packages\n\n"
    )
    tree = _tree(tmp_path / "tree", pinned, key_file, pinned, prefix=prefix)
    (tree / "dists" / "trixie" / "main" / "binary-amd64" / "Packages").write_bytes(evil)
    (tree / "pool" / "main" / "e").mkdir(parents=True)
    (tree / "pool" / "main" / "e" / "evil_1_amd64.deb").write_bytes(deb)
    with pytest.raises(PfbuildError) as refused:
        verify_tree(tree, pinned.fingerprint)
    assert "Packages does not match its signed InRelease" in refused.value.one_line()
