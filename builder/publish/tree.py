"""The served tree: generations of aptly's publish, swapped into place with one rename.

aptly renames its new index files into place one by one and then deletes pool files no snapshot
needs: no single atomic step, so clients never read aptly's tree. After aptly finishes, the whole
tree is copied (pool files hard-linked) into a new generation `dist/apt.<n>` and the symlink
`dist/apt` (ctx.apt_tree) is flipped to it with one rename: a client sees the old tree or the new
one, never a half-written suite. A killed run leaves the old link in place.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from debian.deb822 import Deb822

from builder.core.atomic import remove_path, write_text
from builder.core.context import Context
from builder.core.errors import PfbuildError, shorten
from builder.publish.aptly import COMPONENT, aptly_public_dir
from builder.publish.history import HISTORY_NAME, History, sign_history
from builder.publish.signing import SigningKey, export_public_key

log = logging.getLogger("pfbuild")

KEY_FILE_NAME = "pfbuild.asc"
KEY_INSTALL_PATH = "/etc/apt/keyrings/pfbuild.asc"
MANIFEST_NAME = "pfbuild-publish.json"
# Signed SBOMs and provenance per release (builder.publish.attestations), carried from each
# generation to the next like the indexes clients may still ask for.
ATTESTATIONS_DIR = "attestations"
# The live generation and the one before it: a client that read the old InRelease a moment
# before the flip can still fetch the indexes it names.
KEEP_GENERATIONS = 2


# ---- what the tree carries --------------------------------------------------------------------


# What a repository URL may hold: RFC 3986's unreserved and delimiter characters. No white
# space or control character can pass, so nothing can start a new deb822 field.
_URL_CHARS = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+$")


def check_repo_url(url: str) -> str:
    """The repository URL clients use, refused unless it is a clean http(s):// or file:// URL.

    It is written into the .sources snippet every client installs: a value that smuggled a
    `Trusted: yes` line into it would switch off signature checks for all of them.
    """
    fix = "pass --url http://HOST[:PORT]/PATH/ (or https://, file:///PATH/)"
    if not _URL_CHARS.fullmatch(url):
        raise PfbuildError(
            f"repository URL {shorten(url)} holds white space or characters a URL may not",
            "it goes into the .sources snippet that apt reads",
            fix,
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "file"):
        raise PfbuildError(
            f"repository URL {shorten(url)} is not an http(s):// or file:// URL",
            "apt reaches the repository through it",
            fix,
        )
    if parts.query or parts.fragment or (parts.scheme != "file" and not parts.hostname):
        raise PfbuildError(
            f"repository URL {shorten(url)} is not a plain folder URL",
            "a host is needed (file:// takes a path) and no query or fragment",
            fix,
        )
    return url if url.endswith("/") else url + "/"


def sources_snippet(url: str, suite: str, signed_by: str = KEY_INSTALL_PATH) -> str:
    """A deb822 .sources stanza for one suite of the repository."""
    base = check_repo_url(url)
    stanza = Deb822()
    stanza["Types"] = "deb"
    stanza["URIs"] = base
    stanza["Suites"] = suite
    stanza["Components"] = COMPONENT
    stanza["Signed-By"] = signed_by
    return (
        f"# pfbuild repository, suite {suite}. Install the key from {base}{KEY_FILE_NAME}\n"
        f"# as {signed_by}, this file in /etc/apt/sources.list.d/.\n"
    ) + stanza.dump()


def sources_file_name(suite: str) -> str:
    """The exported snippet of one suite."""
    return f"pfbuild-{suite}.sources"


def inrelease_date(path: Path) -> float | None:
    """The Date of an InRelease or Release file, as a Unix time; None if there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^Date: (.+)$", text, re.MULTILINE)
    if not match:
        return None
    return email.utils.parsedate_to_datetime(match.group(1).strip()).timestamp()


# ---- copying aptly's tree ---------------------------------------------------------------------


