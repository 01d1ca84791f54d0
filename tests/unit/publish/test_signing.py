"""The signing key store: generated local keys, configured keys, public export only."""

from __future__ import annotations

import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.core import run
from builder.core.context import Context, prepare_workspace
from builder.core.errors import PfbuildError
from builder.publish import signing
from builder.publish.signing import SigningConfig, SigningKey, ensure_signing_key

# The key store is gpg's: every test but the command line and the config check runs it.
pytestmark = pytest.mark.integration


@pytest.fixture
def local_key(ctx: Context) -> Iterator[SigningKey]:
    """The workspace's generated key; its gpg-agent is stopped afterwards."""
    key = ensure_signing_key(ctx, SigningConfig())
    yield key
    signing.stop_agent(ctx, key)


def _packets(data: bytes) -> str:
    # A throwaway homedir: gpg must not touch (or start an agent for) the user's ~/.gnupg.
    with tempfile.TemporaryDirectory(prefix="pfbuild-packets-") as home:
        cmd = signing.gpg_cmdline(Path(home), "--list-packets")
        return run.run(cmd, input=data).stdout.decode()


@pytest.mark.unit
def test_generate_key_cmdline() -> None:
    assert signing.generate_key_cmdline(Path("/ws/signing"), "ed25519") == [
        "gpg",
        "--homedir",
        "/ws/signing",
        "--batch",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-generate-key",
        signing.LOCAL_KEY_UID,
        "ed25519",
        "sign",
        "never",
    ]


def test_local_key_is_modern_private_to_the_workspace_and_reused(
    ctx: Context, local_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    assert local_key.local
    assert local_key.gnupghome == ctx.signing_dir
    assert stat.S_IMODE(ctx.signing_dir.stat().st_mode) == 0o700
    # Debian 13's apt (sqv) refuses SHA-1 bindings: only SHA-256/384/512 self-signatures.
    digests = signing.self_signature_digests(local_key)
    assert digests and digests <= {8, 9, 10}
    exported = run.run(signing.gpg_cmdline(ctx.signing_dir, "--export", local_key.fingerprint))
    assert "algo 22" in _packets(exported.stdout)  # EdDSA
    caplog.set_level("WARNING", logger="pfbuild")
    again = ensure_signing_key(ctx, SigningConfig())
    assert again == local_key
    assert "LOCAL key" in caplog.text


def test_rsa4096_can_be_chosen(ctx: Context) -> None:
    key = ensure_signing_key(ctx, SigningConfig(algo="rsa4096"))
    try:
        exported = run.run(signing.gpg_cmdline(ctx.signing_dir, "--export", key.fingerprint))
        packets = _packets(exported.stdout)
        assert "algo 1," in packets and "pkey[0]: [4096 bits]" in packets
    finally:
        signing.stop_agent(ctx, key)


def test_export_writes_only_the_public_key(
    ctx: Context, local_key: SigningKey, tmp_path: Path
) -> None:
    dest = tmp_path / "out" / "pfbuild.asc"
    signing.export_public_key(local_key, dest)
    text = dest.read_text()
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    packets = _packets(dest.read_bytes())
    assert ":public key packet:" in packets
    assert "secret" not in packets
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


def test_a_configured_key_must_be_in_its_gnupghome(ctx: Context, local_key: SigningKey) -> None:
    config = SigningConfig(fingerprint=local_key.fingerprint, gnupghome=ctx.signing_dir)
    assert ensure_signing_key(ctx, config) == SigningKey(
        local_key.fingerprint, ctx.signing_dir, local=False
    )
    missing = SigningConfig(fingerprint="B" * 40, gnupghome=ctx.signing_dir)
    with pytest.raises(PfbuildError, match=f"secret key {'B' * 40} is not in"):
        ensure_signing_key(ctx, missing)


def test_a_key_file_is_imported_into_the_workspace_store(
    ctx: Context, local_key: SigningKey, tmp_path: Path
) -> None:
    # A file of a secret key, as an operator would hand it over.
    secret = run.run(
        signing.gpg_cmdline(ctx.signing_dir, "--export-secret-keys", local_key.fingerprint)
    ).stdout
    key_file = tmp_path / "repo-key.gpg"
    key_file.write_bytes(secret)
    other = Context(workspace=prepare_workspace(tmp_path / "other"))
    key = ensure_signing_key(other, SigningConfig(key_file=key_file))
    try:
        assert key == SigningKey(local_key.fingerprint, other.signing_dir, local=False)
    finally:
        signing.stop_agent(other, key)


def test_a_key_with_sha1_bindings_is_refused(ctx: Context, tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    run.run(
        [
            *signing.gpg_cmdline(home, "--pinentry-mode", "loopback", "--passphrase", ""),
            "--cert-digest-algo",
            "SHA1",
            "--quick-generate-key",
            "weak <weak@pfbuild.invalid>",
            "ed25519",
            "sign",
            "never",
        ]
    )
    fpr = signing._secret_fingerprints(home)[0]
    try:
        with pytest.raises(PfbuildError, match="weak digests"):
            ensure_signing_key(ctx, SigningConfig(fingerprint=fpr, gnupghome=home))
    finally:
        run.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"fingerprint": "DEADBEEF"}, "not a full fingerprint"),
        ({"gnupghome": Path("/g")}, "without the fingerprint"),
        ({"gnupghome": Path("/g"), "key_file": Path("/k"), "fingerprint": "A" * 40}, "both"),
        ({"algo": "dsa1024"}, "unknown key algorithm"),
    ],
)
@pytest.mark.unit
def test_signing_config_is_validated(config: dict[str, object], message: str) -> None:
    with pytest.raises(PfbuildError, match=message):
        SigningConfig(**config)  # type: ignore[arg-type]  # the dict mixes the field types
