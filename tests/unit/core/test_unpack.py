"""Safe unpacking: hostile members are refused by name, good trees unpack."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.core.errors import PfbuildError
from builder.core.unpack import check_tarball, extract_tarball, single_top_dir
from tests.fixtures.sources import make_tarball

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ({"pkg-1/a": b"x", "pkg-1/../../evil": b"x"}, "'..' path component"),
        ({"/etc/evil": b"x"}, "absolute path"),
        ({"pkg-1/link": "symlink:../../etc/passwd"}, "points outside"),
        ({"pkg-1/link": "symlink:/etc/passwd"}, "absolute path"),
        ({"pkg-1/sub/link": "symlink:../../.."}, "points outside"),
        ({"pkg-1/hard": "hardlink:../etc/shadow"}, "hard link"),
        ({"pkg-1/null": "chardev"}, "device"),
    ],
)
def test_hostile_members_are_refused(
    tmp_path: Path, members: dict[str, str | bytes], why: str
) -> None:
    tarball = make_tarball(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(PfbuildError) as err:
        extract_tarball(tarball, dest)
    assert why in err.value.one_line() or why in err.value.why or why in err.value.what
    assert "unsafe member" in err.value.what
    assert list(dest.iterdir()) == []


def test_internal_relative_links_are_fine(tmp_path: Path) -> None:
    tarball = make_tarball(
        tmp_path / "good.tar.gz",
        {
            "pkg-1": "dir",
            "pkg-1/RELEASE_NOTES": b"notes\n",
            "pkg-1/README_FILES": "dir",
            # The same shape as postfix's README_FILES/RELEASE_NOTES -> ../RELEASE_NOTES.
            "pkg-1/README_FILES/RELEASE_NOTES": "symlink:../RELEASE_NOTES",
        },
    )
    assert check_tarball(tarball) == 1754000000
    dest = tmp_path / "out"
    dest.mkdir()
    extract_tarball(tarball, dest)
    top = single_top_dir(dest)
    assert (top / "README_FILES" / "RELEASE_NOTES").read_text() == "notes\n"


def test_not_a_tarball(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(PfbuildError, match=r"not a readable tar archive|damaged"):
        check_tarball(junk)
