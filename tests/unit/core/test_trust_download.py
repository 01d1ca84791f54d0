"""Downloads against hostile servers on 127.0.0.1: trickling, endless, flaky; deadlines in ms."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder import cli
from builder.core.download import DownloadError, download, fetch_bytes
from tests.fixtures.hostile_http import (
    Behaviour,
    endless,
    hang,
    ok,
    reset,
    serve,
    status,
    trickle,
    trickle_headers,
)

pytestmark = pytest.mark.unit


def _timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def test_a_trickling_body_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    # Each byte comes well within the read timeout: only an overall deadline stops it.
    with serve({"/slow": [trickle(1000, 0.05)]}) as (base, state):
        dest = tmp_path / "file"
        exc, took = _timed(lambda: download(f"{base}/slow", dest, timeout=0.3, deadline=0.5))
    assert isinstance(exc, DownloadError)
    assert "too slow" in exc.reason
    assert "0.5 s deadline" in exc.reason
    assert took < 2.5
    assert state.hits["/slow"] == 1  # a slow server is not retried
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_trickling_headers_are_cut_off_at_the_deadline(tmp_path: Path) -> None:
    with serve({"/slow": [trickle_headers(0.05)]}) as (base, _state):
        exc, took = _timed(lambda: fetch_bytes(f"{base}/slow", timeout=0.3, deadline=0.5))
    assert isinstance(exc, DownloadError)
    assert "too slow" in exc.reason
    assert took < 2.5


def test_an_endless_body_is_cut_off_at_the_size_cap(tmp_path: Path) -> None:
    with serve({"/big": [endless()]}) as (base, state):
        dest = tmp_path / "file"
        with pytest.raises(DownloadError, match=r"too large: more than the 65536 bytes allowed"):
            download(f"{base}/big", dest, max_bytes=1 << 16)
        # Cut off while it streamed: a few socket buffers, not the 64 MiB on offer.
        assert state.sent["/big"] < 16 << 20
    assert not dest.exists()


def test_an_announced_size_over_the_cap_is_refused_before_reading() -> None:
    with serve({"/big": [endless(announce=300 << 20)]}) as (base, state):
        with pytest.raises(DownloadError, match=r"314572800 bytes announced, at most 1024"):
            fetch_bytes(f"{base}/big", max_bytes=1024)
        assert state.sent["/big"] < 16 << 20


@pytest.mark.parametrize(
    "first",
    [status(503), status(500), reset(), hang()],
    ids=["503", "500", "connection-reset", "read-timeout"],
)
def test_a_transient_failure_is_retried_once(tmp_path: Path, first: Behaviour) -> None:
    with serve({"/f": [first, ok(b"payload")]}) as (base, state):
        dest = tmp_path / "file"
        download(f"{base}/f", dest, timeout=0.3, deadline=5, backoff=0.01)
    assert dest.read_bytes() == b"payload"
    assert state.hits["/f"] == 2


def test_a_persistent_5xx_gives_up_after_one_retry(tmp_path: Path) -> None:
    with serve({"/f": [status(503)]}) as (base, state), pytest.raises(DownloadError) as err:
        download(f"{base}/f", tmp_path / "file", backoff=0.01)
    assert err.value.reason == "HTTP 503 Service Unavailable (2 attempts)"
    assert state.hits["/f"] == 2


def test_a_404_is_not_retried(tmp_path: Path) -> None:
    with serve({}) as (base, state), pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/missing", tmp_path / "file", backoff=0.01)
    assert state.hits["/missing"] == 1


def test_check_upstream_caps_the_listing_while_it_streams(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve({"/official/": [endless()]}) as (base, state):
        argv = ["-q", "--workspace", str(tmp_path / "ws"), "check-upstream", "postfix"]
        argv += ["--listing-url", f"{base}/official/", "--no-fallback"]
        assert cli.main(argv) == 3
        # MAX_LISTING_BYTES is 4 MiB: the rest of the 64 MiB answer is never read.
        assert state.sent["/official/"] < 16 << 20
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{base}/official/: too large: more than the 4194304 bytes allowed" in err[0]
