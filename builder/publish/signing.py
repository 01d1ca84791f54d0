"""The repository signing key: a configured one, or a modern local key kept in the workspace."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.core import run
from builder.core.atomic import atomic_file, write_text
from builder.core.context import Context
from builder.core.errors import CommandError, PfbuildError

log = logging.getLogger("pfbuild")

LOCAL_KEY_UID = "pfbuild local repository key (not for production) <pfbuild@localhost>"
KEY_ALGOS = ("ed25519", "rsa4096")
# OpenPGP hash algorithm ids (RFC 4880 9.4): 1 MD5, 2 SHA-1, 3 RIPEMD-160, 8 SHA-256, 9 SHA-384,
# 10 SHA-512, 11 SHA-224. sqv (Debian 13's apt) refuses SHA-1 bindings, so only these pass.
STRONG_DIGESTS = frozenset({8, 9, 10})
# gpg.conf of the workspace store: strong digests for data and key signatures.
GPG_CONF = (
    "personal-digest-preferences SHA512 SHA384 SHA256\n"
    "cert-digest-algo SHA512\n"
    "default-preference-list SHA512 SHA384 SHA256 AES256 AES192 AES ZLIB BZIP2 ZIP Uncompressed\n"
)
FINGERPRINT_FILE = "fingerprint"


@dataclass(frozen=True)
class SigningConfig:
    """How the user wants the repository signed; all empty means a generated local key."""

    fingerprint: str | None = None
    gnupghome: Path | None = None
    key_file: Path | None = None
    algo: str = "ed25519"

    def __post_init__(self) -> None:
        if self.key_file is not None and self.gnupghome is not None:
            raise PfbuildError(
                "both a signing key file and a GNUPGHOME were given",
                "pfbuild signs with one key from one place",
                "pass either --signing-key-file or --signing-key with --gnupghome",
            )
        if self.gnupghome is not None and not self.fingerprint:
            raise PfbuildError(
                "a GNUPGHOME was given without the fingerprint of the signing key",
                "a keyring may hold many secret keys; pfbuild will not guess",
                "pass --signing-key FINGERPRINT",
            )
        if self.fingerprint is not None and not _is_fingerprint(self.fingerprint):
            raise PfbuildError(
                f"signing key {self.fingerprint!r} is not a full fingerprint",
                "short key ids collide; pfbuild accepts the 40 or 64 hex digit fingerprint only",
                "use `gpg --list-secret-keys --with-colons` to read it",
            )
        if self.algo not in KEY_ALGOS:
            raise PfbuildError(
                f"unknown key algorithm {self.algo!r}", fix=f"use one of {', '.join(KEY_ALGOS)}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SigningConfig:
        """The key named by PFBUILD_SIGNING_KEY, PFBUILD_GNUPGHOME, PFBUILD_SIGNING_KEY_FILE."""
        home = environ.get("PFBUILD_GNUPGHOME") or None
        key_file = environ.get("PFBUILD_SIGNING_KEY_FILE") or None
        return cls(
            fingerprint=environ.get("PFBUILD_SIGNING_KEY") or None,
            gnupghome=Path(home) if home else None,
            key_file=Path(key_file) if key_file else None,
        )


@dataclass(frozen=True)
class SigningKey:
    """A usable secret key: its fingerprint and the GNUPGHOME that holds it."""

    fingerprint: str
    gnupghome: Path
    local: bool

    def env(self) -> dict[str, str]:
        """The environment gpg (and aptly, which calls gpg) needs to find this key."""
        return {"GNUPGHOME": str(self.gnupghome)}


def _is_fingerprint(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdefABCDEF" for c in text)


def gpg_cmdline(gnupghome: Path, *args: str | Path) -> list[str]:
    """A non-interactive gpg call on one home directory."""
    return ["gpg", "--homedir", str(gnupghome), "--batch", "--no-tty", *[str(a) for a in args]]


def generate_key_cmdline(gnupghome: Path, algo: str) -> list[str]:
    """Make a signing-only key with no passphrase (it never leaves the 0700 workspace store)."""
    return [
        *gpg_cmdline(gnupghome, "--pinentry-mode", "loopback", "--passphrase", ""),
        "--quick-generate-key",
        LOCAL_KEY_UID,
        algo,
        "sign",
        "never",
    ]


def _secret_fingerprints(gnupghome: Path) -> list[str]:
    text = run.output(gpg_cmdline(gnupghome, "--with-colons", "--list-secret-keys"))
    fprs: list[str] = []
    is_primary = False
    for line in text.splitlines():
        fields = line.split(":")
        if fields[0] in ("sec", "ssb"):
            is_primary = fields[0] == "sec"
        elif fields[0] == "fpr" and is_primary:
            fprs.append(fields[9].upper())
            is_primary = False
    return fprs


def _prepare_store(store: Path) -> None:
    store.mkdir(parents=True, exist_ok=True)
    # gpg refuses (or warns about) a group- or world-readable home; the secret lives here.
    store.chmod(0o700)
    conf = store / "gpg.conf"
    if not conf.exists() or conf.read_text() != GPG_CONF:
        write_text(conf, GPG_CONF)


def self_signature_digests(key: SigningKey) -> set[int]:
    """The hash algorithms of the key's self-signatures (binding and user id certifications)."""
    exported = run.run(gpg_cmdline(key.gnupghome, "--export", key.fingerprint)).stdout
    with_env = run.run(gpg_cmdline(key.gnupghome, "--list-packets"), input=exported)
    digests: set[int] = set()
    for line in with_env.stdout.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("digest algo "):
            digests.add(int(line.split()[2].rstrip(",")))
    return digests


