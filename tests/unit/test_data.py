"""The suite's own test data is what its SHA256SUMS says, and nothing reads outside the repo."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import REPO, TEST_MIRROR

pytestmark = pytest.mark.unit


def test_mirror_files_match_their_sums() -> None:
    listed = {}
    for line in (TEST_MIRROR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.removeprefix("./")] = digest
    present = {
        str(p.relative_to(TEST_MIRROR))
        for p in TEST_MIRROR.rglob("*")
        if p.is_file() and p.name not in ("SHA256SUMS", "README.md")
    }
    assert present == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((TEST_MIRROR / name).read_bytes()).hexdigest() == digest, name


def test_no_test_reads_beside_the_checkout() -> None:
    outside = [
        str(path.relative_to(REPO))
        for path in (REPO / "tests").rglob("*.py")
        if "shared" + "/mirror" in path.read_text() or "REPO" + ".parent" in path.read_text()
    ]
    assert outside == []
