"""`pfbuild serve`: the published tree over HTTP on 127.0.0.1, following each publish's flip."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from builder.core.errors import PfbuildError
from builder.publish.serve import make_server, running_server, server_url
from builder.publish.tree import flip_link

pytestmark = pytest.mark.unit


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  # our own http://127.0.0.1 server
        body: bytes = response.read()
        return body


def test_serve_follows_the_flipped_link(tmp_path: Path) -> None:
    for gen in ("apt.1", "apt.2"):
        (tmp_path / gen / "dists").mkdir(parents=True)
        (tmp_path / gen / "dists" / "InRelease").write_text(gen)
    link = tmp_path / "apt"
    flip_link(link, "apt.1")
    with running_server(link) as server:
        url = server_url(server)
        assert url.startswith("http://127.0.0.1:")
        assert _get(url + "dists/InRelease") == b"apt.1"
        flip_link(link, "apt.2")
        assert _get(url + "dists/InRelease") == b"apt.2"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            _get(url + "../apt.1/dists/InRelease")


def test_nothing_published_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PfbuildError, match="nothing to serve"):
        make_server(tmp_path / "missing")


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        port = server.server_address[1]
        with pytest.raises(PfbuildError, match=f"cannot listen on 127.0.0.1:{port}"):
            make_server(tmp_path, port=port)
