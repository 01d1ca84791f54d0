"""The build-deps chroot: the base chroot tarball with one .dsc's build dependencies installed."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shlex
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from builder.bootstrap.buildenv import ensure_chroot_tarball, mmdebstrap_cmdline, mmdebstrap_version
from builder.bootstrap.keyring import ensure_keyring, unshare_readable
from builder.core import run
from builder.core.atomic import atomic_file, write_text
from builder.core.context import Context
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

BUILD_DEP_FIELDS = ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep")


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
    return ", ".join(["build-essential", "fakeroot", *relations])


@dataclass(frozen=True)
class DepsChroot:
    """A chroot tarball with one recipe's build dependencies already installed."""

    path: Path
    key: str
    resolved: tuple[str, ...]


def deps_chroot_cmdline(dist: Distribution, keyring: Path, output: Path, depends: str) -> list[str]:
    """mmdebstrap with the build-deps installed by apt-get satisfy, package lists kept."""
    base = mmdebstrap_cmdline(dist, variant="buildd", keyring=keyring, output=output)
    hook = (
        'chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get satisfy -y -q '
        f"--no-install-recommends {shlex.quote(depends)}"
    )
    # Keep the package lists: sbuild then needs no apt-get update inside the cached chroot.
    return [base[0], f"--customize-hook={hook}", "--skip=cleanup/apt/lists", *base[1:]]


def _installed_packages(tarball: Path) -> tuple[str, ...]:
    with tarfile.open(tarball) as tar:
        handle = tar.extractfile("./var/lib/dpkg/status")
        status = handle.read().decode() if handle else ""
    return tuple(
        sorted(
            f"{p['Package']}={p['Version']}"
            for p in deb822.Deb822.iter_paragraphs(io.StringIO(status), use_apt_pkg=False)
            if p.get("Status", "").endswith(" installed")
        )
    )


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
    key = hashlib.sha256(
        json.dumps([base_record, depends, mmdebstrap_version()]).encode()
    ).hexdigest()[:16]
    # Named by the build dependencies, not the recipe: recipes that need the same packages
    # (a renamed or site recipe, a rebuild) share one chroot.
    deps_id = hashlib.sha256(depends.encode()).hexdigest()[:12]
    tarball = ctx.chroots_dir / f"{dist.name}-{dist.arch}-deps-{deps_id}.tar"
    record_path = tarball.with_suffix(".json")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    if record.get("key") == key and tarball.is_file():
        log.info("%s: build-deps chroot of %s reused", dist.name, recipe)
        return DepsChroot(tarball, key, tuple(record.get("resolved", ())))
    log.info("%s: making build-deps chroot of %s", dist.name, recipe)
    started = time.monotonic()
    with atomic_file(tarball) as tmp:
        cmd = deps_chroot_cmdline(dist, unshare_readable(ctx, keyring), tmp, depends)
        run.run(cmd, log_path=ctx.logs_dir / f"deps-{dist.name}-{recipe}.log")
        tmp.chmod(0o644)
        resolved = _installed_packages(tmp)
    write_text(
        record_path,
        json.dumps({"key": key, "depends": depends, "resolved": resolved}, indent=2) + "\n",
    )
    log.info("%s: build-deps chroot ready in %.0f s", dist.name, time.monotonic() - started)
    return DepsChroot(tarball, key, resolved)
