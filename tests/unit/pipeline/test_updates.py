"""check-upstream: release listings served over real HTTP on 127.0.0.1, exit codes, fallback."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import cli
from builder.commands import check_upstream as command
from builder.core import run
from builder.core.context import Context, prepare_workspace
from builder.core.errors import PfbuildError
from builder.model.loader import load_recipe
from builder.model.recipe import Recipe
from builder.pipeline.updates import (
    check_upstream,
    last_published,
    listing_versions,
    newest_from_debian,
    release_of,
    sources_versions,
)
from tests.fixtures.sources import http_mirror, make_test_key

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A timed-out listing is retried after a pause; the tests need not wait seconds for it."""
    monkeypatch.setattr("builder.core.download.DEFAULT_BACKOFF", 0.01)


HANG = "/hang/"
# What the official mirrors' `official/` folder looks like (an Apache-style index).
LISTING = b"""<html><head><title>Index of /official</title></head><body>
<a href="postfix-3.10.9.tar.gz">postfix-3.10.9.tar.gz</a>
<a href="postfix-3.11.6.tar.gz">postfix-3.11.6.tar.gz</a>
<a href="postfix-3.11.6.tar.gz.gpg2">postfix-3.11.6.tar.gz.gpg2</a>
<a href="postfix-3.11.7.tar.gz">postfix-3.11.7.tar.gz</a>
<a href="postfix-3.11.7.tar.gz.gpg2">postfix-3.11.7.tar.gz.gpg2</a>
<a href="postfix-3.12-20261101.tar.gz">postfix-3.12-20261101.tar.gz</a>
</body></html>
"""
SAME = LISTING.replace(b"3.11.7", b"3.11.6")
GARBAGE = b"<html><body>\x00\xff Service temporarily unavailable; try postfix.org</body></html>"


@pytest.fixture(scope="module")
def mirror() -> Iterator[str]:
    """A listing server on 127.0.0.1: /new/, /same/, /garbage/, and /hang/ that never answers."""
    routes = {"/new/": LISTING, "/same/": SAME, "/garbage/": GARBAGE}
    with http_mirror({path: (200, body, None) for path, body in routes.items()}, [HANG]) as base:
        yield base


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return prepare_workspace(tmp_path / "ws")


def _publish_manifest(workspace: Path, version: str) -> None:
    folder = workspace / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"postfix-{version}.json").write_text(json.dumps({"version": version}))


def _check(workspace: Path, *args: str) -> int:
    return cli.main(["--workspace", str(workspace), "check-upstream", "postfix", *args])


