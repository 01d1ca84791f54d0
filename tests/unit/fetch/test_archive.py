"""Archive chain helpers: Sources lookup, .dsc tables, pool paths."""

from __future__ import annotations

import pytest

from builder.core.errors import PfbuildError
from builder.fetch.archive import dsc_file_name, dsc_hashes, find_source, pool_directory
from builder.model.loader import load_recipe
from tests.conftest import TEST_MIRROR

pytestmark = pytest.mark.unit

SOURCES = """Package: mimalloc-extra
Version: 2.0.9+ds-2
Directory: pool/main/m/mimalloc-extra
Checksums-Sha256:
 {zero} 10 mimalloc-extra_2.0.9+ds-2.dsc

Package: mimalloc
Binary: libmimalloc-dev
Version: 2.0.9+ds-1
Directory: pool/main/m/mimalloc
Checksums-Sha256:
 {one} 11 mimalloc_2.0.9+ds-1.dsc

Package: mimalloc
Version: 2.0.9+ds-2
Directory: pool/main/m/mimalloc
Checksums-Sha256:
 {two} 1927 mimalloc_2.0.9+ds-2.dsc
 {three} 138204 mimalloc_2.0.9+ds.orig.tar.xz
""".format(zero="0" * 64, one="1" * 64, two="2" * 64, three="3" * 64)


def test_find_source_picks_exact_package_and_version() -> None:
    entry = find_source(SOURCES, "mimalloc", "2.0.9+ds-2")
    assert entry is not None
    assert entry.directory == "pool/main/m/mimalloc"
    assert entry.files["mimalloc_2.0.9+ds-2.dsc"] == ("2" * 64, 1927)
    assert find_source(SOURCES, "mimalloc", "2.0.9+ds-3") is None
    assert find_source(SOURCES, "mimallo", "2.0.9+ds-2") is None


def test_dsc_hashes_of_the_real_dsc() -> None:
    dsc = TEST_MIRROR / "debian/pool/main/p/postfix/postfix_3.11.6-1.dsc"
    table = dsc_hashes(dsc.read_text())
    assert table["postfix_3.11.6-1.debian.tar.xz"] == (
        "f2e6282e59d43ea456c408089ef633b5e2e6a95c4dfa9e9388018698ed6e1b54",
        202092,
    )
    assert len(table) == 3


def test_dsc_with_path_in_file_name_is_refused() -> None:
    text = "Format: 3.0 (quilt)\nSource: x\nChecksums-Sha256:\n " + "a" * 64 + " 1 ../../x\n"
    with pytest.raises(PfbuildError, match="unsafe file name"):
        dsc_hashes(text)


def test_pool_directory_and_dsc_name() -> None:
    assert pool_directory("postfix", "main") == "pool/main/p/postfix"
    assert pool_directory("libtlsrpt", "main") == "pool/main/libt/libtlsrpt"
    assert dsc_file_name(load_recipe("mimalloc-secure").packaging["2.0.9"]) == (
        "mimalloc_2.0.9+ds-2.dsc"
    )
