"""Testbed set-up script and selection of packages (no engine: the scripts run in integration)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from builder.check.testbed import (
    DEPS_DIR,
    PACKAGES_LABEL,
    TESTBED_LABEL,
    _remove_older,
    package_debs,
    packages_owner,
    prepare_script,
)
from builder.model.distro import TRIXIE

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


class FakeImage:
    def __init__(self, image_id: str, tags: list[str], labels: dict[str, str]) -> None:
        self.id = image_id
        self.tags = tags
        self.labels = labels


class FakeImages:
    def __init__(self, images: list[FakeImage]) -> None:
        self.images = images
        self.removed: list[str] = []

    def list(self, filters: dict[str, str]) -> list[FakeImage]:
        key, _, value = filters["label"].partition("=")
        return [i for i in self.images if i.labels.get(key) == value]

    def remove(self, image_id: str, force: bool) -> None:
        self.removed.append(image_id)


def test_a_new_testbed_replaces_only_its_own_packages_older_ones() -> None:
    scope = {TESTBED_LABEL: "trixie-autopkgtest"}
    images = FakeImages([
        FakeImage("new", ["pfbuild-testbed:new"], {**scope, PACKAGES_LABEL: "postfix"}),
        FakeImage("old", ["pfbuild-testbed:old"], {**scope, PACKAGES_LABEL: "postfix"}),
        # Another recipe's, checked side by side on the same target: it may be in use.
        FakeImage("other", ["pfbuild-testbed:x"], {**scope, PACKAGES_LABEL: "libmimalloc-secure"}),
        FakeImage("unlabelled", ["pfbuild-testbed:u"], scope),
    ])  # fmt: skip
    engine: Any = SimpleNamespace(images=images)  # the engine's image list is all it uses
    _remove_older(engine, TRIXIE, "autopkgtest", "postfix", keep="pfbuild-testbed:new")
    assert images.removed == ["old"]


def test_a_testbed_is_owned_by_its_first_package_name() -> None:
    debs = [Path("postfix-ldap_1_amd64.deb"), Path("postfix_1_amd64.deb")]
    assert packages_owner(debs) == "postfix"
