"""Trust boundaries of `pfbuild fetch` end to end: real site recipes, real gpg, HTTP on 127.0.0.1.

No request leaves the machine: every mirror is a server in this process, the packaging comes
from the repository's test mirror through its pinned .dsc hash.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from builder import cli
from builder.core import download
from builder.core.context import Context, prepare_workspace
from tests.conftest import TEST_MIRROR
from tests.fixtures.hostile_http import ok, serve, trickle
from tests.fixtures.sources import ORIG, ORIG_ASC, SigningKey, make_tarball, make_test_key

pytestmark = pytest.mark.integration

WIETSE = "622C7C012254C186677469C50C0B590E80CA15A7"

SITE_RECIPE = """
import dataclasses

from builder.model.recipe import UpstreamMirror
from recipes.postfix import RECIPE as BUILTIN

assert BUILTIN.upstream is not None
RECIPE = dataclasses.replace(
    BUILTIN,
    upstream=dataclasses.replace(
        BUILTIN.upstream,
        mirrors=tuple(
            UpstreamMirror(f"{{base}}/postfix-{{{{version}}}}.tar.gz",
                           f"{{base}}/postfix-{{{{version}}}}.tar.gz.asc")
            for base in {bases!r}
        ),
        signing_key={key!r} or BUILTIN.upstream.signing_key,
        fingerprint={fingerprint!r} or BUILTIN.upstream.fingerprint,
    ),
    packaging={{
        "3.11.6": dataclasses.replace(
            BUILTIN.packaging["3.11.6"], archive_url="file://{mirror}/debian"
        ),
    }},
)
"""


def _site_recipe(folder: Path, bases: list[str], key: SigningKey | None = None) -> Path:
    """A PFBUILD_RECIPES folder whose postfix.py shadows the built-in recipe."""
    folder.mkdir(parents=True)
    text = SITE_RECIPE.format(
        bases=bases,
        key=str(key.public) if key else "",
        fingerprint=key.fingerprint if key else "",
        mirror=TEST_MIRROR,
    )
    (folder / "postfix.py").write_text(textwrap.dedent(text))
    return folder


@pytest.fixture(scope="module")
def foreign_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """The site's own key: not the one the built-in recipe pins."""
    return make_test_key(tmp_path_factory.mktemp("key"))


def _pfbuild(ctx: Context, *args: str) -> int:
    return cli.main(["--workspace", str(ctx.workspace), *args])


def test_a_site_recipes_fetch_does_not_vouch_for_wietses_key(
    tmp_path: Path,
    foreign_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    trojan = make_tarball(tmp_path / "t.tar.gz", {"postfix-3.11.7/backdoor": b"evil\n"})
    signature = tmp_path / "t.tar.gz.asc"
    foreign_key.sign(trojan, signature)
    routes = {
        "/site/postfix-3.11.7.tar.gz": [ok(trojan.read_bytes())],
        "/site/postfix-3.11.7.tar.gz.asc": [ok(signature.read_bytes())],
    }
    with serve(routes) as (base, state):
        site = _site_recipe(tmp_path / "site", [f"{base}/site"], foreign_key)
        monkeypatch.setenv("PFBUILD_RECIPES", str(site))
        assert _pfbuild(ctx, "fetch", "postfix", "3.11.7") == 0
        assert foreign_key.fingerprint in capsys.readouterr().out
        # The same recipe name with Wietse's key (as the built-in one), its mirror empty.
        pinned = _site_recipe(tmp_path / "pinned", [f"{base}/empty"])
        monkeypatch.setenv("PFBUILD_RECIPES", str(pinned))
        assert _pfbuild(ctx, "-q", "fetch", "postfix", "3.11.7") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert "verified against another trust anchor; verifying again" in err[-2]
    assert err[-1].startswith("pfbuild: error: no mirror delivered a verified postfix 3.11.7")
    assert f"{base}/empty/postfix-3.11.7.tar.gz: HTTP 404" in err[-1]
    assert state.hits["/empty/postfix-3.11.7.tar.gz"] == 1
    index = json.loads((ctx.cache_dir / "sources" / "index.json").read_text())
    assert [e["anchor"]["upstream_fingerprint"] for e in index.values()] == [
        foreign_key.fingerprint
    ]


def test_wietses_release_through_a_trickling_then_a_good_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    monkeypatch.setattr(download, "DEFAULT_DEADLINE", 1.0)
    monkeypatch.setattr(download, "DEFAULT_TIMEOUT", 0.5)
    routes = {
        "/slow/postfix-3.11.6.tar.gz": [trickle(len(ORIG.read_bytes()), 0.2)],
        "/good/postfix-3.11.6.tar.gz": [ok(ORIG.read_bytes())],
        "/good/postfix-3.11.6.tar.gz.asc": [ok(ORIG_ASC.read_bytes())],
    }
    with serve(routes) as (base, state):
        site = _site_recipe(tmp_path / "site", [f"{base}/slow", f"{base}/good"])
        monkeypatch.setenv("PFBUILD_RECIPES", str(site))
        assert _pfbuild(ctx, "fetch", "postfix", "3.11.6") == 0
    out = capsys.readouterr().out
    assert f"from {base}/good/postfix-3.11.6.tar.gz" in out
    assert f"by OpenPGP signature by {WIETSE}" in out
    assert state.hits["/slow/postfix-3.11.6.tar.gz"] == 1
    assert list(ctx.tmp_dir.iterdir()) == []
