"""The published repository for real: aptly, gpg, `pfbuild serve`, and apt in clean containers.

The packages are tiny test .debs made here; the same code path later carries the real postfix,
postfix-{ldap,pcre,sqlite,lmdb,cdb} and mimalloc-secure packages.
TODO(lead): once the build stage produces them, add a test that publishes the real build and
installs `postfix postfix-ldap postfix-pcre postfix-sqlite postfix-lmdb postfix-cdb` plus the
mimalloc-secure package with `AptContainer`, checking `apt-cache policy postfix`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from builder.cli import main
from builder.core import run
from builder.core.context import Context, prepare_workspace
from builder.core.gpg import verify_signature
from builder.model.distro import RESOLUTE, TRIXIE, Distribution
from builder.publish.signing import (
    SigningConfig,
    ensure_signing_key,
    export_public_key,
    gpg_cmdline,
    stop_agent,
)
from builder.publish.tree import inrelease_date, sources_file_name
from tests.conftest import REPO
from tests.fixtures.apt import AptContainer, apt_container, free_port
from tests.fixtures.builds import make_build

pytestmark = pytest.mark.integration

__all__ = ["apt_container"]  # the fixture this module borrows


class Repo:
    """A workspace of its own whose published tree is served on 127.0.0.1:port."""

    def __init__(self, workspace: Path) -> None:
        self.ctx = Context(workspace=prepare_workspace(workspace))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"

    @property
    def tree(self) -> Path:
        return self.ctx.apt_tree

    def publish_args(self, *args: str) -> list[str]:
        return ["--workspace", str(self.ctx.workspace), "publish", "--url", self.url, *args]

    def publish(self, *args: str) -> None:
        """Run the real CLI in this process; fail the test on a non-zero exit."""
        assert main(self.publish_args(*args)) == 0

    def inrelease(self, suite: str) -> Path:
        return self.tree / "dists" / suite / "InRelease"

    def date(self, suite: str) -> float:
        date = inrelease_date(self.inrelease(suite))
        assert date is not None
        return date


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    """A workspace with version 1.0 built for both targets, served while the test runs."""
    repo = Repo(tmp_path / "ws")
    for dist in (TRIXIE, RESOLUTE):
        make_build(repo.ctx, dist, "1.0")
    repo.publish("hello", "1.0")
    with pfbuild_serve(repo):
        yield repo


def cli_cmdline(*args: str) -> list[str]:
    """The real pfbuild CLI in a process of its own."""
    return [sys.executable, "-m", "builder", *args]


CLI_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@contextmanager
def pfbuild_serve(repo: Repo) -> Iterator[None]:
    """`pfbuild serve --port P` running for the block; it is stopped by its pid afterwards."""
    cmd = cli_cmdline("--workspace", str(repo.ctx.workspace), "serve", "--port", str(repo.port))
    server = subprocess.Popen(cmd, env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.communicate()[0].decode()
            try:
                socket.create_connection(("127.0.0.1", repo.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "pfbuild serve did not start listening"
                time.sleep(0.05)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def signature_digest_algos(inrelease: Path) -> list[int]:
    """Digest algorithms of the signature packets of a clearsigned file (gpg --list-packets)."""
    text = inrelease.read_text()
    block = text[text.index("-----BEGIN PGP SIGNATURE-----") :]
    with tempfile.TemporaryDirectory(prefix="pfbuild-packets-") as home:
        cmd = gpg_cmdline(Path(home), "--list-packets")
        out = run.run(cmd, input=block.encode()).stdout.decode()
    assert ":signature packet:" in out, out
    return [int(algo) for algo in re.findall(r"digest algo (\d+)", out)]


def dearmored_key(repo: Repo, dest: Path) -> Path:
    """The exported public key as a binary keyring, for gpgv."""
    with tempfile.TemporaryDirectory(prefix="pfbuild-dearmor-") as home:
        run.run(
            gpg_cmdline(Path(home), "--yes", "--dearmor", "-o", dest, repo.tree / "pfbuild.asc")
        )
    return dest


# ---- acceptance -------------------------------------------------------------------------------


def test_apt_installs_from_the_served_repo_with_only_our_key(
    repo: Repo, apt_container: AptContainer, target: Distribution, tmp_path: Path
) -> None:
    suite = target.name
    apt_container.configure_from(repo.tree, suite)
    code, out = apt_container.update()
    assert code == 0, out
    assert f"{repo.url.rstrip('/')} {suite} InRelease" in out
    version = f"1.0-1+pf1{target.version_suffix}"
    candidate, policy = apt_container.candidate("pfbuild-hello")
    assert candidate == version
    assert f"{repo.url.rstrip('/')} {suite}/main amd64 Packages" in policy
    apt_container.ok("apt-get", "install", "-y", "--no-install-recommends", "pfbuild-hello")
    installed = apt_container.ok("dpkg-query", "-W", "pfbuild-hello", "pfbuild-data")
    assert installed.split() == ["pfbuild-data", version, "pfbuild-hello", version]

    # The same container trusting another key refuses the repository.
    other = Context(workspace=prepare_workspace(tmp_path / "other"))
    other_key = ensure_signing_key(other, SigningConfig())
    try:
        export_public_key(other_key, tmp_path / "other.asc")
    finally:
        stop_agent(other, other_key)
    apt_container.configure(
        (tmp_path / "other.asc").read_bytes(),
        (repo.tree / sources_file_name(suite)).read_bytes(),
    )
    code, out = apt_container.update()
    assert code != 0, out
    assert "NO_PUBKEY" in out or "not signed" in out or "signature" in out.lower(), out


def test_inrelease_is_signed_with_sha256_or_stronger(repo: Repo, tmp_path: Path) -> None:
    keyring = dearmored_key(repo, tmp_path / "pfbuild.gpg")
    fpr = (repo.ctx.signing_dir / "fingerprint").read_text().strip()
    for suite in ("trixie", "resolute"):
        algos = signature_digest_algos(repo.inrelease(suite))
        assert algos and all(a in (8, 9, 10) for a in algos), algos  # SHA-256/384/512
        assert verify_signature(keyring, repo.inrelease(suite)) == fpr
    assert "Acquire-By-Hash: yes" in repo.inrelease("trixie").read_text()
    # Nothing served carries secret key material.
    served = [p for p in repo.tree.rglob("*") if p.is_file()]
    assert repo.tree / "pfbuild.asc" in served
    assert not [p for p in served if b"PRIVATE KEY" in p.read_bytes()]
    assert not any(p.is_relative_to(repo.ctx.signing_dir) for p in served)


def test_publish_signs_with_a_configured_key_file(tmp_path: Path) -> None:
    owner = Context(workspace=prepare_workspace(tmp_path / "owner"))
    owner_key = ensure_signing_key(owner, SigningConfig())
    try:
        secret = run.run(
            gpg_cmdline(owner.signing_dir, "--export-secret-keys", owner_key.fingerprint)
        ).stdout
    finally:
        stop_agent(owner, owner_key)
    key_file = tmp_path / "repo-signing-key.gpg"
    key_file.write_bytes(secret)
    repo = Repo(tmp_path / "ws")
    make_build(repo.ctx, TRIXIE, "1.0")
    repo.publish("hello", "1.0", "--target", "trixie", "--signing-key-file", str(key_file))
    keyring = dearmored_key(repo, tmp_path / "exported.gpg")
    assert verify_signature(keyring, repo.inrelease("trixie")) == owner_key.fingerprint


@pytest.mark.parametrize("target", [TRIXIE], ids=["trixie"])
def test_republish_new_version_and_rollback(
    repo: Repo,
    apt_container: AptContainer,
    target: Distribution,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A build's SOURCE_DATE_EPOCH must not become the publish date.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    first_date = repo.date("trixie")
    assert first_date > time.time() - 600
    first_gen = repo.tree.readlink()
    inrelease = repo.inrelease("trixie").read_bytes()

    repo.publish("hello", "1.0")
    assert repo.tree.readlink() == first_gen, "same packages must not make a new tree"
    assert repo.inrelease("trixie").read_bytes() == inrelease

    make_build(repo.ctx, TRIXIE, "2.0")
    repo.publish("hello", "2.0", "--target", "trixie")
    second_date = repo.date("trixie")
    assert second_date > first_date
    pool = {p.name for p in (repo.tree / "pool").rglob("*.deb")}
    assert "pfbuild-hello_1.0-1+pf1~trixie_amd64.deb" in pool
    assert "pfbuild-hello_2.0-1+pf1~trixie_amd64.deb" in pool
    apt_container.configure_from(repo.tree, "trixie")
    code, out = apt_container.update()
    assert code == 0, out
    assert apt_container.candidate("pfbuild-hello")[0] == "2.0-1+pf1~trixie"

    repo.publish("--rollback", "trixie")
    assert repo.date("trixie") > second_date
    code, out = apt_container.update()
    assert code == 0, out
    assert apt_container.candidate("pfbuild-hello")[0] == "1.0-1+pf1~trixie"
    # The published pool follows the live snapshot; aptly's own pool keeps 2.0 for a re-publish.
    internal_pool = repo.ctx.aptly_dir / "root" / "pool"
    assert any(
        p.name.endswith("pfbuild-hello_2.0-1+pf1~trixie_amd64.deb")
        for p in internal_pool.rglob("*.deb")
    )


def test_a_rebuilt_version_with_other_content_is_refused(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    live = repo.tree.readlink()
    build_dir = repo.ctx.build_dir("hello", "1.0", "trixie")
    shutil.rmtree(build_dir.parent)
    time.sleep(1.1)  # dpkg-deb stamps the time into the .deb: the rebuild differs
    make_build(repo.ctx, TRIXIE, "1.0")
    assert main(repo.publish_args("hello", "1.0", "--target", "trixie")) == 3
    err = capsys.readouterr().err
    assert "pfbuild-hello_1.0-1+pf1~trixie_amd64" in err
    assert "already in the repository with other content" in err
    assert repo.tree.readlink() == live


def _aptly_publishing(config: Path) -> bool:
    """True while an aptly process of this workspace is publishing or switching a suite."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"-config={config}".encode() in args and b"publish" in args:
            return True
    return False


