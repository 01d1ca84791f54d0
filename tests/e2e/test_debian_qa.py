"""Debian's own autopkgtests on the release's packages, read from what autopkgtest itself wrote.

Uses the session's one release (tests/e2e/conftest.py): its check actions ran the packaging's
debian/tests for both targets. The oracle is autopkgtest's summary and the unittest report of
Debian's test script, not pfbuild's judgement of them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from builder.check import lifecycle as lc
from builder.check.autopkgtest import OUTPUT_DIR, judge_output
from builder.check.config.lint import lint_config
from builder.check.config.packaged import CONFIG_DIR, CONFIG_JSON
from builder.model.loader import load_recipe
from tests.e2e.conftest import VERSION

pytestmark = pytest.mark.e2e

TARGETS = ("trixie", "resolute")
VRFY = "postfix/test_10_commands"


def _report_dir(workspace: Path, target: str) -> Path:
    return workspace / "reports" / "postfix" / VERSION / target


@pytest.mark.parametrize("target", TARGETS)
def test_debians_tests_pass_but_the_declared_vrfy_case(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, target: str
) -> None:
    assert release.returncode == 0, release.stderr[-3000:]
    output = _report_dir(shared_workspace, target) / OUTPUT_DIR
    # autopkgtest's own words: the one test failed, and only by the VRFY case.
    assert re.match(r"postfix\s+FAIL non-zero exit status 1$", (output / "summary").read_text())
    stdout = (output / "postfix-stdout").read_text()
    assert re.findall(r"^(FAIL|ERROR): (\w+) ", stdout, re.M) == [("FAIL", "test_10_commands")]
    assert re.search(r"^Ran 15 tests in ", stdout, re.M)
    assert "502 b'5.5.1 VRFY command is disabled'" in stdout
    assert "need fully-qualified address" not in stdout
    # What the release recorded of it.
    report = json.loads((_report_dir(shared_workspace, target) / "autopkgtest.json").read_text())
    assert report["verdict"] == "pass"
    outcomes = {c["name"]: c["outcome"] for c in report["cases"]}
    assert outcomes.pop(VRFY) == "deviation"
    assert len(outcomes) == 14 and set(outcomes.values()) == {"pass"}
    manifest = json.loads((shared_workspace / "manifests" / f"postfix-{VERSION}.json").read_text())
    check = manifest["actions"][f"check postfix {VERSION} {target}"]["outputs"]["autopkgtest"]
    assert check["verdict"] == "pass" and check["tests"] == {"postfix": "fail"}
    assert check["deviations"] == [f"{VRFY}: deviation, as declared: " + _reason()]


@pytest.mark.parametrize("target", TARGETS)
def test_without_the_declaration_the_same_output_fails(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, target: str
) -> None:
    output = _report_dir(shared_workspace, target) / OUTPUT_DIR
    report = judge_output(target, output, [], ())
    assert report.verdict == "fail"
    assert [p.split(":")[0] for p in report.problems] == [VRFY]


@pytest.mark.parametrize("target", TARGETS)
def test_install_upgrades_and_purge_passed(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, target: str
) -> None:
    report_dir = _report_dir(shared_workspace, target)
    report = json.loads((report_dir / lc.LIFECYCLE_JSON).read_text())
    steps = {(s["scenario"], s["step"]): s for s in report["steps"]}
    assert report["verdict"] == "pass" and all(s["passed"] for s in report["steps"])
    ours = f"{VERSION}-1+pf1~{target}"
    following = f"{VERSION}-1+pf2~{target}"
    # The evidence is what dpkg-query, postqueue and postfix status printed in the testbed.
    distro = steps[lc.UPGRADE_DISTRO, "from"]["evidence"]
    assert distro.startswith("dpkg-query ii: postfix 3.10.") and ours not in distro
    assert ours in steps[lc.UPGRADE_DISTRO, "upgrade"]["evidence"]
    assert following in steps[lc.UPGRADE_PREVIOUS, "upgrade"]["evidence"]
    for scenario in (lc.UPGRADE_DISTRO, lc.UPGRADE_PREVIOUS):
        assert "on hold, kept" in steps[scenario, "queue survives"]["evidence"]
        assert "is running" in steps[scenario, "postfix starts"]["evidence"]
    assert steps[lc.PURGE, "purge"]["evidence"] == "dpkg-query: none known"
    for log in (lc.CLEAN_LOG, lc.DISTRO_LOG):
        assert "the Postfix mail system is running" in (report_dir / log).read_text()


@pytest.mark.parametrize("target", TARGETS)
def test_the_packaged_configuration_passes_the_gate(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, target: str, tmp_path: Path
) -> None:
    report_dir = _report_dir(shared_workspace, target)
    gate = json.loads((report_dir / CONFIG_JSON).read_text())
    assert gate["findings"] == [] and gate["postconf_d"] is True
    packaged = report_dir / CONFIG_DIR
    main_cf = (packaged / "main.cf").read_text()
    # What a new install writes: Debian's postinst around our hardened defaults.
    assert "\nsmtpd_sender_restrictions = permit_mynetworks, permit_sasl_authenticated," in main_cf
    assert "\ncompatibility_level = 3.11\n" in main_cf
    assert "mail_version = 3.11.6" in (packaged / "postconf-d.txt").read_text()
    # The same gate on the same files catches an open relay added to them.
    for name in ("main.cf", "master.cf", "postconf-d.txt"):
        (tmp_path / name).write_bytes((packaged / name).read_bytes())
    with (tmp_path / "main.cf").open("a") as handle:
        handle.write("mynetworks = 0.0.0.0/0\n")
    found = lint_config(tmp_path, (tmp_path / "postconf-d.txt").read_text())
    assert [f.severity for f in found.findings if f.parameter == "mynetworks"] == ["error"]


def _reason() -> str:
    (deviation,) = load_recipe("postfix").autopkgtest_deviations
    return deviation.reason
