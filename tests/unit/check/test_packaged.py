"""The no-Berkeley-DB proof of a packaged build, read from the testbed's probe output."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.check.config.packaged import NO_BDB_HINT, require_no_berkeley_db
from builder.core.errors import PfbuildError

pytestmark = pytest.mark.unit

REFUSED = (
    f"postmap: fatal: {NO_BDB_HINT} for this OS distribution; see "
    "https://www.postfix.org/NON_BERKELEYDB_README.html for alternatives\npostmap exit 1\n"
)


def test_a_build_whose_hash_tables_fail_with_the_hint_passes(tmp_path: Path) -> None:
    probe = tmp_path / "bdb-probe.txt"
    probe.write_text(REFUSED)
    require_no_berkeley_db(probe, "trixie")


@pytest.mark.parametrize(
    "text",
    [
        "postmap exit 0\n",
        "postmap: fatal: open /tmp/pfbuild-bdb-probe: No such file or directory\npostmap exit 1\n",
        "",
    ],
)
def test_a_build_that_still_makes_hash_tables_is_refused(tmp_path: Path, text: str) -> None:
    probe = tmp_path / "bdb-probe.txt"
    probe.write_text(text)
    with pytest.raises(PfbuildError, match="was to be built without Berkeley DB"):
        require_no_berkeley_db(probe, "trixie")
