"""The repository URL reaches every client's .sources file: only a clean URL gets there."""

from __future__ import annotations

from pathlib import Path

import pytest
from debian.deb822 import Deb822
from hypothesis import given
from hypothesis import strategies as st

from builder import cli
from builder.core.errors import PfbuildError
from builder.publish.tree import check_repo_url, sources_snippet

pytestmark = pytest.mark.unit

HOSTILE = [
    "http://127.0.0.1:8080/\nTrusted: yes",
    "http://127.0.0.1:8080/\r\nTrusted: yes",
    "http://127.0.0.1:8080/\rTrusted: yes",
    "http://127.0.0.1:8080/ Trusted: yes",
    "http://127.0.0.1:8080/\tx",
    "http://127.0.0.1:8080/\nSigned-By: /tmp/evil.asc",
    "http://evil.example/ [trusted=yes]",
    "ftp://127.0.0.1/",
    "javascript:alert(1)",
    "http:///no-host/",
    "http://127.0.0.1/?q=1",
    "",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_publish_refuses_a_hostile_url_before_anything_is_made(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert cli.main(["--workspace", str(ws), "publish", "--url", url]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "repository URL" in err[0], err
    assert not (ws / "signing").exists() and not (ws / "dist").exists()


@pytest.mark.parametrize("url", HOSTILE[:6])
def test_release_refuses_a_hostile_url_at_plan_time(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    argv = ["--workspace", str(ws), "release", "3.11.6", "--dry-run", "--url", url]
    assert cli.main(argv) == 3
    assert "repository URL" in capsys.readouterr().err
    assert not (ws / "state").exists()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "https://apt.example.org/pfbuild/", "file:///srv/apt/"]
)
def test_a_clean_url_becomes_the_one_uri_of_the_stanza(url: str) -> None:
    stanza = Deb822(sources_snippet(url, "trixie").splitlines())
    assert stanza["URIs"] == check_repo_url(url)
    assert set(stanza) == {"Types", "URIs", "Suites", "Components", "Signed-By"}


@given(st.text(max_size=80))
def test_no_text_smuggles_a_field_into_the_stanza(url: str) -> None:
    try:
        snippet = sources_snippet(url, "trixie")
    except PfbuildError:
        return
    stanza = Deb822(snippet.splitlines())
    assert set(stanza) == {"Types", "URIs", "Suites", "Components", "Signed-By"}
    assert stanza["Signed-By"] == "/etc/apt/keyrings/pfbuild.asc"
    assert stanza["URIs"] == check_repo_url(url)
    assert "\n" not in stanza["URIs"] and " " not in stanza["URIs"]
