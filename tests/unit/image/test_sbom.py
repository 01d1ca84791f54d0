"""The image's package list as dpkg-query prints it."""

from __future__ import annotations

import pytest

from builder.core.errors import PfbuildError
from builder.image.sbom import installed_packages_cmdline, parse_installed

pytestmark = pytest.mark.unit


def test_dpkg_query_lists_status_name_version_arch_and_source() -> None:
    assert installed_packages_cmdline() == [
        "dpkg-query", "-W", "-f",
        "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}"
        "\t${source:Package}\t${source:Version}\n",
    ]  # fmt: skip


def test_only_installed_packages_are_kept_with_their_source() -> None:
    text = (
        "ii \tlibc6\t2.41-12\tamd64\tglibc\t2.41-12\n"
        "rc \tremoved\t1.0\tamd64\t\t\n"
        "hi \theld\t2.0\tall\t\t\n"
        "dpkg-query: warning: something on stderr\n"
        "ii \tbase-files\t13.8\tamd64\tbase-files\t13.8\n"
    )
    records = parse_installed(text)
    assert [(r.name, r.version, r.arch, r.source, r.source_version) for r in records] == [
        ("base-files", "13.8", "amd64", "base-files", "13.8"),
        ("held", "2.0", "all", "held", "2.0"),
        ("libc6", "2.41-12", "amd64", "glibc", "2.41-12"),
    ]


def test_a_short_record_is_an_error() -> None:
    with pytest.raises(PfbuildError, match="unexpected dpkg-query line"):
        parse_installed("ii \tlibc6\t2.41-12\n")
