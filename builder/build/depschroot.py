"""The build-deps chroot: the base chroot tarball with one .dsc's build dependencies installed."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shlex
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian import deb822
from debian.debian_support import version_compare

from builder.bootstrap.buildenv import ensure_chroot_tarball, mmdebstrap_cmdline, mmdebstrap_version
from builder.bootstrap.keyring import ensure_keyring, is_world_readable, unshare_readable
from builder.build.ccache import PACKAGE as PACKAGE_CCACHE
from builder.core import run
from builder.core.atomic import atomic_file, link_or_copy, remove_path, write_text
from builder.core.context import Context
from builder.core.lock import resource_lock
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

BUILD_DEP_FIELDS = ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep")
# What every deps chroot holds besides the declared build-deps: what sbuild installs anyway,
# and ccache, which a build uses only when its PATH says so (the chroot is the same with and
# without the cache, so the two build alike).
BUILD_TOOLS = ("build-essential", "fakeroot", PACKAGE_CCACHE)
SCRATCH_IN_MEMORY = "/dev/shm"  # noqa: S108 - a tmpfs, private folders made by mmdebstrap
SCRATCH_MIN_FREE = 4 << 30


def _arch_matches(arch: str, wildcard: str) -> bool:
    return wildcard in (arch, "any", "linux-any", f"any-{arch}", f"linux-{arch}")


def _alternative_applies(alt: deb822.PkgRelation.ParsedRelation, arch: str) -> bool:
    arches = alt["arch"] or []
    enabled = [a.arch for a in arches if a.enabled]
    disabled = [a.arch for a in arches if not a.enabled]
    if enabled and not any(_arch_matches(arch, a) for a in enabled):
        return False
    if any(_arch_matches(arch, a) for a in disabled):
        return False
    restrictions = alt["restrictions"]
    if restrictions:
        # No build profile is active: a term holds when it is negated (<!nocheck>).
        return any(all(not term.enabled for term in group) for group in restrictions)
    return True


def build_depends(dsc: Path, arch: str) -> str:
    """The .dsc's build dependencies for `arch` with no build profile, as one apt-satisfy string."""
    with dsc.open() as f:
        para = deb822.Dsc(f)
    relations: list[str] = []
    for field in BUILD_DEP_FIELDS:
        if not para.get(field, "").strip():
            continue
        for group in deb822.PkgRelation.parse_relations(para[field]):
            kept = []
            for alt in group:
                if not _alternative_applies(alt, arch):
                    continue
                text = alt["name"]
                if alt["archqual"]:
                    text += f":{alt['archqual']}"
                if alt["version"]:
                    op, ver = alt["version"]
                    text += f" ({op} {ver})"
                kept.append(text)
            if kept:
                relations.append(" | ".join(kept))
    return ", ".join([*BUILD_TOOLS, *relations])


@dataclass(frozen=True)
class DepsChroot:
    """A chroot tarball with one recipe's build dependencies already installed."""

    path: Path
    key: str
    resolved: tuple[str, ...]


def deps_chroot_cmdline(
    dist: Distribution, keyring: Path, output: Path, depends: str, base: Path
) -> list[str]:
    """mmdebstrap on top of the base chroot tarball: the build-deps installed by apt-get
    satisfy, package lists kept.

    The base (the buildd variant, made once per target) is unpacked instead of bootstrapped
    again; dpkg skips its fsyncs (the tree is packed into a tarball right after, and thrown
    away on failure) and man-db does not index the manual pages nobody reads in a build.
    The base's device nodes are left out: mmdebstrap makes its own before the hooks run.
    """
    cmd = mmdebstrap_cmdline(dist, variant="custom", keyring=keyring, output=output)
    # The base already holds the target's extra packages.
    cmd = [a for a in cmd if not a.startswith("--include=")]
    unpack = f'tar --exclude=./dev/* -C "$1" -xf {shlex.quote(str(base))}'
    hook = (
        "echo 'man-db man-db/auto-update boolean false' | chroot \"$1\" debconf-set-selections"
        ' && chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get satisfy -y -q '
        f"--no-install-recommends {shlex.quote(depends)}"
    )
    return [
        cmd[0],
        f"--setup-hook={unpack}",
        f"--customize-hook={hook}",
        "--dpkgopt=force-unsafe-io",
        # Keep the package lists: sbuild then needs no apt-get update inside the cached chroot.
        "--skip=cleanup/apt/lists",
        *cmd[1:],
    ]


