"""Consecutive scheduled runs on one live repository, with the commands rebuild.yml runs.

Run 1 is the session's release. Its tree becomes the live repository: a folder served on
127.0.0.1 as GitHub Pages would serve it. Every later run has a workspace of its own, in which
only the machine's build caches are warm (chroots, ccache, base image records: what a runner
keeps); everything it knows of the repository comes from the live site, verified by the pinned
key. The oracles are apt in containers of each target, docker, gpg and the served indexes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from debian import deb822

import docker
from builder.core import run
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.model.distro import TARGETS
from builder.publish.signing import gpg_cmdline
from tests.conftest import REPO
from tests.e2e.conftest import VERSION
from tests.fixtures.apt import AptContainer, served_folder
from tests.fixtures.cli import run_pfbuild

pytestmark = pytest.mark.e2e

# Beside the shared workspace, under /var/tmp: the build user reads the runs' workspaces.
RUNS = Path(os.environ.get("PFBUILD_TEST_WORKSPACE", "/var/tmp/pfbuild-test-work") + "-runs")
# What a runner's cache holds between scheduled runs (never the repository's state).
RUNNER_CACHE = ("cache", "chroots", "images", "keyrings", "sources")
IMAGE_NAME = "pfbuild-e2e-scheduled"
TIMEOUT = 3600


@dataclass
class Live:
    """The served live repository, the key that signs it, and the runs made on it."""

    shared: Path
    site: Path
    url: str
    fingerprint: str
    env: dict[str, str]
    runs: int = 0

    def workspace(self, *, warm: bool = True) -> Path:
        """A new run's workspace; `warm` gives it the runner's build caches (hard links)."""
        self.runs += 1
        ws = RUNS / f"run{self.runs}"
        ws.mkdir(parents=True)
        for name in RUNNER_CACHE if warm else ():
            if (self.shared / name).exists():
                subprocess.run(["cp", "-al", str(self.shared / name), str(ws / name)], check=True)
        return ws

    def pfbuild(
        self, ws: Path, *args: str, code: int = 0, checkout: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The CLI as the workflow starts it; `checkout` runs another copy of pfbuild."""
        if checkout is None:
            proc = run_pfbuild(ws, *args, env=self.env, timeout=TIMEOUT)
        else:
            cmd = [sys.executable, "-m", "builder", "--workspace", str(ws), *args]
            env = {**os.environ, **self.env, "PYTHONPATH": str(checkout)}
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=checkout
            )
        assert proc.returncode == code, f"pfbuild {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def versions(self, suite: str, package: str) -> list[str]:
        """Versions of `package` in the served index of `suite`."""
        index = self.site / "dists" / suite / "main" / "binary-amd64" / "Packages"
        return sorted(
            p["Version"]
            for p in deb822.Packages.iter_paragraphs(index.read_text(), use_apt_pkg=False)
            if p["Package"] == package
        )

    def snapshot(self) -> dict[str, int]:
        """Every file of the site with its mtime (a publish replaces the whole folder)."""
        return {
            str(p.relative_to(self.site)): p.stat().st_mtime_ns
            for p in self.site.rglob("*")
            if p.is_file()
        }


