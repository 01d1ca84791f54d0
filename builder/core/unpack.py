"""Safe unpacking: refuse members that would land outside the tree, device files, escaping links."""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path

from builder.core.errors import PfbuildError


def _refuse(archive: Path, member: str, why: str) -> PfbuildError:
    return PfbuildError(
        f"{archive.name} has an unsafe member {member!r}",
        why,
        "do not use this archive: it could write outside its own folder",
    )


def _is_outside(path: str) -> bool:
    normal = posixpath.normpath(path)
    return normal == ".." or normal.startswith("../") or posixpath.isabs(normal)


def check_member(archive: Path, info: tarfile.TarInfo) -> None:
    """Raise if one member is absolute, climbs with .., is a device, or links out of the tree."""
    name = info.name
    if name.startswith("/") or posixpath.isabs(name):
        raise _refuse(archive, name, "absolute path")
    if ".." in Path(name).parts:
        raise _refuse(archive, name, "'..' path component")
    if info.ischr() or info.isblk() or info.isfifo():
        raise _refuse(archive, name, "device or FIFO")
    if info.issym():
        if posixpath.isabs(info.linkname):
            raise _refuse(archive, name, f"symlink to absolute path {info.linkname}")
        # A relative link resolves from the folder that holds it.
        if _is_outside(posixpath.join(posixpath.dirname(name), info.linkname)):
            raise _refuse(archive, name, f"symlink {info.linkname} points outside the tree")
    elif info.islnk() and (posixpath.isabs(info.linkname) or _is_outside(info.linkname)):
        raise _refuse(archive, name, f"hard link to {info.linkname} outside the tree")
    elif not (info.isfile() or info.isdir() or info.islnk()):
        raise _refuse(archive, name, "not a file, folder or link")


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise PfbuildError(
            f"{archive.name} is not a readable tar archive", str(exc), "fetch it again"
        ) from None


def check_tarball(archive: Path) -> int:
    """Check every member of a tarball; return the newest member mtime (the release time)."""
    newest = 0
    with _open(archive) as tar:
        try:
            for info in tar:
                check_member(archive, info)
                newest = max(newest, int(info.mtime))
        except tarfile.TarError as exc:
            raise PfbuildError(f"{archive.name} is a damaged tar archive", str(exc)) from None
    return newest


def extract_tarball(archive: Path, dest: Path) -> None:
    """Unpack a checked tarball into `dest` (which must exist)."""
    check_tarball(archive)
    with _open(archive) as tar:
        # The 'data' filter is a second line of defence behind our own checks: it also drops
        # setuid bits and refuses anything our checks might have missed.
        tar.extractall(dest, filter="data")


def single_top_dir(tree: Path) -> Path:
    """The one folder an upstream tarball unpacks to (postfix-3.11.6/)."""
    entries = list(tree.iterdir())
    if len(entries) != 1 or not entries[0].is_dir():
        raise PfbuildError(
            f"the tarball unpacked to {len(entries)} entries, not one folder",
            "pfbuild expects NAME-VERSION/ at the top of an upstream tarball",
        )
    return entries[0]
