"""Targets are data: lookups, overrides and the facts each target must carry."""

from __future__ import annotations

import pytest

from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TARGETS, TRIXIE, ArchiveKeyring, get_target

pytestmark = pytest.mark.unit


def test_targets_are_trixie_and_resolute() -> None:
    assert set(TARGETS) == {"trixie", "resolute"}
    assert TRIXIE.components == ("main",)
    assert RESOLUTE.components == ("main", "universe")
    assert "apt" in RESOLUTE.includes


def test_resolute_keyring_is_pinned_to_the_2018_archive_key() -> None:
    assert isinstance(RESOLUTE.keyring, ArchiveKeyring)
    assert RESOLUTE.keyring.fingerprints == ("F6ECB3762474EDA9D21B7022871920D1991BC93C",)


def test_version_suffixes_differ_per_target() -> None:
    assert len({d.version_suffix for d in TARGETS.values()}) == len(TARGETS)


def test_archive_override_changes_only_the_url() -> None:
    local = get_target("trixie", "file:///srv/mirror/debian/")
    assert local.archive_url == "file:///srv/mirror/debian"
    assert local.components == TRIXIE.components
    assert get_target("trixie") == TRIXIE


def test_unknown_target_error_says_what_exists() -> None:
    with pytest.raises(PfbuildError) as exc:
        get_target("bookworm")
    assert "unknown target 'bookworm'" in exc.value.one_line()
    assert "--target trixie" in exc.value.one_line()