@pytest.fixture(scope="module")
def live(release: subprocess.CompletedProcess[str], shared_workspace: Path) -> Iterator[Live]:
    assert release.returncode == 0, release.stderr[-3000:]
    shutil.rmtree(RUNS, ignore_errors=True)
    RUNS.mkdir(parents=True)
    site = RUNS / "site"
    shutil.copytree((shared_workspace / "dist" / "apt").resolve(), site, symlinks=True)
    fingerprint = (shared_workspace / "signing" / "fingerprint").read_text().strip()
    key_file = RUNS / "signing-key.gpg"
    secret = run.run(
        gpg_cmdline(shared_workspace / "signing", "--export-secret-keys", fingerprint)
    ).stdout
    key_file.write_bytes(secret)
    env = {
        "PFBUILD_SIGNING_KEY_FILE": str(key_file),
        "PFBUILD_SIGNING_KEY": fingerprint,
        "PFBUILD_REQUIRE_KEY": fingerprint,
    }
    try:
        with served_folder(site) as url:
            yield Live(shared_workspace, site, url, fingerprint, env)
    finally:
        client = docker.from_env()
        for image in client.images.list(name=IMAGE_NAME) + client.images.list(
            name="pfbuild-base-e2e"
        ):
            for tag in image.tags:
                client.images.remove(tag, force=True)
        # The throwaway key of run 6 started an agent of its own.
        subprocess.run(
            ["gpgconf", "--homedir", str(RUNS / "other-gnupg"), "--kill", "gpg-agent"],
            check=False,
        )


def _pf(n: int, suffix: str) -> str:
    return f"{VERSION}-1+pf{n}{suffix}"


def _sh(apt: AptContainer, script: str) -> str:
    return apt.ok("sh", "-c", script)


def _ours(apt: AptContainer, package: str, url: str) -> list[str]:
    """Versions of `package` apt sees in our repository."""
    lines = _sh(apt, f"apt-cache madison {package}").splitlines()
    return [ln.split("|")[1].strip() for ln in lines if url.rstrip("/") in ln]


@pytest.fixture(scope="module")
def apt_clients(live: Live) -> Iterator[dict[str, AptContainer]]:
    """One container per target, with postfix +pf1 installed from the live repository."""
    client = docker.from_env()
    clients: dict[str, AptContainer] = {}
    key = (live.site / "pfbuild.asc").read_bytes()
    try:
        for name in TARGETS:
            record = json.loads((live.shared / "images" / f"base-{name}.json").read_text())
            box = client.containers.run(
                record["ref"], ["sleep", "infinity"], detach=True, network_mode="host"
            )
            apt = AptContainer(box)
            clients[name] = apt
            sources = (
                f"Types: deb\nURIs: {live.url}\nSuites: {name}\nComponents: main\n"
                "Signed-By: /etc/apt/keyrings/pfbuild.asc\n"
            ).encode()
            # Beside the target's own archive, which has postfix's dependencies.
            apt.add_files({"keyrings/pfbuild.asc": key, "sources.list.d/pfbuild.sources": sources})
            # No init in the container: the maintainer scripts must not start the daemon.
            _sh(apt, "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d")
            _sh(apt, "chmod +x /usr/sbin/policy-rc.d")
            _sh(apt, "apt-get update -q --error-on=any")
            suffix = TARGETS[name].version_suffix
            _sh(
                apt,
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                f"postfix={_pf(1, suffix)}",
            )
        yield clients
    finally:
        for apt in clients.values():
            apt.container.remove(force=True)


def _history(site: Path) -> dict[str, Any]:
    """The payload of the site's history envelope."""
    envelope = json.loads((site / "pfbuild-history.json").read_text())
    payload: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return payload


def _build_env(buildinfo: Path) -> str:
    """The Installed-Build-Depends of a .buildinfo as `name=version` words, sorted."""
    field = deb822.BuildInfo(buildinfo.read_text())["Installed-Build-Depends"]
    pins = sorted(entry.strip().removesuffix(")").split(" (= ") for entry in field.split(","))
    return " ".join(f"{name}={version}" for name, version in pins)


def _installed(apt: AptContainer, package: str) -> str:
    return _sh(apt, f"dpkg-query -W -f '${{Version}}' {package}").strip()


