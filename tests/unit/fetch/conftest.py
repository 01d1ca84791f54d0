"""Fetch tests' shared fixtures."""

from __future__ import annotations

import pytest

from tests.fixtures.sources import SigningKey, make_test_key


@pytest.fixture(scope="module")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """One throwaway signing key per module (key generation takes a moment)."""
    return make_test_key(tmp_path_factory.mktemp("key"))
