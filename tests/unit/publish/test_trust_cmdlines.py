"""What publish compares an artifact with: the version the source stage gives, the tool calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.core.gpg import export_keys_cmdline, gpgv_cmdline
from builder.model.distro import RESOLUTE, TRIXIE
from builder.model.loader import load_recipe
from builder.model.version import target_version
from builder.publish.inputs import deb_read_cmdlines

pytestmark = pytest.mark.unit


def test_expected_versions_are_the_source_stages() -> None:
    postfix, mimalloc = load_recipe("postfix"), load_recipe("mimalloc-secure")
    assert target_version(postfix, "3.11.6", TRIXIE) == "3.11.6-1+pf1~trixie"
    assert target_version(mimalloc, "2.0.9", RESOLUTE) == "2.0.9+ds-2+pf1~resolute"


def test_a_package_is_read_to_the_end_of_both_members() -> None:
    assert deb_read_cmdlines(Path("/b/x_1_amd64.deb")) == [
        ["dpkg-deb", "--info", "/b/x_1_amd64.deb"],
        ["dpkg-deb", "--contents", "/b/x_1_amd64.deb"],
    ]


def test_gpg_command_lines() -> None:
    assert gpgv_cmdline(Path("/k.gpg"), Path("/InRelease"), output=Path("/out")) == [
        "gpgv", "--status-fd", "1", "--keyring", "/k.gpg", "--output", "/out", "/InRelease",
    ]  # fmt: skip
    assert gpgv_cmdline(Path("/k.gpg"), Path("/t.tar.gz"), Path("/t.tar.gz.asc")) == [
        "gpgv", "--status-fd", "1", "--keyring", "/k.gpg", "/t.tar.gz.asc", "/t.tar.gz",
    ]  # fmt: skip
    assert export_keys_cmdline("/h", ["ab" * 20], "/k.gpg") == [
        "gpg", "--homedir", "/h", "--batch", "--yes", "--output", "/k.gpg", "--export",
        "AB" * 20,
    ]  # fmt: skip
