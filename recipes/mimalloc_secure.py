"""mimalloc built with MI_SECURE=ON: libmimalloc-secure.so, which no target distribution ships."""

from __future__ import annotations

from builder.model.recipe import ArchiveSource, HardeningFlags, Overlay, Recipe

DEBIAN = "http://deb.debian.org/debian"
HARDENING = frozenset({"pie", "relro", "bindnow", "nxstack", "stackprotector", "stackclash"})

RECIPE = Recipe(
    name="mimalloc-secure",
    series="2.0",
    source_package="mimalloc-secure",
    maintainer="pfbuild <pfbuild@localhost>",
    # No separate upstream download: Debian's source package is the source, verified through
    # bookworm's signed chain (InRelease -> Sources.xz -> .dsc -> files).
    packaging={
        "2.0.9": ArchiveSource(
            package="mimalloc",
            version="2.0.9+ds-2",
            archive_url=DEBIAN,
            suites=("bookworm",),
            component="main",
            keyring="/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
    },
    binary_packages={"trixie": ("libmimalloc-secure",), "resolute": ("libmimalloc-secure",)},
    expected_hardening={
        "trixie": {"amd64": HARDENING},
        "resolute": {"amd64": HARDENING | {"cet"}},
    },
    hardening=HardeningFlags(
        build_maint_options="hardening=+all",
        cppflags_append=(),
        cflags_append=("-fstack-clash-protection",),
        ldflags_append=("-Wl,-z,now", "-Wl,-z,relro", "-Wl,-z,noexecstack"),
        arch_cflags={"amd64": ("-fcf-protection=full",), "i386": ("-fcf-protection=full",)},
    ),
    templates="mimalloc-secure",
    overlays=(
        Overlay("rules.j2", "debian/rules", "replace"),
        Overlay("control.j2", "debian/control", "replace"),
        # The unversioned .so is what LD_PRELOAD names, so it ships in the runtime package.
        Overlay("install.j2", "debian/libmimalloc-secure.install", "replace"),
    ),
    changes=(
        "Rebuild of Debian's mimalloc as mimalloc-secure with MI_SECURE=ON.",
        "Ships only libmimalloc-secure.so*, which coexists with libmimalloc2.0.",
        "debian/rules: hardening flags (stack clash, CET on x86, now/relro).",
    ),
)
