"""The released repository with real apt: our postfix packages, trusted through our key only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.core.context import Context
from builder.model.distro import Distribution
from builder.model.loader import load_recipe
from builder.publish.tree import KEY_FILE_NAME, sources_file_name
from tests.fixtures.apt import AptContainer, apt_container, free_port
from tests.integration.conftest import POSTFIX_VERSION

pytestmark = pytest.mark.integration

__all__ = ["apt_container"]  # the fixture this module borrows

POSTFIX_SET = (
    "postfix", "postfix-ldap", "postfix-pcre", "postfix-sqlite", "postfix-lmdb", "postfix-cdb",
)  # fmt: skip


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310  # our own loopback server
            return True
    except OSError:
        return False


@pytest.fixture
def served(published: Context) -> Iterator[str]:
    """`pfbuild serve` (the real CLI) on a free 127.0.0.1 port; yields its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "builder", "--workspace", str(published.workspace), "serve",
           "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while not _answers(url + "pfbuild.asc"):
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_apt_installs_our_postfix_and_mimalloc_with_only_our_key(
    published: Context, served: str, apt_container: AptContainer, target: Distribution
) -> None:
    tree = published.apt_tree
    snippet = (tree / sources_file_name(target.name)).read_text()
    # The snippet names the URL given at publish time; this test serves on a free port.
    snippet = re.sub(r"(?m)^URIs: .*$", f"URIs: {served}", snippet)
    assert "Signed-By: /etc/apt/keyrings/pfbuild.asc" in snippet
    # The distribution's own sources stay (postfix depends on its libraries); our repo is
    # trusted through our exported key alone.
    apt_container.add_files(
        {
            "keyrings/pfbuild.asc": (tree / KEY_FILE_NAME).read_bytes(),
            "sources.list.d/pfbuild.sources": snippet.encode(),
        },
    )
    code, out = apt_container.update()
    assert code == 0, out
    ours = f"{POSTFIX_VERSION}-1+pf1{target.version_suffix}"
    candidate, policy = apt_container.candidate("postfix")
    assert candidate == ours, policy
    assert f"{served.rstrip('/')} {target.name}/main amd64 Packages" in policy
    malloc = load_recipe("mimalloc-secure").binary_packages[target.name]
    apt_container.ok("apt-get", "install", "-y", "--no-install-recommends", *POSTFIX_SET, *malloc)
    installed = apt_container.ok("dpkg-query", "-W", "-f", "${Package} ${Version}\n", *POSTFIX_SET)
    assert sorted(installed.split("\n")[:-1]) == sorted(f"{p} {ours}" for p in POSTFIX_SET)
    libs = apt_container.ok("sh", "-c", "ldconfig -p | grep libmimalloc-secure")
    assert "libmimalloc-secure.so.2" in libs


def test_release_reports_show_the_hardening_per_target(published: Context) -> None:
    for target, cet in (("trixie", "unavailable"), ("resolute", "yes")):
        report = published.report_dir("postfix", POSTFIX_VERSION, target) / "hardening.json"
        data = json.loads(Path(report).read_text())
        assert data["verdict"] == "pass"
        assert len(data["elves"]) > 50
        for elf in data["elves"]:
            findings = elf["findings"]
            for prop in ("relro", "bindnow", "fortify3", "stackclash", "nxstack"):
                assert findings[prop]["status"] == "yes", (elf["path"], prop, findings[prop])
            assert findings["pie"]["status"] in ("yes", "n/a"), elf["path"]
            assert findings["cet"]["status"] == cet, (elf["path"], findings["cet"])
        words = " ".join(data["toolchain_notes"])
        assert ("start files" in words) if target == "trixie" else ("IBT" in words)
