"""Postfix, the 3.11 stable series: Wietse's signed release on Debian's packaging."""

from __future__ import annotations

from builder.model.recipe import (
    ArchiveSource,
    Deviation,
    HardeningFlags,
    Overlay,
    Recipe,
    Replacement,
    Upstream,
    UpstreamMirror,
)

DEBIAN = "http://deb.debian.org/debian"
POOL = f"{DEBIAN}/pool/main/p/postfix"
BINARIES = (
    "postfix",
    "postfix-doc",
    "postfix-ldap",
    "postfix-lmdb",
    "postfix-cdb",
    "postfix-pcre",
    "postfix-mongodb",
    "postfix-mysql",
    "postfix-pgsql",
    "postfix-sqlite",
)
# What every ELF must show. CET (IBT+SHSTK notes) needs start files built with them: resolute's
# glibc has them, trixie's does not, so the linker drops the notes there whatever we pass.
BASE_HARDENING = frozenset(
    {"pie", "relro", "bindnow", "nxstack", "stackprotector", "fortify3", "stackclash"}
)

# Debian scrubs the build path out of the installed makedefs.out, but only a -ffile-prefix-map
# followed by whitespace: ours ends the LDFLAGS, so it ends lines and quoted values there, and
# Ubuntu's dpkg adds -fdebug-prefix-map (both found by `pfbuild verify-reproducible`). This
# removes every -f*-prefix-map wherever it stands.
MAKEDEFS_SCRUB = Replacement(
    path="debian/rules",
    old=r"sed -i 's@\s\+-ffile-prefix-map=\S\+=.\s\+@ @g' conf/makedefs.out",
    new=r"sed -i 's@\s*-f[a-z]*-prefix-map=[^[:space:]'\'']*@@g' conf/makedefs.out",
    why="the link-time path map ends lines and values of makedefs.out, where Debian's scrub "
    "missed it",
)

# `berkeley_db=False` (a site recipe, see README.md): Postfix without Berkeley DB. makedefs is
# told explicitly, not left to guess from whether db.h is in the chroot.
WITHOUT_BERKELEY_DB = (
    Replacement(
        path="debian/control",
        old="               libdb-dev,\n",
        new="",
        why="built without Berkeley DB: nothing links libdb, so no package depends on it",
    ),
    Replacement(
        path="debian/rules",
        old="\t-DDB_WARN_DEPRECATED\n",
        new="\t-DDB_WARN_DEPRECATED -DNO_DB\n",
        why="NO_DB builds without Berkeley DB: hash: and btree: tables only answer with "
        "Postfix's NON_BERKELEYDB_README hint",
    ),
)

