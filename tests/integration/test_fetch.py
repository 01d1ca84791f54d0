"""Fetching from the real archives: postfix by Wietse's signature, mimalloc by the signed chain."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from builder import cli
from builder.core.aptindex import release_hashes
from builder.core.context import Context, prepare_workspace
from builder.core.download import download
from builder.core.errors import PfbuildError
from builder.core.gpg import clearsigned_text, keyring_fingerprints
from builder.fetch.cache import FetchResult
from builder.fetch.sources import fetch
from builder.model.loader import load_recipe
from builder.model.recipe import UpstreamMirror
from tests.fixtures.sources import ORIG

pytestmark = pytest.mark.integration

DOWN = "http://127.0.0.1:9"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
WIETSE = "622C7C012254C186677469C50C0B590E80CA15A7"


@pytest.fixture(scope="module")
def net_ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    """One workspace for this module: the real downloads happen once."""
    return Context(workspace=prepare_workspace(tmp_path_factory.mktemp("ws")))


@pytest.fixture(scope="module")
def mimalloc(net_ctx: Context) -> FetchResult:
    """mimalloc 2.0.9 fetched through bookworm's signed chain."""
    return fetch(net_ctx, load_recipe("mimalloc-secure"), "2.0.9")


def test_cli_fetch_postfix_then_cache_without_network(net_ctx: Context) -> None:
    argv = ["-q", "--workspace", str(net_ctx.workspace), "fetch", "postfix", "3.11.6"]
    assert cli.main(argv) == 0
    recipe = load_recipe("postfix")
    assert recipe.upstream is not None
    down = UpstreamMirror(f"{DOWN}/p-{{version}}.tar.gz", f"{DOWN}/p-{{version}}.tar.gz.gpg2")
    unreachable = dataclasses.replace(
        recipe,
        upstream=dataclasses.replace(recipe.upstream, mirrors=(down,)),
        packaging={
            v: dataclasses.replace(p, archive_url=DOWN) for v, p in recipe.packaging.items()
        },
    )
    result = fetch(net_ctx, unreachable, "3.11.6")
    assert result.from_cache
    # Whichever mirror answered (postfix.org's or the Debian pool), the tarball is the release
    # Wietse signed: the pinned key vouched for it, and its bytes are those of the test data.
    mirrors = [m.tarball.format(version="3.11.6") for m in recipe.upstream.mirrors]
    assert result.tarball.url in mirrors
    assert WIETSE in result.tarball.verified_by
    assert result.tarball.sha256 == hashlib.sha256(ORIG.read_bytes()).hexdigest()
    assert result.get("debian-tarball").name == "postfix_3.11.6-1.debian.tar.xz"


def test_version_missing_everywhere_lists_every_mirror(net_ctx: Context) -> None:
    with pytest.raises(PfbuildError) as err:
        fetch(net_ctx, load_recipe("postfix"), "3.11.99")
    text = err.value.one_line()
    assert "de.postfix.org" in text
    assert "postfix_3.11.99.orig.tar.gz: HTTP 404" in text


def test_mimalloc_through_the_signed_chain(mimalloc: FetchResult) -> None:
    assert mimalloc.dsc.sha256 == (
        "fb324e4faaa693d90f5bf0a8e652ea96f41d4c7f6ea432ea819756e8f70ce42d"
    )
    assert mimalloc.dsc.verified_by.startswith("bookworm InRelease signature")
    names = sorted(f.name for f in mimalloc.files)
    assert names == [
        "mimalloc_2.0.9+ds-2.debian.tar.xz",
        "mimalloc_2.0.9+ds-2.dsc",
        "mimalloc_2.0.9+ds.orig.tar.xz",
    ]


def test_dsc_not_matching_the_signed_index_is_refused(
    net_ctx: Context, mimalloc: FetchResult, tmp_path: Path
) -> None:
    # A local copy of bookworm: genuine signed InRelease and Sources.xz, tampered .dsc.
    archive = tmp_path / "archive"
    suite = archive / "dists" / "bookworm"
    (suite / "main" / "source").mkdir(parents=True)
    download("http://deb.debian.org/debian/dists/bookworm/InRelease", suite / "InRelease")
    keyring = Path(DEBIAN_KEYRING)
    payload = clearsigned_text(keyring, suite / "InRelease", keyring_fingerprints(keyring))
    want = release_hashes(payload)["main/source/Sources.xz"][0]
    sources = net_ctx.cache_dir / "archive" / f"{want}.xz"
    shutil.copyfile(sources, suite / "main" / "source" / "Sources.xz")
    pool = archive / "pool" / "main" / "m" / "mimalloc"
    pool.mkdir(parents=True)
    for f in mimalloc.files:
        shutil.copyfile(f.path, pool / f.name)
    dsc = pool / mimalloc.dsc.name
    dsc.write_text(dsc.read_text().replace("Standards-Version: 4.6.0", "Standards-Version: 4.6.1"))
    recipe = load_recipe("mimalloc-secure")
    src = dataclasses.replace(recipe.packaging["2.0.9"], archive_url=f"file://{archive}")
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    with pytest.raises(PfbuildError, match=r"mimalloc_2.0.9\+ds-2.dsc does not match the bookworm"):
        fetch(ctx, dataclasses.replace(recipe, packaging={"2.0.9": src}), "2.0.9")
    assert not (ctx.cache_dir / "sources").exists()
