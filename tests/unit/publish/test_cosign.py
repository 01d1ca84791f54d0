"""cosign's command lines, where it runs and the key pair, with cosign and docker replaced."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from builder.core import run as core_run
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.publish import cosign
from builder.publish.cosign import (
    COSIGN_IMAGE_LATEST,
    ContainerCosign,
    HostCosign,
    Output,
    container_call,
    cosign_error,
    cosign_for_verifying,
    cosign_image_tag,
    ensure_cosign_key,
    generate_key_pair_cmdline,
    image_id_blob,
    password_env,
    sign_blob,
    sign_blob_cmdline,
    sign_image,
    sign_image_cmdline,
    verify_blob,
    verify_blob_cmdline,
    verify_image_cmdline,
)
from tests.fixtures.cosign import FAKE_SIGNATURE, FakeCosign

pytestmark = pytest.mark.unit

ID = "sha256:" + "ab" * 32
REF = "127.0.0.1:5000/pfbuild-postfix@sha256:" + "cd" * 32


def test_command_lines_use_a_key_and_no_transparency_log(tmp_path: Path) -> None:
    key, pub, blob, sig = (tmp_path / n for n in ("cosign.key", "cosign.pub", "blob", "blob.sig"))
    assert sign_blob_cmdline(key, blob, sig) == [
        "cosign", "sign-blob", "--yes", "--key", key, "--tlog-upload=false",
        "--output-signature", Output(sig), blob,
    ]  # fmt: skip
    assert verify_blob_cmdline(pub, sig, blob) == [
        "cosign", "verify-blob", "--key", pub, "--signature", sig,
        "--insecure-ignore-tlog=true", blob,
    ]  # fmt: skip
    assert sign_image_cmdline(key, REF) == [
        "cosign", "sign", "--yes", "--key", key, "--tlog-upload=false", REF,
    ]  # fmt: skip
    assert verify_image_cmdline(pub, REF) == [
        "cosign", "verify", "--key", pub, "--insecure-ignore-tlog=true", REF,
    ]  # fmt: skip
    assert generate_key_pair_cmdline(tmp_path / "cosign") == [
        "cosign", "generate-key-pair", "--output-key-prefix", Output(tmp_path / "cosign"),
    ]  # fmt: skip


def test_the_blob_of_an_image_is_its_id_as_docker_prints_it() -> None:
    assert image_id_blob(ID) == f"{ID}\n".encode()
    assert image_id_blob(ID.removeprefix("sha256:")) == f"{ID}\n".encode()
    for bad in ("sha256:abc", "sha256:" + "AB" * 32, "sha256:" + "ab" * 32 + "\n", ""):
        with pytest.raises(PfbuildError, match="is not an image ID"):
            image_id_blob(bad)


def test_in_the_tool_image_each_file_folder_is_mounted_and_only_outputs_are_writable(
    tmp_path: Path,
) -> None:
    keys, work = tmp_path / "keys", tmp_path / "work"
    call = container_call(sign_blob_cmdline(keys / "cosign.key", work / "blob", work / "b.sig"))
    assert call.argv == [
        "cosign", "sign-blob", "--yes", "--key", "/pfbuild/0/cosign.key", "--tlog-upload=false",
        "--output-signature", "/pfbuild/1/b.sig", "/pfbuild/1/blob",
    ]  # fmt: skip
    assert call.volumes == {str(keys): "/pfbuild/0", str(work): "/pfbuild/1"}
    assert call.read_only == [str(keys)]
    assert container_call(["cosign", "sign", REF]).volumes == {}


def test_the_host_gets_plain_paths(tmp_path: Path) -> None:
    cmd = sign_blob_cmdline(tmp_path / "k", tmp_path / "b", tmp_path / "s")
    assert cosign.host_argv(cmd)[-3:] == [
        "--output-signature",
        str(tmp_path / "s"),
        str(tmp_path / "b"),
    ]


def test_the_password_is_always_set_so_cosign_never_prompts() -> None:
    assert password_env({}) == {"COSIGN_PASSWORD": ""}
    assert password_env({"COSIGN_PASSWORD": "pw", "OTHER": "x"}) == {"COSIGN_PASSWORD": "pw"}


def test_cosigns_reason_is_its_error_line() -> None:
    output = (
        "WARNING: Skipping tlog verification is an insecure practice\n"
        "Error: invalid signature when validating ASN.1 encoded signature\n"
        "main.go:74: error during command execution: invalid signature\n"
    )
    assert cosign_error(output) == "invalid signature when validating ASN.1 encoded signature"
    assert cosign_error("one\nlast\n") == "last"
    assert cosign_error("") == "no output"


def test_the_tool_image_tag_is_a_key_of_its_inputs() -> None:
    first = cosign_image_tag("sha256:" + "1" * 64)
    assert first.startswith("pfbuild-cosign:") and len(first.split(":")[1]) == 16
    assert cosign_image_tag("sha256:" + "2" * 64) != first


# ---- the container backend, with docker replaced ----------------------------------------------


class FakeContainer:
    name = "fake"
    id = "fake"

    def wait(self, timeout: float) -> dict[str, int]:
        return {"StatusCode": 0}

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        return b"Verified OK\n"

    def remove(self, force: bool, v: bool) -> None:
        pass


class FakeEngine:
    def __init__(self, images: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.runs: list[tuple[str, list[str], dict[str, Any]]] = []
        self.present = images
        self.containers = self
        self.images = self

    def run(self, image: str, argv: list[str], **options: Any) -> FakeContainer:
        self.runs.append((image, argv, options))
        return FakeContainer()

    def get(self, ref: str) -> object:
        if ref not in self.present:
            raise docker.errors.ImageNotFound(ref)
        return object()


def test_the_tool_image_runs_without_network_and_with_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "secret")
    engine = FakeEngine()
    tool = ContainerCosign(engine, "pfbuild-cosign:x")  # type: ignore[arg-type]
    proc = tool.run(verify_blob_cmdline(tmp_path / "k.pub", tmp_path / "s", tmp_path / "b"))
    assert proc.stdout == b"Verified OK\n"
    ((image, argv, options),) = engine.runs
    assert image == "pfbuild-cosign:x" and argv[:2] == ["cosign", "verify-blob"]
    assert options["network_mode"] == "none"
    assert options["environment"] == {"COSIGN_PASSWORD": "secret"}
    assert options["volumes"] == {str(tmp_path): {"bind": "/pfbuild/0", "mode": "ro"}}


def test_for_a_registry_the_tool_image_gets_the_network_and_the_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    engine = FakeEngine()
    tool = ContainerCosign(engine, "pfbuild-cosign:x").for_registry()  # type: ignore[arg-type]
    tool.run(sign_image_cmdline(tmp_path / "keys" / "cosign.key", REF))
    ((_image, argv, options),) = engine.runs
    assert argv[-1] == REF and options["network_mode"] == "host"
    assert options["volumes"][str(tmp_path)] == {"bind": "/root/.docker", "mode": "ro"}


def test_a_consumer_runs_the_hosts_cosign_else_the_tool_image_else_is_told_how(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(HostCosign, "is_available", staticmethod(lambda: True))
    assert isinstance(cosign_for_verifying(lambda: pytest.fail("no engine needed")), HostCosign)
    monkeypatch.setattr(HostCosign, "is_available", staticmethod(lambda: False))
    found = cosign_for_verifying(lambda: FakeEngine({COSIGN_IMAGE_LATEST}))  # type: ignore[arg-type,return-value]
    assert isinstance(found, ContainerCosign) and found.image == COSIGN_IMAGE_LATEST
    with pytest.raises(PfbuildError, match="there is no cosign to run") as info:
        cosign_for_verifying(lambda: FakeEngine())  # type: ignore[arg-type,return-value]
    assert "apt install cosign" in info.value.fix


# ---- the key pair and signing, with cosign replaced -------------------------------------------


def test_the_local_key_pair_is_made_once(ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    tool = FakeCosign()
    key = ensure_cosign_key(ctx, tool)
    assert (key.private, key.public, key.local) == (
        ctx.cosign_dir / "cosign.key", ctx.cosign_dir / "cosign.pub", True,
    )  # fmt: skip
    assert ensure_cosign_key(ctx, tool) == key
    assert [c[1] for c in tool.calls] == ["generate-key-pair"]
    assert ctx.cosign_dir.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in ctx.cosign_dir.iterdir()) == ["cosign.key", "cosign.pub"]
    assert "LOCAL cosign key" in caplog.text and "PFBUILD_COSIGN_KEY_FILE" in caplog.text
    key.private.unlink()
    with pytest.raises(PfbuildError, match=r"holds cosign\.pub without its other half"):
        ensure_cosign_key(ctx, tool)


def test_a_key_file_is_opened_with_cosign_or_refused(ctx: Context, tmp_path: Path) -> None:
    key_file = tmp_path / "ci.key"
    key_file.write_bytes(b"ENCRYPTED SIGSTORE PRIVATE KEY")
    key = ensure_cosign_key(ctx, FakeCosign(), key_file)
    assert (key.private, key.public.read_bytes(), key.local) == (key_file, b"PUBLIC KEY", False)
    refusing = FakeCosign(1, b"Error: decrypt: encrypted: decryption failed\n")
    with pytest.raises(PfbuildError, match="cosign cannot open the key file") as info:
        ensure_cosign_key(ctx, refusing, key_file)
    assert info.value.why == "decrypt: encrypted: decryption failed"
    assert "COSIGN_PASSWORD" in info.value.fix
    with pytest.raises(PfbuildError, match="does not exist"):
        ensure_cosign_key(ctx, FakeCosign(), tmp_path / "missing.key")


def test_sign_and_verify_a_blob(ctx: Context, tmp_path: Path) -> None:
    tool = FakeCosign()
    key = ensure_cosign_key(ctx, tool)
    scratch = tmp_path / "scratch"
    assert sign_blob(tool, key, image_id_blob(ID), scratch) == FAKE_SIGNATURE
    verify_blob(tool, b"PUBLIC KEY", FAKE_SIGNATURE, image_id_blob(ID), scratch)
    assert [c[1] for c in tool.calls] == ["generate-key-pair", "sign-blob", "verify-blob"]
    assert list(scratch.iterdir()) == []  # the blob and signature files are gone
    refusing = FakeCosign(1, b"Error: invalid signature when validating ASN.1 encoded signature\n")
    with pytest.raises(PfbuildError, match="cosign verify-blob refuses the signature") as info:
        verify_blob(refusing, b"PUBLIC KEY", FAKE_SIGNATURE, image_id_blob(ID), tmp_path)
    assert info.value.why == (
        "invalid signature when validating ASN.1 encoded signature (exit status 1)"
    )
    # An exit status 0 without cosign's verdict is no verdict.
    with pytest.raises(PfbuildError, match="refuses"):
        verify_blob(FakeCosign(0, b""), b"K", FAKE_SIGNATURE, image_id_blob(ID), tmp_path)
    with pytest.raises(PfbuildError, match="cosign cannot sign"):
        sign_blob(FakeCosign(1, b"Error: wrong password\n"), key, b"x", tmp_path)


def test_a_pushed_image_is_signed_by_digest_then_checked(ctx: Context) -> None:
    tool = FakeCosign()
    key = ensure_cosign_key(ctx, tool)
    sign_image(tool, key, REF)
    assert [c[1] for c in tool.registry_calls] == ["sign", "verify"]
    assert tool.registry_calls[0][-1] == REF and str(key.public) in tool.registry_calls[1]
    with pytest.raises(PfbuildError, match="is not a reference by digest"):
        sign_image(tool, key, "127.0.0.1:5000/pfbuild-postfix:debian")


def test_the_host_backend_runs_cosign_with_the_password_and_no_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[bytes]:
        seen.update(options, argv=argv)
        return subprocess.CompletedProcess(argv, 0, b"out\n", b"err\n")

    monkeypatch.setattr(core_run, "run", fake_run)
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    proc = HostCosign().run(["cosign", "public-key", "--key", tmp_path / "k"])
    assert proc.stdout == b"out\nerr\n"
    assert seen["argv"] == ["cosign", "public-key", "--key", str(tmp_path / "k")]
    assert seen["env"] == {"COSIGN_PASSWORD": ""} and seen["input"] == b""
