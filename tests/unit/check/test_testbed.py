"""Testbed set-up script and selection of packages (no engine: the scripts run in integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.check.testbed import DEPS_DIR, package_debs, prepare_script

pytestmark = pytest.mark.unit


def test_debug_symbols_are_not_installed(tmp_path: Path) -> None:
    for name in (
        "postfix_1_amd64.deb", "postfix-dbgsym_1_amd64.deb", "postfix-ldap_1_amd64.deb",
        "postfix-ldap-dbgsym_1_amd64.ddeb", "postfix_1_amd64.changes",
    ):  # fmt: skip
        (tmp_path / name).write_text("")
    assert [p.name for p in package_debs(tmp_path)] == [
        "postfix-ldap_1_amd64.deb", "postfix_1_amd64.deb",
    ]  # fmt: skip


def test_the_set_up_quotes_names_and_ends_offline() -> None:
    script = prepare_script(["autopkgtest", "python3"], ["/pfbuild/debs/a b_1_all.deb"])
    assert "apt-get install -y -q --no-install-recommends apt-utils autopkgtest python3\n" in script
    assert "--download-only '/pfbuild/debs/a b_1_all.deb'\n" in script
    # Services never start while the image is made; apt's only source at the end is local.
    assert script.index("policy-rc.d") < script.index("apt-get update")
    tail = script[script.index("rm -f /etc/apt/sources.list") :]
    assert f"deb [trusted=yes] file:{DEPS_DIR} ./" in tail
    assert "http" not in tail
    assert script.rstrip().endswith("rm -f /usr/sbin/policy-rc.d")
