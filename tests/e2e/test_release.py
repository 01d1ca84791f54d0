"""`pfbuild release` end to end, as a user runs it: the real CLI in a subprocess.

The first test makes the real release in the shared test workspace (both targets, the signed
repository, both images and their tests); later tests rely on what it left there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TIMEOUT, VERSION
from tests.fixtures.cli import run_pfbuild, start_pfbuild

pytestmark = pytest.mark.e2e


SITE_RECIPES = {
    # The same package under another name: its own builds, state and fetch entries.
    "mimalloc_resume.py": (
        "import dataclasses\n"
        "from recipes.mimalloc_secure import RECIPE as SECURE\n"
        "RECIPE = dataclasses.replace(SECURE, name='mimalloc-resume')\n"
    ),
    # A recipe that lost its hardening flags (no -z now among them): its check must stop the
    # release.
    "mimalloc_weak.py": (
        "import dataclasses\n"
        "from recipes.mimalloc_secure import RECIPE as SECURE\n"
        "RECIPE = dataclasses.replace(\n"
        "    SECURE, name='mimalloc-weak',\n"
        "    hardening=dataclasses.replace(\n"
        "        SECURE.hardening, build_maint_options='hardening=-all',\n"
        "        cflags_append=(), ldflags_append=(),\n"
        "    ),\n"
        ")\n"
    ),
}


def events(stdout: str) -> dict[str, str]:
    """The last state of each action, from --json progress."""
    states: dict[str, str] = {}
    for line in stdout.splitlines():
        record = json.loads(line)
        if "action" in record:
            states[record["action"]] = record["state"]
    return states


def manifest(shared_workspace: Path) -> dict[str, Any]:
    path = shared_workspace / "manifests" / f"postfix-{VERSION}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_release_makes_packages_repo_images_and_manifest(
    release: subprocess.CompletedProcess[str], shared_workspace: Path
) -> None:
    assert release.returncode == 0, release.stdout[-3000:] + release.stderr[-3000:]
    data = manifest(shared_workspace)
    names = {Path(a["path"]).name for a in data["artifacts"]}
    for target in ("trixie", "resolute"):
        for pkg in ("postfix", "postfix-ldap", "postfix-lmdb", "postfix-cdb", "postfix-pcre"):
            assert f"{pkg}_{VERSION}-1+pf1~{target}_amd64.deb" in names
        assert f"postfix_{VERSION}-1+pf1~{target}.dsc" in names
        assert f"postfix_{VERSION}-1+pf1~{target}_amd64.buildinfo" in names
        publish = data["actions"]["publish"]["outputs"]["suites"][target]
        assert publish["inrelease"]["sha256"]
        assert data["actions"][f"check postfix {VERSION} {target}"]["outputs"]["verdict"] == "pass"
    assert f"postfix_{VERSION}.orig.tar.gz" in names
    fetched = data["actions"][f"fetch postfix {VERSION}"]["outputs"]["files"]
    assert any("622C7C012254C186677469C50C0B590E80CA15A7" in f["verified_by"] for f in fetched)
    assert data["tools"]["sbuild"] != "not installed"
    for variant in ("debian", "ubuntu"):
        image = data["actions"][f"image {variant}"]["outputs"]
        assert image["image_id"].startswith("sha256:")
        tests = data["actions"][f"image-test {variant}"]["outputs"]["proofs"]
        assert tests and all(p["ok"] for p in tests), tests
        # Every proof ran twice, with docker's defaults and locked down; each mode adds one.
        names = {p["name"] for p in tests}
        default = {n for n in names if not n.endswith(" (locked down)")}
        locked = {n.removesuffix(" (locked down)") for n in names - default}
        assert default - {"setuid/setgid files"} == locked - {"lock-down in effect"}, names
        assert {"setuid/setgid files", "banner"} <= default, names
        assert {"lock-down in effect", "banner"} <= locked, names
    verify = run_pfbuild(
        shared_workspace, "manifest", "verify", "--release", VERSION, timeout=TIMEOUT
    )
    assert verify.returncode == 0, verify.stderr


def test_second_release_reuses_every_action(
    release: subprocess.CompletedProcess[str], shared_workspace: Path
) -> None:
    assert release.returncode == 0
    dry = run_pfbuild(shared_workspace, "release", VERSION, "--dry-run", timeout=TIMEOUT)
    assert dry.returncode == 0
    assert all(line.startswith("reuse ") for line in dry.stdout.splitlines()), dry.stdout
    started = time.monotonic()
    again = run_pfbuild(shared_workspace, "release", VERSION, "--json", timeout=TIMEOUT)
    print(f"warm no-op release: {time.monotonic() - started:.1f} s", file=sys.stderr)
    assert again.returncode == 0, again.stderr
    states = events(again.stdout)
    assert states and set(states.values()) == {"reused"}, states


@pytest.fixture(scope="module")
def side_workspace(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, tmp_path_factory: Any
) -> tuple[Path, dict[str, str]]:
    """A second workspace sharing the base chroots (hard links), with site recipes."""
    root: Path = tmp_path_factory.mktemp("side")
    ws = root / "ws"
    ws.mkdir()
    subprocess.run(["cp", "-al", str(shared_workspace / "chroots"), str(ws)], check=True)
    shutil.copytree(shared_workspace / "keyrings", ws / "keyrings")
    recipes = root / "recipes"
    recipes.mkdir()
    for name, text in SITE_RECIPES.items():
        (recipes / name).write_text(text)
    return ws, {"PFBUILD_RECIPES": str(recipes)}


def test_killed_release_resumes_without_redoing_finished_actions(
    side_workspace: tuple[Path, dict[str, str]],
) -> None:
    ws, env = side_workspace
    args = ["release", "2.0.9", "--recipe", "mimalloc-resume", "--target", "trixie",
            "--no-image", "--json"]  # fmt: skip
    proc = start_pfbuild(ws, *args, env=env, stderr=subprocess.DEVNULL, new_session=True)
    assert proc.stdout is not None
    finished = []
    for line in proc.stdout:
        record = json.loads(line)
        if record.get("state") == "done":
            finished.append(record["action"])
        if record.get("action", "").startswith("build ") and record.get("state") == "started":
            break
    live_log = ws / "logs" / "sbuild-mimalloc-resume-trixie.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "Build environment" not in _read(live_log):
        time.sleep(1)
    assert "Build environment" in _read(live_log), "sbuild never got to compile"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished == ["fetch mimalloc-resume 2.0.9", "source mimalloc-resume 2.0.9 trixie"]

    again = run_pfbuild(ws, *args, env=env, timeout=TIMEOUT)
    assert again.returncode == 0, again.stderr[-2000:]
    states = events(again.stdout)
    assert states["fetch mimalloc-resume 2.0.9"] == "reused"
    assert states["source mimalloc-resume 2.0.9 trixie"] == "reused"
    assert states["build mimalloc-resume 2.0.9 trixie"] == "done"
    assert states["publish"] == "done"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_failed_check_stops_the_release_and_publishes_nothing(
    side_workspace: tuple[Path, dict[str, str]],
) -> None:
    ws, env = side_workspace
    inrelease = ws / "dist" / "apt" / "dists" / "trixie" / "InRelease"
    before = inrelease.read_bytes()
    proc = run_pfbuild(
        ws, "release", "2.0.9", "--recipe", "mimalloc-weak", "--target", "trixie", "--no-image",
        env=env, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 3
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("pfbuild: error: hardening check failed for trixie"), error
    assert "hardening.txt" in error
    assert "libmimalloc-secure.so" in error and "bindnow missing" in error
    assert inrelease.read_bytes() == before


@pytest.mark.parametrize("target", ["trixie", "resolute"])
def test_the_released_postfix_is_reproducible(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, target: str
) -> None:
    """Build A is the release's own build; B varies path, jobs, user, clock, TZ, locale, umask."""
    assert release.returncode == 0
    started = time.monotonic()
    args = ("verify-reproducible", "postfix", VERSION, "--target", target)
    proc = run_pfbuild(shared_workspace, *args, timeout=TIMEOUT)
    print(
        f"verify-reproducible postfix {target}: {time.monotonic() - started:.0f} s", file=sys.stderr
    )
    path = shared_workspace / "reports" / "postfix" / VERSION / target / "reproducible.json"
    report = json.loads(path.read_text())
    differing = {
        d["name"]: d.get("diffoscope") for d in report["debs"] if d["verdict"] != "identical"
    }
    assert proc.returncode == 0, differing
    assert report["build_a"]["reused"], "build A must be the release's build, not a new one"
    assert all(v["applied"] for v in report["variations"]), report["variations"]
    recorded = manifest(shared_workspace)["reproducible"][target]
    assert recorded["verdict"] == "reproducible"
    assert f"postfix_{VERSION}-1+pf1~{target}_amd64.deb" in recorded["identical"]
    verify = run_pfbuild(
        shared_workspace, "manifest", "verify", "--release", VERSION, timeout=TIMEOUT
    )
    assert verify.returncode == 0, verify.stderr
