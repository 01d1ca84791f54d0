"""Target distributions as data: archive, components, keyring, version suffix."""

from __future__ import annotations

from dataclasses import dataclass

from builder.core.errors import PfbuildError, shorten


@dataclass(frozen=True)
class HostKeyring:
    """An archive keyring installed on the host by a Debian package."""

    path: str
    package: str


@dataclass(frozen=True)
class ArchiveKeyring:
    """An archive keyring taken from a package in the archive itself, trusted by fingerprint."""

    package: str
    member: str
    fingerprints: tuple[str, ...]


@dataclass(frozen=True)
class Distribution:
    """One build target: where its packages come from and how ours are versioned for it."""

    name: str
    vendor: str
    release: str
    variant: str
    archive_url: str
    components: tuple[str, ...]
    keyring: HostKeyring | ArchiveKeyring
    version_suffix: str
    includes: tuple[str, ...] = ()
    arch: str = "amd64"
    # What the image's apt-get install adds to its package list for this target (a trailing
    # "-" removes a package of the base in the same transaction).
    image_includes: tuple[str, ...] = ()

    def with_archive(self, url: str | None) -> Distribution:
        """The same target reading from another archive URL (a local mirror or a snapshot)."""
        if not url:
            return self
        return Distribution(**{**self.__dict__, "archive_url": url.rstrip("/")})


TRIXIE = Distribution(
    name="trixie",
    vendor="debian",
    release="13",
    variant="debian",
    archive_url="http://deb.debian.org/debian",
    components=("main",),
    keyring=HostKeyring("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring"),
    version_suffix="~trixie",
)

RESOLUTE = Distribution(
    name="resolute",
    vendor="ubuntu",
    release="26.04",
    variant="ubuntu",
    archive_url="http://archive.ubuntu.com/ubuntu",
    # libtlsrpt and mongo-c-driver, which postfix builds against, live in universe.
    components=("main", "universe"),
    keyring=ArchiveKeyring(
        package="ubuntu-keyring",
        member="usr/share/keyrings/ubuntu-archive-keyring.gpg",
        # Ubuntu Archive Automatic Signing Key (2018): signs every current Ubuntu suite.
        fingerprints=("F6ECB3762474EDA9D21B7022871920D1991BC93C",),
    ),
    version_suffix="~resolute",
    # Ubuntu's minimal package set does not pull in apt, which sbuild and docker images need.
    includes=("apt",),
    # Ubuntu's coreutils are Rust's uutils (15 MB) on top of GNU's (7 MB, installed anyway):
    # the image keeps GNU's alone, through Ubuntu's own switch package (apt's solver removes
    # the protected uutils one only when told to).
    image_includes=("coreutils-from-gnu", "coreutils-from-uutils-", "rust-coreutils-"),
)

TARGETS: dict[str, Distribution] = {d.name: d for d in (TRIXIE, RESOLUTE)}


def get_target(name: str, archive_url: str | None = None) -> Distribution:
    """Look up a target by codename, optionally reading from another archive."""
    try:
        return TARGETS[name].with_archive(archive_url)
    except KeyError:
        raise PfbuildError(
            f"unknown target {shorten(name)}",
            f"pfbuild builds for {', '.join(TARGETS)}",
            f"use --target {' or --target '.join(TARGETS)}",
        ) from None