def require_strong_digests(key: SigningKey) -> None:
    """Refuse a key whose bindings use SHA-1 or weaker: Debian 13's apt (sqv) rejects them."""
    weak = self_signature_digests(key) - STRONG_DIGESTS
    if weak:
        raise PfbuildError(
            f"signing key {key.fingerprint} has self-signatures with weak digests {sorted(weak)}",
            "Debian 13's apt verifies with sqv, which refuses SHA-1 key bindings",
            "re-certify the key with SHA-256 or stronger (gpg --cert-digest-algo SHA512 "
            "--quick-set-expire) or let pfbuild generate a key",
        )


def _configured_home_key(gnupghome: Path, fingerprint: str) -> SigningKey:
    home = gnupghome.expanduser().absolute()
    fpr = fingerprint.upper()
    try:
        present = _secret_fingerprints(home)
    except CommandError:
        present = []
    if fpr not in present:
        raise PfbuildError(
            f"secret key {fpr} is not in {home}",
            "pfbuild signs with the configured key and will not fall back to another",
            "check --gnupghome and --signing-key (gpg --list-secret-keys)",
        )
    return SigningKey(fpr, home, local=False)


def _imported_file_key(ctx: Context, key_file: Path, fingerprint: str | None) -> SigningKey:
    key_file = key_file.expanduser().absolute()
    if not key_file.is_file():
        raise PfbuildError(f"signing key file {key_file} does not exist")
    store = ctx.signing_dir
    _prepare_store(store)
    try:
        run.run(gpg_cmdline(store, "--import", key_file))
    except CommandError:
        raise PfbuildError(
            f"gpg cannot import the signing key file {key_file}",
            "it is not an OpenPGP secret key (armored or binary)",
            "export it with `gpg --export-secret-keys --armor FPR`",
        ) from None
    present = _secret_fingerprints(store)
    wanted = fingerprint.upper() if fingerprint else None
    file_fprs = _file_fingerprints(store, key_file)
    candidates = [f for f in present if f in file_fprs and (wanted is None or f == wanted)]
    if len(candidates) != 1:
        raise PfbuildError(
            f"signing key file {key_file} does not hold exactly one usable secret key",
            f"found {len(candidates)} matching secret key(s)",
            "pass --signing-key FINGERPRINT to pick one, or use a file with one secret key",
        )
    return SigningKey(candidates[0], store, local=False)


def _file_fingerprints(store: Path, key_file: Path) -> set[str]:
    # Always name the homedir: gpg must not touch (or start an agent for) the user's own.
    text = run.output(gpg_cmdline(store, "--with-colons", "--show-keys", key_file))
    return {line.split(":")[9].upper() for line in text.splitlines() if line.startswith("fpr:")}


def _local_key(ctx: Context, config: SigningConfig) -> SigningKey:
    store = ctx.signing_dir
    _prepare_store(store)
    record = store / FINGERPRINT_FILE
    if record.is_file():
        fpr = record.read_text().strip()
        if fpr in _secret_fingerprints(store):
            return SigningKey(fpr, store, local=True)
        raise PfbuildError(
            f"the workspace key store {store} lost its secret key {fpr}",
            "the fingerprint is recorded but gpg has no such secret key",
            f"restore the store from a backup, or remove {store} to generate a new key "
            "(clients must then trust the new public key)",
        )
    before = set(_secret_fingerprints(store))
    run.run(generate_key_cmdline(store, config.algo))
    made = [f for f in _secret_fingerprints(store) if f not in before]
    if len(made) != 1:
        raise PfbuildError("gpg did not generate exactly one new key", f"found {len(made)}")
    write_text(record, made[0] + "\n")
    return SigningKey(made[0], store, local=True)


def ensure_signing_key(ctx: Context, config: SigningConfig) -> SigningKey:
    """The key to sign with: the configured one, or the workspace's local key (made once)."""
    if config.key_file is not None:
        key = _imported_file_key(ctx, config.key_file, config.fingerprint)
    elif config.fingerprint is not None:
        default_home = Path(os.environ.get("GNUPGHOME", "~/.gnupg"))
        key = _configured_home_key(config.gnupghome or default_home, config.fingerprint)
    else:
        key = _local_key(ctx, config)
        log.warning(
            "signing with the LOCAL key %s generated in %s: fine for tests and local use; "
            "configure a real key (--signing-key/--gnupghome or --signing-key-file) for "
            "repositories others trust",
            key.fingerprint,
            key.gnupghome,
        )
    require_strong_digests(key)
    return key


def export_public_key(key: SigningKey, dest: Path) -> None:
    """Write the armored public key (never a secret one) to `dest`, atomically."""
    proc = run.run(gpg_cmdline(key.gnupghome, "--armor", "--export", key.fingerprint))
    text = proc.stdout.decode()
    # A belt-and-braces check on the one artifact that leaves the key store.
    if "PRIVATE KEY" in text or "BEGIN PGP PUBLIC KEY BLOCK" not in text:
        raise PfbuildError(f"gpg exported something other than the public key {key.fingerprint}")
    with atomic_file(dest) as tmp:
        tmp.write_text(text)
        tmp.chmod(0o644)


def stop_agent(ctx: Context, key: SigningKey) -> None:
    """Stop the gpg-agent of the workspace store, so no daemon outlives the run."""
    # A configured GNUPGHOME is the user's: their agent may hold a cached passphrase.
    if key.gnupghome == ctx.signing_dir:
        run.run(["gpgconf", "--homedir", key.gnupghome, "--kill", "gpg-agent"], check=False)