@pytest.mark.parametrize("target", [TRIXIE], ids=["trixie"])
def test_sigkill_mid_publish_leaves_the_old_tree_serving(
    repo: Repo, apt_container: AptContainer, target: Distribution, tmp_path: Path
) -> None:
    apt_container.configure_from(repo.tree, "trixie")
    live = repo.tree.readlink()
    for dist in (TRIXIE, RESOLUTE):
        make_build(repo.ctx, dist, "2.0")
    config = repo.ctx.aptly_config
    # The real CLI in a process group of its own, so that it and its aptly can be killed.
    cmd = cli_cmdline(*repo.publish_args("hello", "2.0"))
    proc = subprocess.Popen(cmd, env=CLI_ENV, start_new_session=True, stderr=subprocess.PIPE)
    caught = False
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if _aptly_publishing(config):
            os.killpg(proc.pid, signal.SIGKILL)
            caught = True
            break
        time.sleep(0.002)
    proc.wait(timeout=30)
    assert caught, "pfbuild publish finished before the test could kill it mid-publish"
    assert proc.returncode == -signal.SIGKILL

    assert repo.tree.readlink() == live
    keyring = dearmored_key(repo, tmp_path / "pfbuild.gpg")
    for suite in ("trixie", "resolute"):
        verify_signature(keyring, repo.inrelease(suite))
    code, out = apt_container.update()
    assert code == 0, out
    assert apt_container.candidate("pfbuild-hello")[0] == "1.0-1+pf1~trixie"

    repo.publish("hello", "2.0")
    assert repo.tree.readlink() != live
    assert not list(repo.ctx.dist_dir.glob(".apt*")), "leftovers of the killed run remain"
    code, out = apt_container.update()
    assert code == 0, out
    assert apt_container.candidate("pfbuild-hello")[0] == "2.0-1+pf1~trixie"
