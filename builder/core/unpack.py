"""Safe unpacking: refuse members that would land outside the tree, device files, escaping links.

Every member is placed in a model of the tree the archive builds, in member order, and every
path and link target is resolved through the symlinks earlier members made, as the kernel would
resolve them while unpacking. A link chain that climbs out one harmless-looking step at a time
(`a/b -> ..`, then `a/b/a/b/c -> ../../../..`) is refused here, before the archive is cached,
not left to the tarfile filter at unpack time. Member count and unpacked size are bounded too.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.errors import PfbuildError

# Limits on what one archive may unpack to. An upstream release has a few thousand members and
# tens of MB: these leave room for growth and still stop a small archive that explodes.
MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 2 << 30
# As the kernel's ELOOP limit: a chain longer than this is a loop or an attack.
MAX_LINK_HOPS = 40


class _Outside(Exception):
    """A path resolved to somewhere outside the tree."""


class _Loop(Exception):
    """A path went through too many symlinks."""


def _refuse(archive: Path, member: str, why: str) -> PfbuildError:
    return PfbuildError(
        f"{archive.name} has an unsafe member {member!r}",
        why,
        "do not use this archive: it could write outside its own folder",
    )


@dataclass
class TreeModel:
    """The symlinks an archive has made so far, by their resolved path inside the tree."""

    links: dict[str, str] = field(default_factory=dict)
    # Where the regular files (and hard links) landed: what a later hard link may point to.
    files: set[str] = field(default_factory=set)

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """`path` (relative to the root) resolved through the links; raise _Outside or _Loop."""
        pending = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if not done:
                    raise _Outside(path)
                done.pop()
                continue
            here = "/".join([*done, part])
            target = self.links.get(here)
            if target is None or (not pending and not follow_last):
                done.append(part)
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise _Loop(path)
            if posixpath.isabs(target):
                raise _Outside(path)
            # A relative target resolves from the folder that holds the link (`done`).
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
        return "/".join(done)

    def link_target(self, where: str, target: str) -> str | None:
        """Where the link at `where` leads now, or None when outside the tree (or a loop)."""
        folder = posixpath.dirname(where)
        try:
            return self.resolve(posixpath.join(folder, target) if folder else target)
        except (_Outside, _Loop):
            return None

    def escaping_link(self) -> tuple[str, str] | None:
        """A link that leads outside now: a later link can change where an earlier one leads."""
        for where, target in self.links.items():
            if self.link_target(where, target) is None:
                return where, target
        return None


def check_name(archive: Path, name: str) -> None:
    """Refuse an empty, ".", absolute or climbing member name."""
    if not name or posixpath.normpath(name) in (".", "/"):
        raise _refuse(archive, name, "empty name or the archive's root itself")
    if name.startswith("/") or posixpath.isabs(name):
        raise _refuse(archive, name, "absolute path")
    if ".." in name.split("/"):
        raise _refuse(archive, name, "'..' path component")
    if "\0" in name:
        raise _refuse(archive, name, "NUL byte in the name")


def check_member(archive: Path, info: tarfile.TarInfo, tree: TreeModel | None = None) -> None:
    """Refuse one member that is badly named, a device, or lands or links out of the tree.

    `tree` holds the links of the members before this one (none when None), and takes this
    member's link when it makes one.
    """
    tree = TreeModel() if tree is None else tree
    name = info.name
    check_name(archive, name)
    if info.ischr() or info.isblk() or info.isfifo():
        raise _refuse(archive, name, "device or FIFO")
    if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
        raise _refuse(archive, name, "not a file, folder or link")
    try:
        # A symlink replaces whatever is at its name: only its folder is followed. A file, a
        # folder or a hard link is written through a link already at its name.
        where = tree.resolve(name, follow_last=not info.issym())
    except _Outside:
        raise _refuse(archive, name, "it lands outside the tree through earlier links") from None
    except _Loop:
        raise _refuse(archive, name, "a symlink loop") from None
    if not where:
        raise _refuse(archive, name, "it resolves to the root of the tree through earlier links")
    if info.issym():
        if posixpath.isabs(info.linkname):
            raise _refuse(archive, name, f"symlink to absolute path {info.linkname}")
        if tree.link_target(where, info.linkname) is None:
            raise _refuse(archive, name, f"symlink {info.linkname} points outside the tree")
        tree.links[where] = info.linkname
    elif info.islnk():
        # A hard link's target is named from the archive's root, and must be a file the archive
        # made before it (tarfile cannot unpack it otherwise, and must not link to anything else).
        try:
            if posixpath.isabs(info.linkname) or not info.linkname:
                raise _Outside(info.linkname)
            target = tree.resolve(info.linkname)
        except (_Outside, _Loop):
            raise _refuse(archive, name, f"hard link to {info.linkname} outside the tree") from None
        if target not in tree.files:
            raise _refuse(archive, name, f"hard link to {info.linkname}, no earlier file")
        tree.files.add(where)
    elif info.isfile():
        tree.files.add(where)


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PfbuildError(
            f"{archive.name} is not a readable tar archive", str(exc), "fetch it again"
        ) from None


def check_tarball(
    archive: Path, *, max_members: int | None = None, max_bytes: int | None = None
) -> int:
    """Check every member of a tarball, in order; return the newest member mtime (release time).

    None takes the module limits (MAX_MEMBERS, MAX_UNPACKED_BYTES), read when the check runs.
    """
    max_members = MAX_MEMBERS if max_members is None else max_members
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    newest = 0
    count = 0
    total = 0
    tree = TreeModel()
    with _open(archive) as tar:
        try:
            for info in tar:
                count += 1
                if count > max_members:
                    raise PfbuildError(
                        f"{archive.name} has more than {max_members} members",
                        "an archive that large is not a source release",
                        "do not use this archive",
                    )
                check_member(archive, info, tree)
                total += info.size if info.isfile() else 0
                if total > max_bytes:
                    raise PfbuildError(
                        f"{archive.name} unpacks to more than {max_bytes} bytes",
                        f"at member {info.name!r}",
                        "do not use this archive",
                    )
                newest = max(newest, int(info.mtime))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise PfbuildError(f"{archive.name} is a damaged tar archive", str(exc)) from None
    escaping = tree.escaping_link()
    if escaping is not None:
        where, target = escaping
        raise _refuse(archive, where, f"symlink {target} points outside the tree after later links")
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
