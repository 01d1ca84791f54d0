"""A slow or flaky mirror costs a bounded time, then the next mirror answers."""

from __future__ import annotations

import time

import pytest

from builder import cli
from builder.core import download
from builder.core.context import Context
from builder.model.recipe import Recipe, UpstreamMirror
from tests.fixtures.hostile_http import ok, serve, status, trickle
from tests.fixtures.sources import ORIG, ORIG_ASC, cached_files, file_mirror, offline_postfix

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines of a test: half a second per file, a read timeout below it, a short pause."""
    monkeypatch.setattr(download, "DEFAULT_DEADLINE", 0.5)
    monkeypatch.setattr(download, "DEFAULT_TIMEOUT", 0.3)
    monkeypatch.setattr(download, "DEFAULT_BACKOFF", 0.01)


def _fetch(ctx: Context, recipe: Recipe, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("builder.commands.fetch.load_recipe", lambda name: recipe)
    return cli.main(["-q", "--workspace", str(ctx.workspace), "fetch", "postfix", "3.11.6"])


def _http_mirror(base: str) -> UpstreamMirror:
    return UpstreamMirror(f"{base}/postfix-{{version}}.tar.gz", f"{base}/postfix-{{version}}.asc")


def test_a_trickling_mirror_is_left_at_the_deadline_for_the_next(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One byte every 0.1 s: the whole tarball would take days, each read comes in time.
    with serve({"/postfix-3.11.6.tar.gz": [trickle(len(ORIG.read_bytes()), 0.1)]}) as (base, s):
        recipe = offline_postfix((_http_mirror(base), file_mirror(ORIG.parent)))
        start = time.monotonic()
        assert _fetch(ctx, recipe, monkeypatch) == 0
        took = time.monotonic() - start
    assert took < 5
    assert s.hits["/postfix-3.11.6.tar.gz"] == 1
    assert f"file://{ORIG.parent}/postfix_3.11.6.orig.tar.gz" in capsys.readouterr().out


def test_only_trickling_mirrors_are_one_line_naming_the_deadline(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve({"/postfix-3.11.6.tar.gz": [trickle(1000, 0.1)]}) as (base, _s):
        assert _fetch(ctx, offline_postfix((_http_mirror(base),)), monkeypatch) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{base}/postfix-3.11.6.tar.gz: too slow: " in err[0]
    assert "within the 0.5 s deadline" in err[0]
    assert cached_files(ctx.cache_dir / "sources") == []


def test_a_flaky_mirror_is_retried_once_then_the_next_is_used(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = {
        "/flaky/postfix-3.11.6.tar.gz": [status(502), ok(ORIG.read_bytes())],
        "/flaky/postfix-3.11.6.asc": [ok(ORIG_ASC.read_bytes())],
        "/down/postfix-3.11.6.tar.gz": [status(503)],
    }
    with serve(routes) as (base, s):
        recipe = offline_postfix((_http_mirror(f"{base}/down"), _http_mirror(f"{base}/flaky")))
        assert _fetch(ctx, recipe, monkeypatch) == 0
    assert s.hits["/down/postfix-3.11.6.tar.gz"] == 2
    assert s.hits["/flaky/postfix-3.11.6.tar.gz"] == 2
    assert f"{base}/flaky/postfix-3.11.6.tar.gz" in capsys.readouterr().out