RECIPE = Recipe(
    name="postfix",
    series="3.11",
    source_package="postfix",
    maintainer="pfbuild <pfbuild@localhost>",
    upstream=Upstream(
        tarball_name="postfix_{version}.orig.tar.gz",
        mirrors=(
            # The official release mirrors first; Debian's pool carries the same bytes as
            # the .orig.tar.gz, with Wietse's detached signature as .asc.
            UpstreamMirror(
                "https://de.postfix.org/ftpmirror/official/postfix-{version}.tar.gz",
                "https://de.postfix.org/ftpmirror/official/postfix-{version}.tar.gz.gpg2",
            ),
            UpstreamMirror(
                "https://ftp.porcupine.org/mirrors/postfix-release/official/postfix-{version}.tar.gz",
                "https://ftp.porcupine.org/mirrors/postfix-release/official/"
                "postfix-{version}.tar.gz.gpg2",
            ),
            UpstreamMirror(
                f"{POOL}/postfix_{{version}}.orig.tar.gz",
                f"{POOL}/postfix_{{version}}.orig.tar.gz.asc",
            ),
        ),
        # Taken from Debian's debian/upstream/signing-key.asc (postfix 3.11.6-1).
        signing_key="keys/wietse-venema.asc",
        fingerprint="622C7C012254C186677469C50C0B590E80CA15A7",
    ),
    packaging={
        "3.11.6": ArchiveSource(
            package="postfix",
            version="3.11.6-1",
            archive_url=DEBIAN,
            suites=("sid", "forky"),
            component="main",
            keyring="/usr/share/keyrings/debian-archive-keyring.gpg",
            # sid's signed Sources index already moved on to 3.11.7-1, so the chain cannot
            # vouch for 3.11.6-1 any more: this pin (sha256 of the .dsc as published) does.
            dsc_sha256="fcdbbfce92caefb61bf984fe6d36568cffeea3ec2fa436702bf4307181ab4b72",
        ),
    },
    binary_packages={"trixie": BINARIES, "resolute": BINARIES},
    expected_hardening={
        "trixie": {"amd64": BASE_HARDENING},
        "resolute": {"amd64": BASE_HARDENING | {"cet"}},
    },
    hardening=HardeningFlags(
        build_maint_options="hardening=+all optimize=+lto future=+lfs",
        cppflags_append=("-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=3"),
        cflags_append=("-O3", "-fno-plt", "-fstack-clash-protection"),
        ldflags_append=(
            "-Wl,-z,now",
            "-Wl,-z,relro",
            "-Wl,-z,noexecstack",
            "-Wl,-O1",
            "-Wl,--as-needed",
        ),
        # Debian strips Ubuntu's -Bsymbolic-functions: postfix's shared libs interpose symbols.
        ldflags_strip=("-Wl,-Bsymbolic-functions",),
        # Postfix links its shared objects with LDFLAGS alone: without this their build IDs
        # differ with the build path (found by `pfbuild verify-reproducible`).
        map_build_path_at_link=True,
        # Control-flow protection exists on x86 only; elsewhere gcc rejects the flag.
        arch_cflags={"amd64": ("-fcf-protection=full",), "i386": ("-fcf-protection=full",)},
    ),
    adjustments={
        "trixie": (
            Replacement(
                path="debian/rules",
                old="mongoc2",
                new="libmongoc-1.0",
                why="trixie ships mongo-c-driver 1.30, whose pkg-config name is libmongoc-1.0",
            ),
            MAKEDEFS_SCRUB,
        ),
        "resolute": (MAKEDEFS_SCRUB,),
    },
    templates="postfix",
    # debian/tests/postfix (test-postfix.py) expects VRFY to answer 252 for a known address.
    autopkgtest_deviations=(
        Deviation(
            test="postfix/test_10_commands",
            outcome="fail",
            match=r"^AssertionError: 502 != 252 : 502 b'5\.5\.1 VRFY command is disabled'$",
            reason="our main.cf sets disable_vrfy_command = yes (no address harvesting by VRFY)",
        ),
    ),
    overlays=(
        Overlay("rules-hardening.mk.j2", "debian/rules", "maint-flags"),
        Overlay("main.cf.in.j2", "debian/main.cf.in", "postconf"),
        Overlay("main.cf.tls.j2", "debian/main.cf.tls", "postconf"),
    ),
    postfix_qa=True,
    # On until the configuration gate has shown existing users how to move their tables.
    berkeley_db=True,
    without_berkeley_db=WITHOUT_BERKELEY_DB,
    template_options={
        # Off by default: see debian-templates/postfix/main.cf.tls.j2 for why.
        "send_pq_key_share_first": False,
        "pq_first_curves": "X25519MLKEM768 SecP256r1MLKEM768 X25519 prime256v1 secp384r1",
    },
    # The image preloads the secure mimalloc, which no distribution ships.
    companions=(("mimalloc-secure", "2.0.9"),),
    # The same mirrors' folder listings: where `pfbuild check-upstream` looks for new releases.
    release_listings=(
        "https://de.postfix.org/ftpmirror/official/",
        "https://ftp.porcupine.org/mirrors/postfix-release/official/",
    ),
    changes=(
        "Rebuild of Debian's packaging on Wietse Venema's signed upstream release.",
        "debian/rules: hardening flags (FORTIFY_SOURCE=3, stack clash, CET on x86, now/relro).",
        "main.cf: compatibility_level 3.11, cdb/lmdb, smtpd restrictions, fail-closed milters.",
        "main.cf.tls: TLS 1.2 floor, PFS-only ciphers, hybrid post-quantum key exchange.",
    ),
)
