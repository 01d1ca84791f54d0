"""The verified cache is reused only by a recipe that trusts what verified it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
from pathlib import Path

import pytest

from builder import cli
from builder.commands import check_updates
from builder.core import run
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.fetch.archive import ArchiveChain
from builder.fetch.cache import index_path
from builder.fetch.sources import fetch
from builder.model.distro import TRIXIE, HostKeyring
from builder.model.recipe import Recipe, UpstreamMirror
from builder.pipeline import triggers
from tests.fixtures.hostile_http import endless, ok, serve
from tests.fixtures.sources import (
    DOWN,
    ORIG,
    SigningKey,
    cached_files,
    file_mirror,
    make_tarball,
    make_test_key,
    offline_postfix,
)

pytestmark = pytest.mark.unit

WIETSE = "622C7C012254C186677469C50C0B590E80CA15A7"
DOWN_MIRROR = UpstreamMirror(f"{DOWN}/postfix-{{version}}.tar.gz", f"{DOWN}/p-{{version}}.gpg2")


@pytest.fixture(scope="module")
def foreign_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """A key that is not the one the built-in postfix recipe pins."""
    return make_test_key(tmp_path_factory.mktemp("key"))


def _signed_mirror(folder: Path, key: SigningKey, version: str, tarball: Path) -> UpstreamMirror:
    folder.mkdir(parents=True, exist_ok=True)
    name = folder / f"postfix_{version}.orig.tar.gz"
    name.write_bytes(tarball.read_bytes())
    key.sign(name, folder / f"{name.name}.asc")
    return file_mirror(folder)


def _site_recipe(key: SigningKey, mirror: UpstreamMirror) -> Recipe:
    """What a site recipe in PFBUILD_RECIPES may say: same name, another key and mirror."""
    return offline_postfix((mirror,), key=key.public, fingerprint=key.fingerprint)


def _cli_fetch(ctx: Context, recipe: Recipe, version: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("builder.commands.fetch.load_recipe", lambda name: recipe)
    return cli.main(["-q", "--workspace", str(ctx.workspace), "fetch", "postfix", version])


def test_a_site_recipes_tarball_is_not_verified_sources_for_the_builtin_recipe(
    ctx: Context,
    tmp_path: Path,
    foreign_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trojan = make_tarball(tmp_path / "trojan.tar.gz", {"postfix-3.11.7/backdoor": b"evil\n"})
    site = _site_recipe(
        foreign_key, _signed_mirror(tmp_path / "site", foreign_key, "3.11.7", trojan)
    )
    assert _cli_fetch(ctx, site, "3.11.7", monkeypatch) == 0
    capsys.readouterr()
    index_before = index_path(ctx).read_text()
    # The built-in recipe (Wietse's key), every mirror down: the cache must not answer for it.
    builtin = offline_postfix((DOWN_MIRROR,))
    assert _cli_fetch(ctx, builtin, "3.11.7", monkeypatch) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith(
        "postfix 3.11.7: the cached copy was verified against another trust anchor; verifying again"
    )
    assert len(err) == 2, err
    assert err[1].startswith("pfbuild: error: no mirror delivered a verified postfix 3.11.7")
    # Nothing new trusted: the index still names only the site recipe's verification.
    assert index_path(ctx).read_text() == index_before
    assert WIETSE not in index_before


def test_the_same_bytes_signed_by_another_key_are_verified_again(
    ctx: Context, tmp_path: Path, foreign_key: SigningKey
) -> None:
    site = _site_recipe(foreign_key, _signed_mirror(tmp_path / "site", foreign_key, "3.11.6", ORIG))
    by_site = fetch(ctx, site, "3.11.6")
    assert foreign_key.fingerprint in by_site.tarball.verified_by
    builtin = offline_postfix((file_mirror(ORIG.parent),))
    by_builtin = fetch(ctx, builtin, "3.11.6")
    assert not by_builtin.from_cache
    assert WIETSE in by_builtin.tarball.verified_by
    assert by_builtin.anchor["upstream_fingerprint"] == WIETSE
    # Both verifications stay in the cache, each for the recipe that trusts it.
    assert fetch(ctx, site, "3.11.6").tarball.verified_by == by_site.tarball.verified_by
    offline = offline_postfix((DOWN_MIRROR,), archive_url=DOWN)
    again = fetch(ctx, offline, "3.11.6")
    assert again.from_cache
    assert WIETSE in again.tarball.verified_by


def test_another_dsc_pin_is_not_served_from_the_cache(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch(ctx, offline_postfix((file_mirror(ORIG.parent),)), "3.11.6")
    offline = offline_postfix((DOWN_MIRROR,), archive_url=DOWN)
    src = dataclasses.replace(offline.packaging["3.11.6"], dsc_sha256="0" * 64)
    repinned = dataclasses.replace(offline, packaging={"3.11.6": src})
    assert _cli_fetch(ctx, repinned, "3.11.6", monkeypatch) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert "verified against another trust anchor" in err[0]
    assert err[-1].startswith("pfbuild: error: no mirror delivered a verified postfix 3.11.6")


def _signed_archive(
    where: Path, key: SigningKey, index: bytes, name: str = "main/source/Sources.xz"
) -> Path:
    """dists/sid with an InRelease the key signs for `index` as `name`."""
    suite = where / "dists" / "sid"
    suite.mkdir(parents=True)
    digest = hashlib.sha256(index).hexdigest()
    (suite / "Release").write_text(
        f"Suite: unstable\nCodename: sid\nSHA256:\n {digest} {len(index)} {name}\n"
    )
    gpg: list[str | Path] = ["gpg", "--homedir", key.home, "--batch", "--yes"]
    run.run([*gpg, "--output", suite / "InRelease", "--clearsign", suite / "Release"])
    keyring = where / "keyring.gpg"
    run.run([*gpg, "--output", keyring, "--dearmor", key.public])
    return keyring


def test_the_archive_index_cache_is_hash_checked_and_size_capped(
    ctx: Context, tmp_path: Path, foreign_key: SigningKey
) -> None:
    genuine = lzma.compress(
        b"Package: postfix\nVersion: 3.11.9-1\nDirectory: pool/main/p/postfix\n"
    )
    keyring = _signed_archive(tmp_path / "archive", foreign_key, genuine)
    inrelease = (tmp_path / "archive" / "dists" / "sid" / "InRelease").read_bytes()
    digest = hashlib.sha256(genuine).hexdigest()
    routes = {
        "/dists/sid/InRelease": [ok(inrelease)],
        # A hostile mirror: the signed index is small, what it serves has no end.
        "/dists/sid/main/source/Sources.xz": [endless()],
    }
    with serve(routes) as (base, state):
        chain = ArchiveChain(ctx, base, keyring)
        with pytest.raises(PfbuildError, match="does not match its signed InRelease"):
            chain.sources_index("sid", "main")
        # Cut off at the signed size (plus a socket buffer), not read to the end.
        assert state.sent["/dists/sid/main/source/Sources.xz"] < 16 << 20
    assert list((ctx.cache_dir / "archive").glob("*")) == []
    # A tampered copy planted in the cache under the signed hash is not believed either.
    planted = ctx.cache_dir / "archive" / f"{digest}.xz"
    planted.write_bytes(lzma.compress(b"Package: postfix\nVersion: 9.9.9-1\n"))
    routes["/dists/sid/main/source/Sources.xz"] = [ok(genuine)]
    with serve(routes) as (base, _state):
        text = ArchiveChain(ctx, base, keyring).sources_index("sid", "main")
    assert "3.11.9-1" in text
    assert planted.read_bytes() == genuine


def test_the_index_names_the_anchor_of_each_entry(ctx: Context) -> None:
    fetch(ctx, offline_postfix((file_mirror(ORIG.parent),)), "3.11.6")
    index = json.loads(index_path(ctx).read_text())
    (key, entry), *others = index.items()
    assert others == []
    assert key.startswith("postfix 3.11.6 ")
    assert entry["anchor"] == {
        "packaging": "postfix 3.11.6-1",
        "upstream_fingerprint": WIETSE,
        "dsc_sha256": "fcdbbfce92caefb61bf984fe6d36568cffeea3ec2fa436702bf4307181ab4b72",
    }
    assert cached_files(ctx.cache_dir / "sources")


def test_the_build_environment_is_compared_with_the_signed_packages_index(
    ctx: Context, tmp_path: Path, foreign_key: SigningKey
) -> None:
    """check-updates reads the target's Packages through its signed InRelease, nothing else."""
    packages = (
        b"Package: libc6\nVersion: 2.41-12+deb13u1\nArchitecture: amd64\n\n"
        b"Package: debhelper\nArchitecture: all\nVersion: 13.24.2\n\n"
        b"Package: libc6-dev\nVersion: 2.41-12+deb13u1\n"
    )
    genuine = lzma.compress(packages)
    name = "main/binary-amd64/Packages.xz"
    keyring = _signed_archive(tmp_path / "archive", foreign_key, genuine, name)
    inrelease = (tmp_path / "archive" / "dists" / "sid" / "InRelease").read_bytes()
    routes = {"/dists/sid/InRelease": [ok(inrelease)], f"/dists/sid/{name}": [ok(genuine)]}
    env = {"libc6": "2.41-12", "debhelper": "13.24.2", "gcc-14": "14.2.0-19"}
    with serve(routes) as (base, _state):
        sid = dataclasses.replace(TRIXIE, name="sid", archive_url=base, keyring=HostKeyring(
            str(keyring), "test-keyring"))  # fmt: skip
        found = check_updates._archive_packages(ctx)(sid, env.keys())
    assert found == {"libc6": {"2.41-12+deb13u1"}, "debhelper": {"13.24.2"}}
    assert triggers.env_changes(env, found) == [
        "gcc-14 14.2.0-19 -> gone",
        "libc6 2.41-12 -> 2.41-12+deb13u1",
    ]
    # An index that is not the signed one is not read.
    routes[f"/dists/sid/{name}"] = [ok(lzma.compress(packages.replace(b"+deb13u1", b"")))]
    for cached in (ctx.cache_dir / "archive").glob("*"):
        cached.unlink()
    with serve(routes) as (base, _state):
        sid = dataclasses.replace(sid, archive_url=base)
        with pytest.raises(PfbuildError, match="does not match its signed InRelease"):
            check_updates._archive_packages(ctx)(sid, env.keys())