def test_newer_release_exits_0_and_prints_it(
    mirror: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _publish_manifest(workspace, "3.11.6")
    code = _check(workspace, "--listing-url", f"{mirror}/new/", "--no-fallback")
    out = capsys.readouterr().out
    assert code == 0
    assert "postfix 3.11.7" in out
    assert "newer than the published 3.11.6" in out


def test_same_release_exits_10(
    mirror: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _publish_manifest(workspace, "3.11.6")
    code = _check(workspace, "--listing-url", f"{mirror}/same/", "--no-fallback")
    captured = capsys.readouterr()
    assert code == 10
    assert "3.11.6" in captured.out
    assert "not newer" in captured.out
    assert "error" not in captured.err


def test_nothing_published_counts_as_newer(
    mirror: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _check(workspace, "--listing-url", f"{mirror}/same/", "--no-fallback", "--json") == 0
    assert json.loads(capsys.readouterr().out)["published"] is None


def test_json_shape(mirror: str, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _publish_manifest(workspace, "3.11.7")
    code = _check(workspace, "--listing-url", f"{mirror}/new/", "--no-fallback", "--json")
    assert code == 10
    assert json.loads(capsys.readouterr().out) == {
        "recipe": "postfix",
        "series": "3.11",
        "version": "3.11.7",
        "found_at": f"{mirror}/new/",
        "published": "3.11.7",
        "newer": False,
    }


def test_garbage_listing_without_fallback_is_a_one_line_error(
    mirror: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _check(workspace, "--listing-url", f"{mirror}/garbage/", "--no-fallback")
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 3
    assert len(err) == 1
    assert err[0].startswith("pfbuild: error: cannot find the newest postfix 3.11.N release")
    assert f"{mirror}/garbage/ lists no postfix-3.11.N.tar.gz" in err[0]


def test_garbage_listing_falls_back_to_debian(
    mirror: str,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def fake_debian(ctx: Context, recipe: Recipe) -> tuple[str, str]:
        asked.append(recipe.name)
        return "3.11.8", "fake sid Sources"

    monkeypatch.setattr(command, "newest_from_debian", fake_debian)
    code = _check(workspace, "--listing-url", f"{mirror}/garbage/", "--json")
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert asked == ["postfix"]
    assert (result["version"], result["found_at"]) == ("3.11.8", "fake sid Sources")


def test_first_answering_mirror_wins(mirror: str, ctx: Context) -> None:
    def no_fallback(ctx: Context, recipe: Recipe) -> tuple[str, str]:
        raise AssertionError("the fallback must not run when a mirror answered")

    listings = (f"{mirror}/missing/", f"{mirror}/new/", f"{mirror}/same/")
    result = check_upstream(ctx, load_recipe("postfix"), listings, fallback=no_fallback)
    assert (result.version, result.found_at) == ("3.11.7", f"{mirror}/new/")


def test_timeout_names_the_mirror(
    mirror: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _check(
        workspace, "--listing-url", f"{mirror}{HANG}", "--no-fallback", "--timeout", "0.3"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert f"{mirror}{HANG}" in err[-1]
    assert "timed out" in err[-1]


def test_listing_and_fallback_failing_name_both(mirror: str, ctx: Context) -> None:
    def broken_debian(ctx: Context, recipe: Recipe) -> tuple[str, str]:
        raise PfbuildError("sid InRelease: bad signature")

    with pytest.raises(PfbuildError) as info:
        check_upstream(ctx, load_recipe("postfix"), (f"{mirror}/garbage/",), fallback=broken_debian)
    assert "garbage/ lists no" in info.value.why
    assert "Debian Sources: sid InRelease: bad signature" in info.value.why


def test_bad_timeout_is_refused(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _check(workspace, "--timeout", "0") == 3
    assert "--timeout must be positive" in capsys.readouterr().err


def test_listing_versions_ignores_signatures_other_series_and_lookalikes() -> None:
    text = (
        "postfix-3.11.10.tar.gz postfix-3.11.9.tar.gz postfix-3.11.11.tar.gz.gpg2 "
        "postfix-3.110.1.tar.gz xpostfix-3.11.99.tar.gz postfix-3.11.01.tar.gz "
        "postfix-3.11.12.tar.gzip"
    )
    assert listing_versions(text, "postfix", "3.11") == ["3.11.10", "3.11.9"]
    assert listing_versions(LISTING.decode(), "postfix", "3.10") == ["3.10.9"]
    assert listing_versions(GARBAGE.decode(errors="replace"), "postfix", "3.11") == []


def test_sources_versions_reads_only_the_package() -> None:
    index = (
        "Package: postfix\nVersion: 3.11.7-1\n\n"
        "Package: postfix\nVersion: 1:3.11.12-2\n\n"
        "Package: postfix\nVersion: 3.10.5-1\n\n"
        "Package: postfix-gld\nVersion: 3.11.99-1\n\n"
        "Package: mimalloc\nVersion: 2.0.9+ds-2\n"
    )
    assert sources_versions(index, "postfix", "3.11") == ["3.11.12", "3.11.7"]
    assert sources_versions(index, "mimalloc", "2.0") == ["2.0.9"]


def test_release_of_debian_versions() -> None:
    assert release_of("3.11.6-1+pf1~trixie") == "3.11.6"
    assert release_of("2.0.9+ds-2+pf1~resolute") == "2.0.9"
    assert release_of("1:3.11.6-1") == "3.11.6"
    assert release_of("3.11") is None


def test_last_published_reads_the_published_tree(ctx: Context) -> None:
    base = ctx.apt_tree / "dists" / "trixie" / "main" / "binary-amd64"
    base.mkdir(parents=True)
    (base / "Packages").write_text(
        "Package: postfix\nVersion: 3.11.7-1+pf1~trixie\nArchitecture: amd64\n\n"
        "Package: postfix-doc\nVersion: 3.11.9-1+pf1~trixie\nArchitecture: all\n"
    )
    _publish_manifest(ctx.workspace, "3.11.6")
    (ctx.workspace / "manifests" / "postfix-broken.json").write_text("{")
    assert last_published(ctx, load_recipe("postfix")) == "3.11.7"


def test_recipe_rejects_a_listing_that_is_not_a_folder_url() -> None:
    recipe = load_recipe("postfix")
    assert recipe.release_listings
    with pytest.raises(PfbuildError, match="release_listings"):
        dataclasses.replace(recipe, release_listings=("ftp://mirror/official",))


def _signed_archive(where: Path, sources: str) -> tuple[str, Path]:
    """A file:// archive with a sid suite whose InRelease a throwaway key signs; its keyring."""
    key = make_test_key(where)
    suite = where / "archive" / "dists" / "sid"
    (suite / "main" / "source").mkdir(parents=True)
    index = lzma.compress(sources.encode())
    (suite / "main" / "source" / "Sources.xz").write_bytes(index)
    digest = hashlib.sha256(index).hexdigest()
    (suite / "Release").write_text(
        f"Suite: unstable\nCodename: sid\nSHA256:\n {digest} {len(index)} main/source/Sources.xz\n"
    )
    gpg: list[str | Path] = ["gpg", "--homedir", key.home, "--batch", "--yes"]
    run.run([*gpg, "--output", suite / "InRelease", "--clearsign", suite / "Release"])
    keyring = where / "keyring.gpg"
    run.run([*gpg, "--output", keyring, "--dearmor", key.public])
    return f"file://{where / 'archive'}", keyring


@pytest.mark.integration  # gpg signs the archive and gpgv checks it
def test_debian_fallback_reads_the_signed_sources_index(tmp_path: Path, ctx: Context) -> None:
    sources = (
        "Package: postfix\nVersion: 3.11.6-1\nDirectory: pool/main/p/postfix\n\n"
        "Package: postfix\nVersion: 3.11.9-2\nDirectory: pool/main/p/postfix\n\n"
        "Package: postfix\nVersion: 3.12.0-1\nDirectory: pool/main/p/postfix\n"
    )
    url, keyring = _signed_archive(tmp_path, sources)
    recipe = load_recipe("postfix")
    src = dataclasses.replace(
        recipe.packaging["3.11.6"], archive_url=url, suites=("sid",), keyring=str(keyring)
    )
    local = dataclasses.replace(recipe, packaging={"3.11.6": src})
    assert newest_from_debian(ctx, local) == ("3.11.9", f"{url} sid Sources")
    # A Sources.xz that its signed InRelease does not vouch for is refused.
    index = tmp_path / "archive" / "dists" / "sid" / "main" / "source" / "Sources.xz"
    index.write_bytes(lzma.compress(sources.replace("3.11.9", "3.11.99").encode()))
    shutil.rmtree(ctx.cache_dir / "archive")
    with pytest.raises(PfbuildError, match="does not match its signed InRelease"):
        newest_from_debian(ctx, local)
