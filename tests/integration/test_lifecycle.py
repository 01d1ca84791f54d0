"""The install/upgrade/purge oracle can fail: a careless upgrade in a real testbed is caught.

The passing scenarios on both targets are asserted on the session release's own report
(tests/e2e/test_debian_qa.py): the release's check runs them, so they are not run twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.check import lifecycle as lc
from builder.check.testbed import ensure_testbed, package_debs, run_in_testbed
from builder.core.context import Context
from builder.model.distro import TARGETS
from tests.integration.conftest import POSTFIX_VERSION

pytestmark = pytest.mark.integration


def test_an_upgrade_that_changes_an_admin_file_fails(published: Context, tmp_path: Path) -> None:
    """The same oracle in a real testbed, with a fake upgrade that only appends to main.cf."""
    dist = TARGETS["trixie"]
    debs = package_debs(published.build_dir("postfix", POSTFIX_VERSION, dist.name))
    image = ensure_testbed(published, dist, debs, lc.DISTRO_TOOLS, "lifecycle-distro")
    ours = lc.package_versions(debs)
    fake = "echo '# rewritten by a careless upgrade' >> /etc/postfix/main.cf"
    run = run_in_testbed(
        published,
        image,
        lc.distro_script(sorted(ours), fake),
        mounts={},
        log_path=tmp_path / "fake.log",
        timeout=300,
    )

    steps, _ = lc.judge_distro_run(lc.parse_sections(run.output), ours)
    failed = [(s.scenario, s.step) for s in steps if not s.passed]
    assert failed == [(lc.UPGRADE_DISTRO, "upgrade"), (lc.UPGRADE_DISTRO, "admin's files kept")]
    changed = next(s for s in steps if s.step == "admin's files kept")
    assert changed.evidence.startswith("sha256 changed: /etc/postfix/main.cf ")
