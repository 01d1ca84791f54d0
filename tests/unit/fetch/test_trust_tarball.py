"""A signed but hostile tarball is refused at fetch time, in one line, before the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import cli
from builder.core import unpack
from builder.core.context import Context
from builder.model.recipe import Recipe
from tests.fixtures.sources import (
    SigningKey,
    cached_files,
    file_mirror,
    make_tarball,
    offline_postfix,
)

pytestmark = pytest.mark.unit


def _recipe(tmp_path: Path, key: SigningKey, members: dict[str, str | bytes]) -> Recipe:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tarball = make_tarball(mirror / "postfix_3.11.7.orig.tar.gz", members)
    key.sign(tarball, mirror / f"{tarball.name}.asc")
    return offline_postfix((file_mirror(mirror),), key=key.public, fingerprint=key.fingerprint)


def _fetch(ctx: Context, recipe: Recipe, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("builder.commands.fetch.load_recipe", lambda name: recipe)
    return cli.main(["-q", "--workspace", str(ctx.workspace), "fetch", "postfix", "3.11.7"])


@pytest.mark.parametrize(
    ("members", "words"),
    [
        (
            {"postfix-3.11.7/a/b": "symlink:..", "postfix-3.11.7/a/b/a/b/c": "symlink:../../../.."},
            "unsafe member 'postfix-3.11.7/a/b/a/b/c': symlink ../../../.. points outside the tree",
        ),
        (
            {"postfix-3.11.7/README": b"x", "": b"x"},
            "unsafe member '': empty name or the archive's root itself",
        ),
        (
            {".": "dir", "postfix-3.11.7/README": b"x"},
            "unsafe member '.': empty name or the archive's root itself",
        ),
    ],
    ids=["symlink-chain", "empty-name", "dot"],
)
def test_a_hostile_tree_is_refused_at_fetch_time(
    ctx: Context,
    tmp_path: Path,
    test_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    members: dict[str, str | bytes],
    words: str,
) -> None:
    assert _fetch(ctx, _recipe(tmp_path, test_key, members), monkeypatch) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pfbuild: error: postfix_3.11.7.orig.tar.gz has an " + words)
    assert cached_files(ctx.cache_dir / "sources") == []
    assert not (ctx.cache_dir / "sources" / "index.json").exists()


def test_too_many_members_are_refused_at_fetch_time(
    ctx: Context,
    tmp_path: Path,
    test_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(unpack, "MAX_MEMBERS", 50)
    members: dict[str, str | bytes] = {f"postfix-3.11.7/{i}": b"" for i in range(51)}
    assert _fetch(ctx, _recipe(tmp_path, test_key, members), monkeypatch) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "postfix_3.11.7.orig.tar.gz has more than 50 members" in err[0]
    assert cached_files(ctx.cache_dir / "sources") == []