def test_scheduled_runs_on_one_live_repository(
    live: Live, apt_clients: dict[str, AptContainer]
) -> None:
    for name, apt in apt_clients.items():
        assert _installed(apt, "postfix") == _pf(1, TARGETS[name].version_suffix)

    # ---- run 2: nothing changed: nothing is built, and every command says so (exit 10).
    ws = live.workspace()
    proc = live.pfbuild(
        ws, "check-updates", "--base", live.url, "--json",
        "--only", "inputs", "--only", "image-base", "--only", "age", code=10,
    )  # fmt: skip
    answer = json.loads(proc.stdout)
    assert (answer["action"], answer["reasons"], answer["published"]) == ("none", [], VERSION)
    live.pfbuild(ws, "matrix", VERSION, "--base", live.url, "--json", code=10)
    proc = live.pfbuild(ws, "release", VERSION, "--base", live.url, code=10)
    assert "nothing to do" in proc.stdout
    assert not list(ws.glob("builds/**/*.deb"))

    # ---- run 3: a newer base image record for trixie (base-files moved): images alone.
    client = docker_client_for(live)
    record_path = live.shared / "images" / "base-trixie.json"
    record = json.loads(record_path.read_text())
    box = client.containers.run(
        record["ref"],
        ["sh", "-c", "sed -i '/^Package: base-files$/,/^$/ s/^Version: .*/&+e2e1/' "
                     "/var/lib/dpkg/status"],
        detach=True, network_mode="host",
    )  # fmt: skip
    assert box.wait()["StatusCode"] == 0
    newer = "pfbuild-base-e2e:trixie-newer"
    # The base image's own command, and nothing of the one-off container (its network).
    box.commit(repository="pfbuild-base-e2e", tag="trixie-newer", conf={"Cmd": ["/bin/bash"]})
    box.remove()
    ws = live.workspace()
    (ws / "images" / "base-trixie.json").unlink()
    (ws / "images" / "base-trixie.json").write_text(
        json.dumps({**record, "ref": newer, "created": time.time()})
    )
    before = live.snapshot()
    proc = live.pfbuild(
        ws, "check-updates", "--base", live.url, "--json",
        "--only", "inputs", "--only", "image-base",
    )  # fmt: skip
    answer = json.loads(proc.stdout)
    assert answer["action"] == "image", answer
    assert [r["kind"] for r in answer["reasons"]] == ["image-base"]
    assert "image debian: base-files" in answer["reasons"][0]["evidence"]
    assert "+e2e1" in answer["reasons"][0]["evidence"]
    live.pfbuild(
        ws, "image", "--from", live.url, "--variant", "debian", "--name", IMAGE_NAME,
        "--release", VERSION, "--date-tag", "--test", "--no-healthcheck-wait",
    )  # fmt: skip
    dated = f"{IMAGE_NAME}:{VERSION}-debian-{time.strftime('%Y%m%d', time.gmtime())}"
    query = ["-W", "-f", "${Version}\\n", "base-files", "postfix"]
    # Detached, waited for, then its logs: a container run with auto-remove may lose them.
    versions = run.run_in_image(client, dated, query, entrypoint=["dpkg-query"]).stdout
    version, postfix = versions.decode().split()
    assert version.endswith("+e2e1"), version
    assert postfix == _pf(1, "~trixie"), "the image must be rebuilt on the published packages"
    assert live.snapshot() == before, "an image rebuild publishes no package"

    # ---- run 4: a template changed: +pf2 for every build, published beside +pf1.
    checkout = RUNS / "checkout"
    shutil.copytree(
        REPO, checkout,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".*_cache"),
    )  # fmt: skip
    template = checkout / "debian-templates" / "postfix" / "main.cf.in.j2"
    template.write_text(template.read_text() + "# A scheduled run after a template edit.\n")
    ws = live.workspace()
    proc = live.pfbuild(ws, "release", VERSION, "--base", live.url, "--dry-run", checkout=checkout)
    assert f"postfix {_pf(2, '~trixie')}" in proc.stdout
    assert f"{_pf(1, '~trixie')} was built from other templates" in proc.stdout
    proc = live.pfbuild(ws, "matrix", VERSION, "--base", live.url, "--json", checkout=checkout)
    jobs = json.loads(proc.stdout)["include"]
    assert {j["rebuild"] for j in jobs} == {"2"}, jobs
    recipes = sorted({(j["recipe"], j["version"]) for j in jobs})
    for recipe, version in recipes:
        live.pfbuild(ws, "build", recipe, version, "--rebuild", "2", "--parallel", "2",
                     checkout=checkout)  # fmt: skip
        live.pfbuild(ws, "check", recipe, version, "--no-autopkgtest", checkout=checkout)
    live.pfbuild(
        ws, "publish", "--from", str(ws / "artifacts"), "--base", live.url, "--url", live.url,
        "--to", str(live.site), checkout=checkout,
    )  # fmt: skip
    for name, apt in apt_clients.items():
        suffix = TARGETS[name].version_suffix
        assert live.versions(name, "postfix") == [_pf(1, suffix), _pf(2, suffix)]
        _sh(apt, "apt-get update -q --error-on=any")
        _sh(apt, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --only-upgrade postfix")
        assert _installed(apt, "postfix") == _pf(2, suffix)
        # The edited template reached the installed package.
        assert "after a template edit" in _sh(apt, "cat /usr/share/postfix/main.cf.debian")
    # The history records what each build ran with, as sbuild's .buildinfo lists it: what
    # check-updates later compares with the target's archive.
    builds = _history(live.site)["suites"]["trixie"]["builds"]["postfix"]
    assert builds[_pf(2, "~trixie")]["build-env"] == _build_env(
        next((ws / "artifacts").glob(f"**/postfix_{_pf(2, '~trixie')}_amd64.buildinfo"))
    )

    # ---- run 5: a rollback from the repository's own history, on a cold workspace.
    ws = live.workspace(warm=False)
    live.pfbuild(ws, "publish", "--rollback", "trixie", "--base", live.url, "--url", live.url,
                 "--to", str(live.site))  # fmt: skip
    trixie = apt_clients["trixie"]
    _sh(trixie, "apt-get update -q --error-on=any")
    assert _ours(trixie, "postfix", live.url) == [_pf(1, "~trixie")]
    assert _ours(apt_clients["resolute"], "postfix", live.url)[0] == _pf(2, "~resolute")

    # ---- run 6: a tampered live tree is refused before anything is published.
    before = live.snapshot()
    tampered = RUNS / "tampered"
    shutil.copytree(live.site, tampered, symlinks=True)
    deb = next(tampered.glob("pool/**/postfix_*~trixie_amd64.deb"))
    deb.write_bytes(deb.read_bytes()[:-1] + bytes([deb.read_bytes()[-1] ^ 1]))
    ws = live.workspace(warm=False)
    proc = live.pfbuild(ws, "publish", "--base", str(tampered), "--to", str(live.site), code=3)
    assert "does not match its Packages entry" in proc.stderr
    # An InRelease signed by another key.
    shutil.rmtree(tampered)
    shutil.copytree(live.site, tampered, symlinks=True)
    other = RUNS / "other-gnupg"
    other.mkdir(mode=0o700)
    run.run(gpg_cmdline(other, "--quick-gen-key", "--passphrase", "", "mallory@example.org",
                        "ed25519", "sign", "never"))  # fmt: skip
    inrelease = tampered / "dists" / "trixie" / "InRelease"
    payload = subprocess.run(
        ["gpg", "--homedir", str(other), "--batch", "--decrypt"], input=inrelease.read_bytes(),
        capture_output=True, check=False,
    ).stdout  # fmt: skip
    signed = run.run(gpg_cmdline(other, "--clearsign", "--output", "-"), input=payload).stdout
    inrelease.write_bytes(signed)
    proc = live.pfbuild(ws, "publish", "--base", str(tampered), "--to", str(live.site), code=3)
    assert "InRelease" in proc.stderr
    assert live.snapshot() == before


def docker_client_for(live: Live) -> docker.DockerClient:
    """The engine the shared workspace uses."""
    return docker_client(Context(workspace=live.shared))