def scratch_env(min_free: int = SCRATCH_MIN_FREE) -> dict[str, str]:
    """TMPDIR for mmdebstrap's unpacked tree: memory (/dev/shm) when it has room.

    Unpacking and packing a tree of tens of thousands of files on a virtual disk costs more
    than everything else in making a deps chroot (measured: 12 s of 35 on disk, 1 s of 14 in
    memory).
    """
    try:
        stat = os.statvfs(SCRATCH_IN_MEMORY)
    except OSError:
        return {}
    if stat.f_bavail * stat.f_frsize < min_free:
        return {}
    return {"TMPDIR": SCRATCH_IN_MEMORY}


def readable_base(ctx: Context, base: Path, user: str) -> Path:
    """`base` where mmdebstrap's unshared root can read it: itself, or a hard link (or copy)
    in the stage root when the workspace is closed to subordinate uids."""
    if is_world_readable(base):
        return base
    staged = ctx.stage_root / "chroots" / f"{user}-{os.getpid()}-{base.name}"
    staged.parent.mkdir(parents=True, exist_ok=True)
    ctx.stage_root.chmod(0o1777)
    staged.parent.chmod(0o755)
    remove_path(staged)
    link_or_copy(base, staged)
    return staged


def _installed_packages(tarball: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a chroot tarball has installed (`name=version`) and what those packages provide
    (`name=version`, or `name` for an unversioned Provides)."""
    with tarfile.open(tarball) as tar:
        handle = tar.extractfile("./var/lib/dpkg/status")
        status = handle.read().decode() if handle else ""
    installed = [
        p
        for p in deb822.Packages.iter_paragraphs(io.StringIO(status), use_apt_pkg=False)
        if p.get("Status", "").endswith(" installed")
    ]
    provided = {
        alt["name"] + (f"={alt['version'][1]}" if alt["version"] else "")
        for p in installed
        for group in p.relations["provides"] or ()
        for alt in group
    }
    return tuple(sorted(f"{p['Package']}={p['Version']}" for p in installed)), tuple(
        sorted(provided)
    )


_RELATION_HOLDS = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}


def satisfies(resolved: Sequence[str], provides: Sequence[str], depends: str) -> bool:
    """Whether a chroot with `resolved` installed (and their `provides`) meets `depends`."""
    have: dict[str, list[str | None]] = {}
    for entry in resolved:
        name, _, version = entry.partition("=")
        have.setdefault(name, []).append(version)
    for entry in provides:
        name, sep, version = entry.partition("=")
        have.setdefault(name, []).append(version if sep else None)

    def holds(alt: deb822.PkgRelation.ParsedRelation) -> bool:
        wanted = alt["version"]
        for version in have.get(alt["name"], ()):
            if wanted is None:
                return True
            op, ver = wanted
            if version is not None and _RELATION_HOLDS[op](version_compare(version, ver)):
                return True
        return False

    groups = deb822.PkgRelation.parse_relations(depends)
    return all(any(holds(alt) for alt in group) for group in groups)


def _satisfying_chroot(
    ctx: Context, dist: Distribution, base_key: str, depends: str
) -> DepsChroot | None:
    """A deps chroot on the same base that already holds everything `depends` asks for."""
    found: list[tuple[int, DepsChroot]] = []
    for record_path in ctx.chroots_dir.glob(f"{dist.name}-{dist.arch}-deps-*.json"):
        try:
            record = json.loads(record_path.read_text())
            resolved, provides = record["resolved"], record["provides"]
            if record["base"] != base_key or not satisfies(resolved, provides, depends):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        tarball = record_path.with_suffix(".tar")
        if tarball.is_file():
            found.append((len(resolved), DepsChroot(tarball, record["key"], tuple(resolved))))
    # The smallest first: the fewest packages the build did not ask for. The record only
    # narrows the search; the chosen tarball's own dpkg status must say the same.
    for _, chroot in sorted(found, key=lambda f: (f[0], f[1].path.name)):
        try:
            resolved, provides = _installed_packages(chroot.path)
        except (OSError, tarfile.TarError):
            continue
        if satisfies(resolved, provides, depends):
            return DepsChroot(chroot.path, chroot.key, resolved)
    return None


def ensure_deps_chroot(
    ctx: Context, dist: Distribution, recipe: str, dsc: Path, *, now: float | None = None
) -> DepsChroot:
    """Make (or reuse) the build-deps chroot of `recipe` for `dist`.

    Keyed by the base tarball's identity (its inputs and when it was made: it is refreshed
    with the same max age) and the declared build dependencies.
    """
    base = ensure_chroot_tarball(ctx, dist, now=now)
    keyring = ensure_keyring(ctx, dist)
    depends = build_depends(dsc, dist.arch)
    base_record = base.with_suffix(".json").read_text()
    base_key = hashlib.sha256(json.dumps([base_record, mmdebstrap_version()]).encode())
    key = hashlib.sha256(
        json.dumps([base_record, depends, mmdebstrap_version()]).encode()
    ).hexdigest()[:16]
    # Named by the build dependencies, not the recipe: recipes that need the same packages
    # (a renamed or site recipe, a rebuild) share one chroot.
    deps_id = hashlib.sha256(depends.encode()).hexdigest()[:12]
    tarball = ctx.chroots_dir / f"{dist.name}-{dist.arch}-deps-{deps_id}.tar"
    # Shared by every recipe with these build dependencies: one makes it, the others wait.
    with resource_lock(ctx.resource_lock(tarball.stem), tarball.name):
        record = _read_json(tarball.with_suffix(".json"))
        if record.get("key") == key and tarball.is_file():
            log.info("%s: build-deps chroot of %s reused", dist.name, recipe)
            return DepsChroot(tarball, key, tuple(record.get("resolved", ())))
        other = _satisfying_chroot(ctx, dist, base_key.hexdigest()[:16], depends)
        if other is not None:
            log.info(
                "%s: build-deps chroot of %s: %s, which has all its build-deps",
                dist.name, recipe, other.path.name,
            )  # fmt: skip
            return other
        return _make_deps_tarball(
            ctx, dist, recipe, keyring, depends, (key, base_key.hexdigest()[:16]), tarball, base
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _make_deps_tarball(
    ctx: Context,
    dist: Distribution,
    recipe: str,
    keyring: Path,
    depends: str,
    keys: tuple[str, str],
    tarball: Path,
    base: Path,
) -> DepsChroot:
    key, base_key = keys
    log.info("%s: making build-deps chroot of %s", dist.name, recipe)
    started = time.monotonic()
    readable = readable_base(ctx, base, tarball.stem)
    try:
        with atomic_file(tarball) as tmp:
            cmd = deps_chroot_cmdline(dist, unshare_readable(ctx, keyring), tmp, depends, readable)
            run.run(
                cmd, env=scratch_env(), log_path=ctx.logs_dir / f"deps-{dist.name}-{recipe}.log"
            )
            tmp.chmod(0o644)
            resolved, provides = _installed_packages(tmp)
    finally:
        if readable != base:
            remove_path(readable)
    record = {
        "key": key,
        "base": base_key,
        "depends": depends,
        "resolved": resolved,
        "provides": provides,
    }
    write_text(tarball.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    log.info("%s: build-deps chroot ready in %.0f s", dist.name, time.monotonic() - started)
    return DepsChroot(tarball, key, resolved)
