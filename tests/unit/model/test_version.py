"""The version scheme: above the distribution's build, distinct per target, rising per rebuild."""

from __future__ import annotations

import itertools

import pytest

from builder.core.errors import PfbuildError
from builder.model.distro import TARGETS
from builder.model.version import is_newer, package_version

pytestmark = pytest.mark.unit


def test_the_documented_example() -> None:
    assert package_version("3.11.6", "3.11.6-1", 1, "~trixie") == "3.11.6-1+pf1~trixie"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_sorts_above_the_base_and_below_the_next_revision(target: str) -> None:
    ours = package_version("3.11.6", "3.11.6-1", 1, TARGETS[target].version_suffix)
    assert is_newer(ours, "3.11.6-1")
    assert is_newer("3.11.6-2", ours)
    assert is_newer("3.11.7-1", ours)
    # Above what the targets ship themselves (trixie 3.10.13-0+deb13u1, resolute 3.10.6-4ubuntu2).
    assert is_newer(ours, "3.10.13-0+deb13u1")
    assert is_newer(ours, "3.10.6-4ubuntu2")


def test_targets_differ() -> None:
    versions = {
        package_version("3.11.6", "3.11.6-1", 1, d.version_suffix) for d in TARGETS.values()
    }
    assert len(versions) == len(TARGETS)


def test_rebuilds_increase() -> None:
    builds = [package_version("3.11.6", "3.11.6-1", n, "~trixie") for n in (1, 2, 9, 10, 11)]
    for older, newer in itertools.pairwise(builds):
        assert is_newer(newer, older)


def test_newer_upstream_on_older_packaging() -> None:
    ours = package_version("3.11.7", "3.11.6-1", 1, "~resolute")
    assert ours == "3.11.7-0+pf1~resolute"
    assert is_newer(ours, "3.11.6-1+pf9~resolute")
    assert is_newer("3.11.7-1", ours)


def test_epoch_is_kept() -> None:
    assert package_version("2.0.9+ds", "1:2.0.9+ds-2", 1, "~trixie") == "1:2.0.9+ds-2+pf1~trixie"


@pytest.mark.parametrize(("rebuild", "suffix"), [(0, "~trixie"), (1, "trixie"), (1, "~a b")])
def test_bad_inputs(rebuild: int, suffix: str) -> None:
    with pytest.raises(PfbuildError):
        package_version("3.11.6", "3.11.6-1", rebuild, suffix)