def copy_published_tree(public: Path, dest: Path) -> None:
    """Copy aptly's public tree: pool files hard-linked, indexes copied, links made relative."""
    public_abs = os.path.normpath(public)
    for root, dirs, files in os.walk(public):
        rel_root = Path(root).relative_to(public)
        (dest / rel_root).mkdir(parents=True, exist_ok=True)
        for name in dirs + files:
            src = Path(root) / name
            dst = dest / rel_root / name
            if src.is_symlink():
                # aptly's by-hash links are absolute paths into its own tree.
                target = os.path.normpath(src.parent / src.readlink())
                if not target.startswith(public_abs + os.sep):
                    raise PfbuildError(f"{src} links outside the published tree, to {target}")
                dst.symlink_to(os.path.relpath(target, src.parent))
            elif name in files:
                if rel_root.parts[:1] == ("pool",):
                    os.link(src, dst)  # aptly never rewrites a pool file in place
                else:
                    shutil.copy2(src, dst)


def carry_over_by_hash(old: Path, new: Path) -> None:
    """Keep the previous generation's current indexes reachable by hash in the new one."""
    # A client that read the old InRelease just before the flip then asks for its indexes.
    for by_hash in old.glob("dists/**/by-hash"):
        for link in by_hash.glob("*/*"):
            if not link.is_symlink() or not link.is_file():
                continue
            target = link.resolve()
            dst = new / target.relative_to(old.resolve())
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target, dst)


def carry_over_attestations(old: Path, new: Path) -> None:
    """Keep the attestations of earlier releases in the new generation."""
    source = old / ATTESTATIONS_DIR
    if source.is_dir() and not (new / ATTESTATIONS_DIR).exists():
        shutil.copytree(source, new / ATTESTATIONS_DIR, symlinks=False)


