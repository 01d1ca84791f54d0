"""Fetching offline from local mirrors: fallback order, verification, cache reuse, refusals."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from builder import cli
from builder.core.aptindex import dearmor_cmdline
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.fetch.cache import index_path
from builder.fetch.sources import fetch
from builder.model.recipe import Recipe, UpstreamMirror
from tests.fixtures.sources import (
    DOWN,
    ORIG,
    ORIG_ASC,
    SigningKey,
    cached_files,
    file_mirror,
    http_mirror,
    make_tarball,
    offline_postfix,
)

# fetch verifies with gpg and gpgv: every test but the two that stop before verifying runs them.
pytestmark = pytest.mark.integration

DOWN_MIRROR = UpstreamMirror(f"{DOWN}/postfix-{{version}}.tar.gz", f"{DOWN}/p-{{version}}.gpg2")


def _mirror_dir(tmp_path: Path, tarball: Path, signature: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(tarball, folder / "postfix_3.11.6.orig.tar.gz")
    shutil.copyfile(signature, folder / "postfix_3.11.6.orig.tar.gz.asc")
    return folder


def _run_cli(ctx: Context, recipe: Recipe, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("builder.commands.fetch.load_recipe", lambda name: recipe)
    return cli.main(["-q", "--workspace", str(ctx.workspace), "fetch", "postfix", "3.11.6"])


def _assert_refused(
    ctx: Context,
    recipe: Recipe,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    words: str,
) -> None:
    assert _run_cli(ctx, recipe, monkeypatch) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert words in err[0]
    assert cached_files(ctx.cache_dir / "sources") == []


@pytest.mark.unit
def test_dearmor_cmdline() -> None:
    assert dearmor_cmdline(Path("k.asc"), Path("k.gpg")) == [
        "gpg",
        "--batch",
        "--yes",
        "--dearmor",
        "--output",
        "k.gpg",
        "k.asc",
    ]


def test_fetch_verifies_then_serves_from_cache_offline(ctx: Context) -> None:
    result = fetch(ctx, offline_postfix((file_mirror(ORIG.parent),)), "3.11.6")
    assert not result.from_cache
    assert result.tarball.sha256 == (
        "b9a748705b1cab0a4afcbe42f934c82a33b342ba3229017fb508c71700078d07"
    )
    assert result.tarball.path == (
        ctx.cache_dir / "sources" / result.tarball.sha256 / "postfix_3.11.6.orig.tar.gz"
    )
    assert "622C7C012254C186677469C50C0B590E80CA15A7" in result.tarball.verified_by
    assert result.get("debian-tarball").verified_by.startswith("recipe pin")
    assert "postfix 3.11.6" in index_path(ctx).read_text()
    # Every mirror and the archive unreachable: only the cache can answer.
    offline = offline_postfix((DOWN_MIRROR,), archive_url=DOWN)
    again = fetch(ctx, offline, "3.11.6")
    assert again.from_cache
    assert again.files == result.files


def test_mirror_fallback_skips_down_404_and_truncated(ctx: Context, tmp_path: Path) -> None:
    body = ORIG.read_bytes()
    routes = {
        "/trunc/postfix-3.11.6.tar.gz": (200, body[:1000], len(body)),
        "/trunc/postfix-3.11.6.tar.gz.gpg2": (200, ORIG_ASC.read_bytes(), None),
    }
    with http_mirror(routes) as base:
        mirrors = (
            DOWN_MIRROR,
            UpstreamMirror(f"{base}/gone/postfix-{{version}}.tar.gz", f"{base}/gone/x.gpg2"),
            UpstreamMirror(
                f"{base}/trunc/postfix-{{version}}.tar.gz",
                f"{base}/trunc/postfix-{{version}}.tar.gz.gpg2",
            ),
            file_mirror(ORIG.parent),
        )
        result = fetch(ctx, offline_postfix(mirrors), "3.11.6")
    assert result.tarball.url == f"file://{ORIG.parent}/postfix_3.11.6.orig.tar.gz"


def test_an_answering_official_mirror_is_used_first(ctx: Context) -> None:
    # Where postfix.org's mirrors answer, the tarball comes from the first of them; the pinned
    # key decides either way, and the bytes are the release the Debian pool also carries.
    routes = {
        "/official/postfix-3.11.6.tar.gz": (200, ORIG.read_bytes(), None),
        "/official/postfix-3.11.6.tar.gz.gpg2": (200, ORIG_ASC.read_bytes(), None),
    }
    with http_mirror(routes) as base:
        official = UpstreamMirror(
            f"{base}/official/postfix-{{version}}.tar.gz",
            f"{base}/official/postfix-{{version}}.tar.gz.gpg2",
        )
        result = fetch(ctx, offline_postfix((official, file_mirror(ORIG.parent))), "3.11.6")
    assert result.tarball.url == f"{base}/official/postfix-3.11.6.tar.gz"
    assert "622C7C012254C186677469C50C0B590E80CA15A7" in result.tarball.verified_by
    assert result.tarball.sha256 == hashlib.sha256(ORIG.read_bytes()).hexdigest()


def test_all_mirrors_failing_lists_each(ctx: Context) -> None:
    routes = {"/t/postfix-3.11.6.tar.gz": (200, b"short", 5000)}
    with http_mirror(routes) as base:
        mirrors = (
            DOWN_MIRROR,
            UpstreamMirror(f"{base}/postfix-{{version}}.tar.gz", f"{base}/x.gpg2"),
            UpstreamMirror(f"{base}/t/postfix-{{version}}.tar.gz", f"{base}/t/x.gpg2"),
        )
        with pytest.raises(PfbuildError) as err:
            fetch(ctx, offline_postfix(mirrors), "3.11.6")
    text = err.value.one_line()
    assert f"{DOWN}/postfix-3.11.6.tar.gz: unreachable" in text
    assert f"{base}/postfix-3.11.6.tar.gz: HTTP 404" in text
    assert f"{base}/t/postfix-3.11.6.tar.gz: truncated: got 5 of 5000 bytes" in text
    assert cached_files(ctx.cache_dir / "sources") == []


def test_flipped_byte_is_refused(
    ctx: Context,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = bytearray(ORIG.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped = tmp_path / "flipped.tar.gz"
    flipped.write_bytes(bytes(data))
    recipe = offline_postfix((file_mirror(_mirror_dir(tmp_path, flipped, ORIG_ASC)),))
    _assert_refused(ctx, recipe, monkeypatch, capsys, "bad or unknown OpenPGP signature")


def test_signature_by_another_key_is_refused(
    ctx: Context,
    tmp_path: Path,
    test_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signature = tmp_path / "other.asc"
    test_key.sign(ORIG, signature)
    recipe = offline_postfix((file_mirror(_mirror_dir(tmp_path, ORIG, signature)),))
    _assert_refused(ctx, recipe, monkeypatch, capsys, "bad or unknown OpenPGP signature")


def test_pinned_fingerprint_must_match_the_key(ctx: Context, test_key: SigningKey) -> None:
    recipe = offline_postfix((file_mirror(ORIG.parent),), key=test_key.public, fingerprint="A" * 40)
    with pytest.raises(PfbuildError, match="does not hold the pinned key"):
        fetch(ctx, recipe, "3.11.6")


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ({"postfix-3.11.6/x": b"x", "postfix-3.11.6/../../evil": b"x"}, "'..' path component"),
        ({"/etc/cron.d/evil": b"x"}, "absolute path"),
        ({"postfix-3.11.6/link": "symlink:../../../etc"}, "points outside"),
    ],
)
def test_signed_but_hostile_tarball_is_refused(
    ctx: Context,
    tmp_path: Path,
    test_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    members: dict[str, str | bytes],
    why: str,
) -> None:
    tarball = make_tarball(tmp_path / "hostile.tar.gz", members)
    signature = tmp_path / "hostile.asc"
    test_key.sign(tarball, signature)
    recipe = offline_postfix(
        (file_mirror(_mirror_dir(tmp_path, tarball, signature)),),
        key=test_key.public,
        fingerprint=test_key.fingerprint,
    )
    _assert_refused(ctx, recipe, monkeypatch, capsys, why)


def test_corrupted_cache_entry_is_fetched_again(ctx: Context) -> None:
    recipe = offline_postfix((file_mirror(ORIG.parent),))
    first = fetch(ctx, recipe, "3.11.6")
    cached = first.tarball.path
    data = bytearray(cached.read_bytes())
    data[100] ^= 0xFF
    cached.write_bytes(bytes(data))
    again = fetch(ctx, recipe, "3.11.6")
    assert not again.from_cache
    assert again.tarball.path == cached
    assert again.tarball.sha256 == first.tarball.sha256
    assert cached.read_bytes() == ORIG.read_bytes()


@pytest.mark.unit
def test_bad_version_writes_nothing(ctx: Context) -> None:
    with pytest.raises(PfbuildError, match="malformed"):
        fetch(ctx, offline_postfix((file_mirror(ORIG.parent),)), "../3.11.6")
    assert not (ctx.cache_dir / "sources").exists()
