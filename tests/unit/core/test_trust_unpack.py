"""Tar members checked in order against the tree they build: link chains, names, limits."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.core import unpack
from builder.core.errors import PfbuildError
from builder.core.unpack import check_tarball, extract_tarball
from tests.fixtures.sources import make_tarball

pytestmark = pytest.mark.unit

ARCHIVE = Path("x.tar.gz")


@pytest.mark.parametrize(
    ("members", "why"),
    [
        # The chain of the issue: each link looks local, together they climb out.
        ({"a/b": "symlink:..", "a/b/a/b/c": "symlink:../../../.."}, "points outside"),
        ({"p/a/b": "symlink:..", "p/a/b/a/b/c": "symlink:../../../.."}, "points outside"),
        # A file written through a folder link that leads out.
        ({"p/up": "symlink:..", "p/up/up2": "symlink:..", "p/up/up2/x": b"x"}, "points outside"),
        # A hard link whose target climbs out through a symlink.
        ({"p/d": "symlink:.", "p/h": "hardlink:p/d/../../etc/passwd"}, "outside the tree"),
        ({"p/d": "symlink:..", "p/h": "hardlink:p/d/../etc/passwd"}, "outside the tree"),
        # A hard link to anything but an earlier file (tarfile would fail, or link elsewhere).
        ({"p/d": "dir", "p/h": "hardlink:p/d"}, "no earlier file"),
        ({"p/h": "hardlink:p/later", "p/later": b"x"}, "no earlier file"),
        # A later link makes an earlier one lead out.
        ({"p/a/l": "symlink:q/../../..", "p/a/q": "symlink:."}, "after later links"),
        # Loops.
        ({"p/l": "symlink:l", "p/l/x": b"x"}, "loop"),
        ({"p/l": "symlink:m", "p/m": "symlink:l", "p/l/x": b"x"}, "loop"),
        # Names.
        ({"": b"x"}, "empty name"),
        ({".": "dir"}, "empty name"),
        ({"./": "dir"}, "empty name"),
    ],
)
def test_hostile_trees_are_refused(
    tmp_path: Path, members: dict[str, str | bytes], why: str
) -> None:
    tarball = make_tarball(tmp_path / "bad.tar.gz", members)
    with pytest.raises(PfbuildError) as err:
        check_tarball(tarball)
    assert err.value.what.startswith("bad.tar.gz has an unsafe member")
    assert any(w in err.value.one_line() for w in why.split("|")), err.value.one_line()


def test_too_many_members_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 100,000 empty members are 600 KB of tar.gz; the limit is lowered so the test stays fast.
    monkeypatch.setattr(unpack, "MAX_MEMBERS", 100)
    tarball = make_tarball(tmp_path / "many.tar.gz", {f"p/{i}": b"" for i in range(101)})
    with pytest.raises(PfbuildError, match=r"many\.tar\.gz has more than 100 members"):
        check_tarball(tarball)
    ok = make_tarball(tmp_path / "ok.tar.gz", {f"p/{i}": b"" for i in range(100)})
    check_tarball(ok)


def test_a_small_archive_that_unpacks_huge_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unpack, "MAX_UNPACKED_BYTES", 1 << 20)
    tarball = make_tarball(tmp_path / "bomb.tar.gz", {"p/a": bytes(600_000), "p/b": bytes(600_000)})
    assert tarball.stat().st_size < 10_000
    with pytest.raises(PfbuildError, match=r"bomb\.tar\.gz unpacks to more than 1048576 bytes"):
        check_tarball(tarball)


def test_the_limits_are_parameters_too(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "t.tar.gz", {"p/a": b"12345", "p/b": b"12345"})
    with pytest.raises(PfbuildError, match="more than 1 members"):
        check_tarball(tarball, max_members=1)
    with pytest.raises(PfbuildError, match="more than 9 bytes"):
        check_tarball(tarball, max_bytes=9)
    assert check_tarball(tarball, max_members=2, max_bytes=10) == 1754000000


def test_ordinary_links_unpack_and_one_chain_link_more_is_refused(tmp_path: Path) -> None:
    ordinary: dict[str, str | bytes] = {
        "p/dir/file": b"data\n",
        "p/alias": "symlink:dir",
        "p/alias/through": b"via the link\n",
        "p/dir/up": "symlink:../dir/file",
        "p/hard": "hardlink:p/alias/file",
        "./p/dotted": b"./ prefixes are fine\n",
        # postfix's own shape: README_FILES/RELEASE_NOTES -> ../RELEASE_NOTES.
        "p/a/b": "symlink:..",
    }
    dest = tmp_path / "out"
    dest.mkdir()
    extract_tarball(make_tarball(tmp_path / "good.tar.gz", ordinary), dest)
    assert (dest / "p" / "dir" / "through").read_text() == "via the link\n"
    assert (dest / "p" / "hard").read_text() == "data\n"
    # One member more, each of its steps local-looking: out of the tree.
    chained = {**ordinary, "p/a/b/a/b/c": "symlink:../../../.."}
    with pytest.raises(PfbuildError, match=r"unsafe member 'p/a/b/a/b/c'.*points outside"):
        check_tarball(make_tarball(tmp_path / "bad.tar.gz", chained))


# ---- properties ------------------------------------------------------------------------------

COMPONENT = st.sampled_from(["a", "b", "..", ".", "", "c d", "-x", "é"])
ORDINARY = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/\0"),
    min_size=1,
    max_size=12,
).filter(lambda part: part not in (".", ".."))


def _escapes(name: str) -> bool:
    """The oracle: where the name lands when joined to a root, by plain path arithmetic."""
    landed = posixpath.normpath(posixpath.join("/root", name))
    return not landed.startswith("/root/")


@settings(max_examples=400, deadline=None)
@given(st.lists(COMPONENT, min_size=1, max_size=6), st.booleans(), st.lists(ORDINARY, min_size=1))
def test_no_escaping_name_is_accepted_and_ordinary_names_are(
    parts: list[str], absolute: bool, ordinary: list[str]
) -> None:
    unpack.check_member(ARCHIVE, tarfile.TarInfo("/".join(ordinary)))
    name = ("/" if absolute else "") + "/".join(parts)
    try:
        unpack.check_member(ARCHIVE, tarfile.TarInfo(name))
    except PfbuildError:
        return
    assert not _escapes(name), name


MEMBER_NAME = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map("/".join)
LINK_TARGET = st.lists(st.sampled_from(["a", "b", "c", "..", "."]), min_size=1, max_size=5).map(
    "/".join
)
MEMBER = st.one_of(
    st.tuples(st.just("file"), MEMBER_NAME, st.just("")),
    st.tuples(st.just("dir"), MEMBER_NAME, st.just("")),
    st.tuples(st.just("symlink"), MEMBER_NAME, LINK_TARGET),
    st.tuples(st.just("hardlink"), MEMBER_NAME, MEMBER_NAME),
)


def _tar(members: list[tuple[str, str, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for kind, name, target in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = b"x"
                info.size = 1
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, target
            else:
                info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MEMBER, min_size=1, max_size=8))
def test_no_accepted_tree_reaches_outside_when_unpacked(
    members: list[tuple[str, str, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        archive = sandbox / "t.tar"
        archive.write_bytes(_tar(members))
        try:
            check_tarball(archive)
        except PfbuildError:
            return
        root = sandbox / "deep" / "er" / "root"
        root.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            try:
                # Python's own filter resolves against the real tree: it must agree with ours.
                tar.extractall(root, filter="data")
            except tarfile.FilterError as exc:
                pytest.fail(f"accepted, but the tarfile filter refuses it: {exc!r}")
            except OSError:
                pass  # a file where a folder was wanted and the like: not an escape
        real_root = str(root.resolve())
        for folder, dirs, files in os.walk(root):
            for entry in dirs + files:
                path = Path(folder) / entry
                if path.is_symlink():
                    assert _inside(os.path.realpath(path), real_root), (members, path)
        assert sorted(p.name for p in sandbox.iterdir()) == ["deep", "t.tar"]
        assert [p.name for p in (sandbox / "deep" / "er").iterdir()] == ["root"]