def tree_path(tree: Path, rel: str) -> Path:
    """`rel` inside `tree`, refused unless it is a plain relative path that stays inside."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise PfbuildError(f"{rel!r} is not a plain path inside the published tree")
    return tree.joinpath(*parts)


# ---- generations ------------------------------------------------------------------------------


def live_generation(ctx: Context) -> Path | None:
    """The generation directory `dist/apt` points to, if any."""
    link = ctx.apt_tree
    if link.is_symlink():
        target = link.parent / link.readlink()
        return target if target.is_dir() else None
    if link.exists():
        raise PfbuildError(
            f"{link} is not a symlink",
            "pfbuild swaps the published tree by flipping that symlink",
            f"move {link} away; pfbuild recreates it",
        )
    return None


def _generation_number(ctx: Context, path: Path) -> int | None:
    match = re.fullmatch(rf"{re.escape(ctx.apt_tree.name)}\.(\d+)", path.name)
    return int(match.group(1)) if match else None


def _generations(ctx: Context) -> list[Path]:
    """The generation directories beside the link, oldest first."""
    numbered = [
        (number, path)
        for path in ctx.apt_tree.parent.glob(f"{ctx.apt_tree.name}.*")
        if (number := _generation_number(ctx, path)) is not None
    ]
    return [path for _number, path in sorted(numbered)]


def _next_generation(ctx: Context) -> Path:
    """The directory of a new generation: numbered one past the newest there is."""
    generations = _generations(ctx)
    number = (_generation_number(ctx, generations[-1]) or 0) + 1 if generations else 1
    return ctx.apt_tree.with_name(f"{ctx.apt_tree.name}.{number}")


def flip_link(link: Path, target_name: str) -> None:
    """Point `link` at `target_name` (a sibling) with one rename."""
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    remove_path(tmp)
    tmp.symlink_to(target_name)
    os.replace(tmp, link)


def clean_leftovers(ctx: Context) -> None:
    """Remove the half-made generations and links of runs that were killed."""
    for leftover in ctx.apt_tree.parent.glob(f".{ctx.apt_tree.name}*"):
        remove_path(leftover)


def _remove_old_generations(ctx: Context, live: Path) -> None:
    generations = _generations(ctx)
    keep = {live.name, *(g.name for g in generations[-KEEP_GENERATIONS:])}
    for generation in generations:
        if generation.name not in keep:
            remove_path(generation)


def _add_generation(ctx: Context, fill: Callable[[Path], None]) -> Path:
    """Fill a new generation out of sight, flip `dist/apt` to it, drop old ones; return it."""
    final = _next_generation(ctx)
    tmp = final.with_name(f".{final.name}.tmp")
    remove_path(tmp)
    try:
        fill(tmp)
        tmp.chmod(0o755)
        os.replace(tmp, final)
    finally:
        remove_path(tmp)
    flip_link(ctx.apt_tree, final.name)
    _remove_old_generations(ctx, final)
    return final


# ---- the two ways a tree goes live ------------------------------------------------------------


def refresh_tree(
    ctx: Context, key: SigningKey, url: str, published: dict[str, str], history: History
) -> tuple[Path, bool]:
    """Make `dist/apt` show aptly's current publish and `history`; return the live tree, changed?"""
    manifest = {
        "fingerprint": key.fingerprint,
        "history": hashlib.sha256(history.payload()).hexdigest(),
        "suites": published,
        "url": url,
    }
    live = live_generation(ctx)
    if live is not None:
        try:
            if json.loads((live / MANIFEST_NAME).read_text()) == manifest:
                return live, False
        except (OSError, ValueError):
            pass

    def fill(tmp: Path) -> None:
        copy_published_tree(aptly_public_dir(ctx), tmp)
        if live is not None:
            carry_over_by_hash(live, tmp)
            carry_over_attestations(live, tmp)
        export_public_key(key, tmp / KEY_FILE_NAME)
        for suite in sorted(published):
            write_text(tmp / sources_file_name(suite), sources_snippet(url, suite))
        (tmp / HISTORY_NAME).write_bytes(sign_history(key, history))
        write_text(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    final = _add_generation(ctx, fill)
    log.info("published tree %s -> %s", ctx.apt_tree, final.name)
    return final, True


def install_tree(ctx: Context, source: Path) -> Path:
    """Make a (verified) tree published elsewhere the live `dist/apt` of this workspace."""
    clean_leftovers(ctx)
    live = live_generation(ctx)

    def fill(tmp: Path) -> None:
        shutil.copytree(source, tmp, symlinks=True)

    final = _add_generation(ctx, fill)
    log.info("installed the tree from %s as %s (was %s)", source, final.name, live)
    return final


def extend_tree(
    ctx: Context, files: Mapping[str, bytes], *, replacing: Collection[str] = ()
) -> Path:
    """A new generation: the live one without `replacing`, plus `files`; flipped into place.

    Paths are relative to the tree. Clients see the added files together with the packages and
    indexes they are about, or neither.
    """
    live = live_generation(ctx)
    if live is None:
        raise PfbuildError(
            f"nothing is published in {ctx.apt_tree}", fix="run `pfbuild publish` first"
        )

    def fill(tmp: Path) -> None:
        copy_published_tree(live, tmp)
        for rel in replacing:
            remove_path(tree_path(tmp, rel))
        for rel, data in sorted(files.items()):
            path = tree_path(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o644)

    final = _add_generation(ctx, fill)
    log.info("published tree %s -> %s (%d file(s) added)", ctx.apt_tree, final.name, len(files))
    return final


# ---- a copy anywhere --------------------------------------------------------------------------

_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)


def export_tree(source: Path, dest: Path) -> None:
    """Put a copy of the tree `source` at `dest`, replacing what is there in one step.

    The copy is made beside `dest` and swapped in with one rename (an exchange when `dest`
    exists), so a sync of `dest` (rsync, an object store client) sees the old tree or the new.
    """
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise PfbuildError(
            f"{dest} is not a folder",
            "--to replaces a folder with the published tree",
            "pass a folder path (it is created when missing)",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.new-{os.getpid()}")
    for stale in dest.parent.glob(f".{dest.name}.*-[0-9]*"):
        remove_path(stale)  # left by a killed run
    try:
        shutil.copytree(source, tmp, symlinks=True)
        tmp.chmod(0o755)
        if not dest.exists():
            tmp.rename(dest)
        elif _exchange(tmp, dest):
            pass  # tmp now holds the old tree, removed below
        else:
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
            tmp.rename(dest)
            remove_path(old)
    finally:
        remove_path(tmp)
    log.info("copied the published tree to %s", dest)
