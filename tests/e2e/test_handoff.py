"""The rebuild workflow's hand-offs, on one machine, with the real CLI.

As .github/workflows/rebuild.yml runs it across runners: `pfbuild matrix` names the jobs; each
job builds and checks one recipe for one target in a workspace of its own and leaves an artifact
folder; the publish job gathers the folders and runs `publish --from`; the image job gets the
published tree as a plain copy (links resolved, as artifacts store them) and runs
`image --from ... --test`. Nothing is shared between the workspaces but what a runner restores
from its cache. Here that cache is the session release's: chroots, base images, keyrings, and
also its verified sources and builds, so the build jobs reuse the release's packages (same
inputs, same build key) instead of compiling postfix four more times: the release test proves
the compiling, this one the hand-offs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.publish.artifact import MANIFEST
from builder.publish.tree import MANIFEST_NAME
from tests.fixtures.cli import finish, start_pfbuild

pytestmark = pytest.mark.e2e

VERSION = "3.11.6"
IMAGE_NAME = "pfbuild-test/postfix-handoff"
RUNNER_CACHE = ("chroots", "images", "keyrings")
# What a build job restores besides: the release's verified downloads, sources and builds.
BUILD_CACHE = (*RUNNER_CACHE, "cache", "sources", "builds")


def runner(
    root: Path, name: str, shared_workspace: Path, caches: tuple[str, ...] = RUNNER_CACHE
) -> Path:
    """A fresh workspace with a runner's restored cache (hard links: nothing is copied twice)."""
    ws = root / name
    ws.mkdir()
    for cache in caches:
        if (shared_workspace / cache).is_dir():
            subprocess.run(["cp", "-al", str(shared_workspace / cache), str(ws)], check=True)
    return ws


def test_matrix_builds_meet_in_publish_and_image(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, tmp_path: Path
) -> None:
    assert release.returncode == 0, release.stderr[-3000:]
    started = time.monotonic()
    matrix = json.loads(finish(start_pfbuild(tmp_path, "matrix", VERSION, "--json")))
    jobs = [(j["recipe"], j["version"], j["target"]) for j in matrix["include"]]
    assert sorted(jobs) == sorted(
        (recipe, version, target)
        for recipe, version in (("postfix", VERSION), ("mimalloc-secure", "2.0.9"))
        for target in ("trixie", "resolute")
    )

    # The build jobs, side by side as runners would run them; each checks what it built.
    builds = {}
    for recipe, version, target in jobs:
        ws = runner(tmp_path, f"build-{recipe}-{target}", shared_workspace, BUILD_CACHE)
        builds[(recipe, version, target)] = (
            ws, start_pfbuild(ws, "build", recipe, version, "--target", target)
        )  # fmt: skip
    checks = {}
    for (recipe, version, target), (ws, proc) in builds.items():
        finish(proc)
        checks[(recipe, target)] = (
            ws,
            start_pfbuild(ws, "check", recipe, version, "--target", target, "--no-autopkgtest"),
        )  # fmt: skip
    incoming = tmp_path / "incoming"
    for (recipe, target), (ws, proc) in checks.items():
        finish(proc)
        (folder,) = (ws / "artifacts").iterdir()
        data = json.loads((folder / MANIFEST).read_text())
        assert (data["recipe"], data["target"]) == (recipe, target)
        assert data["check"]["verdict"] == "pass"
        # upload-artifact + download-artifact (merge-multiple): the folders side by side.
        shutil.copytree(folder, incoming / folder.name)
    print(f"build jobs: {time.monotonic() - started:.0f} s", file=sys.stderr)

    publisher = runner(tmp_path, "publish", shared_workspace)
    output = finish(start_pfbuild(publisher, "publish", "--from", str(incoming)))
    imported = [line.split() for line in output.splitlines() if line.split()[1:2] == ["imported"]]
    assert sorted((words[2], words[0]) for words in imported) == sorted(
        (recipe, target) for recipe, _, target in jobs
    )
    tree = tmp_path / "apt-repository"
    subprocess.run(["cp", "-rL", str(publisher / "dist" / "apt"), str(tree)], check=True)
    fingerprint = json.loads((tree / MANIFEST_NAME).read_text())["fingerprint"]

    imager = runner(tmp_path, "image", shared_workspace)
    try:
        output = finish(
            start_pfbuild(
                imager, "image", "--from", str(tree), "--require-key", fingerprint,
                "--name", IMAGE_NAME, "--release", VERSION, "--test", "--no-healthcheck-wait",
            )
        )  # fmt: skip
    finally:
        for variant in ("debian", "ubuntu"):
            for tag in (f"{IMAGE_NAME}:{variant}", f"{IMAGE_NAME}:{VERSION}-{variant}"):
                subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
    assert f"tree    verified {tree}" in output
    proofs = [line for line in output.splitlines() if line.startswith(("debian ", "ubuntu "))]
    assert not [line for line in proofs if " FAIL " in line], output
    for variant in ("debian", "ubuntu"):
        assert any(line.split()[:2] == [variant, "ok"] for line in proofs), output
    print(f"hand-off flow: {time.monotonic() - started:.0f} s", file=sys.stderr)
