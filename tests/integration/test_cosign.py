"""cosign for real, in the tool image made from trixie (or the host's): key pair, blob, registry.

Each verdict is cosign's own: `cosign verify-blob` / `cosign verify` run on the command line,
their exit status read here, independent of pfbuild's verify_blob.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from builder.bootstrap.buildenv import ensure_base_image
from builder.core.context import Context, prepare_workspace
from builder.core.engine import docker_client
from builder.core.errors import PfbuildError
from builder.image.build import push_tags, pushed_digests
from builder.model.distro import RESOLUTE, TRIXIE
from builder.publish.cosign import (
    COSIGN_IMAGE_LATEST,
    ContainerCosign,
    Cosign,
    CosignKey,
    cosign_for_verifying,
    ensure_cosign_key,
    image_id_blob,
    sign_blob,
    sign_image,
    verify_blob,
    verify_blob_cmdline,
    verify_image_cmdline,
)
from tests.fixtures.registry import ensure_registry_image, running_registry

pytestmark = pytest.mark.integration

PASSWORD = "trial password"  # noqa: S105  # a test key's, on purpose


def inspect_id(ref: str) -> bytes:
    """The image's ID as a consumer reads it: `docker image inspect --format '{{.Id}}'`."""
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip


def cosign_says(tool: Cosign, public: bytes, signature: bytes, blob: bytes, where: Path) -> int:
    """`cosign verify-blob --key` on these bytes: its exit status (0 only with Verified OK)."""
    where.mkdir(parents=True, exist_ok=True)
    for name, data in (("key.pub", public), ("blob.sig", signature), ("blob", blob)):
        (where / name).write_bytes(data)
    cmd = verify_blob_cmdline(where / "key.pub", where / "blob.sig", where / "blob")
    proc = tool.run(cmd, check=False)
    assert (proc.returncode == 0) == (b"Verified OK" in proc.stdout), proc.stdout
    return proc.returncode


def key_pair(where: Path, tool: Cosign) -> CosignKey:
    return ensure_cosign_key(Context(workspace=prepare_workspace(where)), tool)


def flipped(signature: bytes) -> bytes:
    raw = bytearray(base64.b64decode(signature))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw))


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    return PASSWORD


def test_an_image_id_signed_as_a_blob_verifies_and_nothing_tampered_does(
    shared_ctx: Context, cosign_tool: Cosign, tmp_path: Path, password: str
) -> None:
    trixie = ensure_base_image(shared_ctx, TRIXIE)
    resolute = ensure_base_image(shared_ctx, RESOLUTE)
    client = docker_client(shared_ctx)
    blob = inspect_id(trixie)
    assert image_id_blob(str(client.images.get(trixie).id)) == blob
    key = key_pair(tmp_path / "ws", cosign_tool)
    public = key.public.read_bytes()
    signature = sign_blob(cosign_tool, key, blob, tmp_path)

    assert cosign_says(cosign_tool, public, signature, blob, tmp_path / "genuine") == 0
    verify_blob(cosign_tool, public, signature, blob, tmp_path)

    other = key_pair(tmp_path / "other", cosign_tool).public.read_bytes()
    tampered = {
        "signature": (public, flipped(signature), blob),
        "key": (other, signature, blob),
        "image": (public, signature, inspect_id(resolute)),
    }
    for what, (pub, sig, data) in tampered.items():
        assert cosign_says(cosign_tool, pub, sig, data, tmp_path / what) != 0, what
        with pytest.raises(PfbuildError, match="cosign verify-blob refuses the signature"):
            verify_blob(cosign_tool, pub, sig, data, tmp_path)


def test_the_local_key_pair_is_made_once_encrypted_and_kept_whole(
    cosign_tool: Cosign, tmp_path: Path, password: str
) -> None:
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    first = ensure_cosign_key(ctx, cosign_tool)
    again = ensure_cosign_key(ctx, cosign_tool)
    assert (first.private, first.public, first.local) == (again.private, again.public, True)
    assert first.private.parent == ctx.cosign_dir
    assert ctx.cosign_dir.stat().st_mode & 0o777 == 0o700
    assert b"ENCRYPTED SIGSTORE PRIVATE KEY" in first.private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in first.public.read_bytes()
    first.public.unlink()
    with pytest.raises(PfbuildError, match=r"holds cosign\.key without its other half"):
        ensure_cosign_key(ctx, cosign_tool)


def test_a_key_file_is_used_only_with_its_password(
    cosign_tool: Cosign, tmp_path: Path, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = key_pair(tmp_path / "maker", cosign_tool)
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    imported = ensure_cosign_key(ctx, cosign_tool, made.private)
    assert not imported.local and imported.private == made.private
    assert imported.public.read_bytes() == made.public.read_bytes()
    monkeypatch.setenv("COSIGN_PASSWORD", "not the password")
    with pytest.raises(PfbuildError, match="cosign cannot open the key file"):
        ensure_cosign_key(ctx, cosign_tool, made.private)
    with pytest.raises(PfbuildError, match="does not exist"):
        ensure_cosign_key(ctx, cosign_tool, tmp_path / "missing.key")


def test_a_consumer_without_cosign_uses_the_tool_image(
    shared_ctx: Context, cosign_tool: Cosign
) -> None:
    if not isinstance(cosign_tool, ContainerCosign):
        pytest.skip("this host has its own cosign")
    found = cosign_for_verifying(lambda: docker_client(shared_ctx))
    assert isinstance(found, ContainerCosign) and found.image == COSIGN_IMAGE_LATEST
    client = docker_client(shared_ctx)
    assert client.images.get(COSIGN_IMAGE_LATEST).id == client.images.get(cosign_tool.image).id


def test_a_pushed_image_is_signed_in_its_registry(
    shared_ctx: Context, cosign_tool: Cosign, tmp_path: Path, password: str
) -> None:
    """`--registry`: push, then `cosign sign REF@DIGEST` as the image stage does (it only adds
    the choice of cosign and key); `cosign verify` is the judge."""
    client = docker_client(shared_ctx)
    base = ensure_base_image(shared_ctx, TRIXIE)
    registry_image = ensure_registry_image(client, base)
    with running_registry(client, registry_image, tmp_path / "registry") as registry:
        signed_tag = f"{registry}/pfbuild-cosign-test:signed"
        unsigned_tag = f"{registry}/pfbuild-cosign-test:unsigned"
        client.images.get(base).tag(signed_tag)
        client.images.get(ensure_base_image(shared_ctx, RESOLUTE)).tag(unsigned_tag)
        try:
            push_tags(client, [signed_tag, unsigned_tag])
            (signed,) = pushed_digests(client, str(client.images.get(base).id), [signed_tag])
            (unsigned,) = pushed_digests(
                client, str(client.images.get(unsigned_tag).id), [unsigned_tag]
            )
            # The shared workspace's own key is left alone: a release there signs with it.
            key = key_pair(tmp_path / "ws", cosign_tool)
            sign_image(cosign_tool, key, signed)
            public = key.public
            other = key_pair(tmp_path / "other", cosign_tool).public
            registry_cosign = cosign_tool.for_registry()
            verdicts = {
                (ref, pub.name if pub == public else "other"): registry_cosign.run(
                    verify_image_cmdline(pub, ref), check=False
                ).returncode
                for ref in (signed, unsigned)
                for pub in (public, other)
            }
        finally:
            for tag in (signed_tag, unsigned_tag):
                client.images.remove(tag)
    assert verdicts.pop((signed, "cosign.pub")) == 0
    # Another key, and an image nobody signed: cosign refuses each.
    assert len(verdicts) == 3 and all(code != 0 for code in verdicts.values()), verdicts
