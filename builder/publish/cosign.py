"""cosign for the images: command lines, where cosign runs, the key pair, sign and verify.

cosign signs with a key pair, never the keyless flow (Fulcio and Rekor are on the internet), and
uploads nothing to a transparency log: `--tlog-upload=false` when signing,
`--insecure-ignore-tlog=true` when verifying. What makes `cosign.pub` trustworthy is not a log
but the release's provenance, signed by the repository key, which names its sha256.

Without a registry, what is signed is the image's config digest as a blob (its ID as
`docker image inspect --format '{{.Id}}'` prints it); after `--registry` pushes, the image itself
(`cosign sign REF@DIGEST`). Debian 13 packages cosign, Debian 12 does not: pfbuild runs the host's
cosign when there is one, else the one in `pfbuild-cosign`, an image made from pfbuild's trixie
base image with apt, which checks the archive's signatures.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import docker.errors

import docker
from builder.bootstrap.buildenv import ensure_base_image
from builder.core import run
from builder.core.atomic import pid_temp_dir
from builder.core.context import Context
from builder.core.engine import build_tool_image, docker_client, tool_dockerfile
from builder.core.errors import CommandError, PfbuildError
from builder.core.lock import resource_lock
from builder.model.distro import TRIXIE

log = logging.getLogger("pfbuild")

COSIGN_IMAGE_REPO = "pfbuild-cosign"
# The tool image made last: what `pfbuild verify` runs when the host has no cosign.
COSIGN_IMAGE_LATEST = f"{COSIGN_IMAGE_REPO}:latest"
COSIGN_DOCKERFILE = tool_dockerfile("cosign")
# cosign's own variable; an empty password is allowed (local trial runs), CI sets a real one.
PASSWORD_ENV = "COSIGN_PASSWORD"  # noqa: S105  # the variable's name, not a password
KEY_FILE_ENV = "PFBUILD_COSIGN_KEY_FILE"
PRIVATE_KEY_NAME = "cosign.key"
PUBLIC_KEY_NAME = "cosign.pub"
IMPORTED_PUBLIC_NAME = "imported.pub"
TIMEOUT = 300.0
# Where the tool image sees the folders of the files a command line names.
MOUNT_ROOT = "/pfbuild"


@dataclass(frozen=True)
class Output:
    """A file cosign writes (its folder is mounted writable in the tool image)."""

    path: Path


Arg = str | Path | Output


# ---- command lines ----------------------------------------------------------------------------


def generate_key_pair_cmdline(prefix: Path) -> list[Arg]:
    """Make `<prefix>.key` (encrypted with COSIGN_PASSWORD) and `<prefix>.pub`."""
    return ["cosign", "generate-key-pair", "--output-key-prefix", Output(prefix)]


def public_key_cmdline(key: Path, out: Path) -> list[Arg]:
    """The public half of a cosign private key (also proves the password opens it)."""
    return ["cosign", "public-key", "--key", key, "--outfile", Output(out)]


def sign_blob_cmdline(key: Path, blob: Path, signature: Path) -> list[Arg]:
    """Sign a file with the key; the base64 signature goes to `signature`, nothing to a log."""
    return [
        "cosign", "sign-blob", "--yes", "--key", key, "--tlog-upload=false",
        "--output-signature", Output(signature), blob,
    ]  # fmt: skip


def verify_blob_cmdline(public_key: Path, signature: Path, blob: Path) -> list[Arg]:
    """Check a blob's signature with the public key alone (no transparency log)."""
    return [
        "cosign", "verify-blob", "--key", public_key, "--signature", signature,
        "--insecure-ignore-tlog=true", blob,
    ]  # fmt: skip


def sign_image_cmdline(key: Path, ref: str) -> list[Arg]:
    """Sign a pushed image by digest; the signature goes to its registry, nothing to a log."""
    return ["cosign", "sign", "--yes", "--key", key, "--tlog-upload=false", ref]


def verify_image_cmdline(public_key: Path, ref: str) -> list[Arg]:
    """Check a pushed image's signatures in its registry with the public key alone."""
    return ["cosign", "verify", "--key", public_key, "--insecure-ignore-tlog=true", ref]


def image_id_blob(image_id: str) -> bytes:
    """What is signed for a local image: its ID as `docker image inspect -f '{{.Id}}'` prints it."""
    digest = image_id.removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise PfbuildError(f"{image_id!r} is not an image ID (sha256:<64 hex digits>)")
    return f"sha256:{digest}\n".encode()


def host_argv(cmd: Sequence[Arg]) -> list[str]:
    """The command line as the host's cosign gets it."""
    return [str(a.path if isinstance(a, Output) else a) for a in cmd]


@dataclass(frozen=True)
class ContainerCall:
    """A command line rewritten for the tool image: its arguments and the folders it mounts."""

    argv: list[str]
    volumes: dict[str, str]
    read_only: list[str]


def container_call(cmd: Sequence[Arg]) -> ContainerCall:
    """Mount each named file's folder (read-only unless cosign writes there); rewrite its path."""
    mounts: dict[Path, str] = {}
    writable: set[Path] = set()
    argv = []
    for arg in cmd:
        if isinstance(arg, str):
            argv.append(arg)
            continue
        path = arg.path if isinstance(arg, Output) else arg
        folder = path.absolute().parent
        inside = mounts.setdefault(folder, f"{MOUNT_ROOT}/{len(mounts)}")
        if isinstance(arg, Output):
            writable.add(folder)
        argv.append(f"{inside}/{path.name}")
    return ContainerCall(
        argv,
        {str(folder): inside for folder, inside in mounts.items()},
        [str(folder) for folder in mounts if folder not in writable],
    )


def cosign_error(output: str) -> str:
    """cosign's reason in one line (its `Error:` line, else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    return lines[-1] if lines else "no output"


# ---- where cosign runs ------------------------------------------------------------------------


def password_env(environ: Mapping[str, str]) -> dict[str, str]:
    """COSIGN_PASSWORD always set: unset, cosign would prompt for it on a terminal."""
    return {PASSWORD_ENV: environ.get(PASSWORD_ENV, "")}


class Cosign(ABC):
    """One way to run cosign: the host's binary or the tool image."""

    where: str

    def run(
        self, cmd: Sequence[Arg], *, check: bool = True, accept: Collection[int] = (0,)
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one cosign command line; stdout and stderr together in `stdout`."""
        return self._run(cmd, password_env(os.environ), check=check, accept=accept)

    def for_registry(self) -> Cosign:
        """The same cosign, able to reach registries (network and `docker login` credentials)."""
        return self

    @abstractmethod
    def _run(
        self, cmd: Sequence[Arg], env: Mapping[str, str], *, check: bool, accept: Collection[int]
    ) -> subprocess.CompletedProcess[bytes]: ...


class HostCosign(Cosign):
    """The cosign on PATH (Debian 13 packages it; `pfbuild doctor --fix` installs it there)."""

    where = "host"

    @staticmethod
    def is_available() -> bool:
        """True when the host has a cosign on PATH."""
        return shutil.which("cosign") is not None

    def _run(
        self, cmd: Sequence[Arg], env: Mapping[str, str], *, check: bool, accept: Collection[int]
    ) -> subprocess.CompletedProcess[bytes]:
        proc = run.run(
            host_argv(cmd), env=env, input=b"", check=check, accept=accept, timeout=TIMEOUT
        )
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout + proc.stderr)


class ContainerCosign(Cosign):
    """cosign in the tool image, one container per command, no network unless a registry."""

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        *,
        network: str = "none",
        docker_config: Path | None = None,
    ) -> None:
        self.client = client
        self.image = image
        self.network = network
        self.docker_config = docker_config
        self.where = f"image {image}"

    def for_registry(self) -> Cosign:
        config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
        return ContainerCosign(
            self.client,
            self.image,
            network="host",
            docker_config=config if (config / "config.json").is_file() else None,
        )

    def _run(
        self, cmd: Sequence[Arg], env: Mapping[str, str], *, check: bool, accept: Collection[int]
    ) -> subprocess.CompletedProcess[bytes]:
        call = container_call(cmd)
        volumes, read_only = dict(call.volumes), list(call.read_only)
        if self.docker_config is not None:
            # `docker login` credentials, for a registry that wants them.
            volumes[str(self.docker_config)] = "/root/.docker"
            read_only.append(str(self.docker_config))
        return run.run_in_image(
            self.client, self.image, call.argv, check=check, accept=accept, timeout=TIMEOUT,
            network=self.network, volumes=volumes, read_only=read_only, environment=env,
        )  # fmt: skip


def cosign_image_tag(base_image_id: str) -> str:
    """The tool image's tag: a key of its inputs (the base image's ID and the Dockerfile)."""
    key = hashlib.sha256(f"{base_image_id}\n{COSIGN_DOCKERFILE}".encode()).hexdigest()[:16]
    return f"{COSIGN_IMAGE_REPO}:{key}"


def ensure_cosign_image(ctx: Context, client: docker.DockerClient) -> str:
    """The cosign tool image, made once per trixie base image (apt checks what it installs)."""
    base = ensure_base_image(ctx, TRIXIE.with_archive(ctx.archive_override(TRIXIE.name)))
    tag = cosign_image_tag(str(client.images.get(base).id))
    with resource_lock(ctx.resource_lock("cosign-image"), "the cosign tool image"):
        try:
            image = client.images.get(tag)
        except docker.errors.ImageNotFound:
            log.info("making the cosign tool image %s from %s", tag, base)
            image = build_tool_image(client, tag, base, "cosign")
    repo, _, name = COSIGN_IMAGE_LATEST.partition(":")
    image.tag(repo, name)
    return tag


def cosign_for_signing(ctx: Context) -> Cosign:
    """The host's cosign, else the tool image's (made from the trixie base image if needed)."""
    if HostCosign.is_available():
        return HostCosign()
    client = docker_client(ctx)
    return ContainerCosign(client, ensure_cosign_image(ctx, client))


def cosign_for_verifying(client: Callable[[], docker.DockerClient]) -> Cosign:
    """A consumer's cosign: the host's, else a tool image pfbuild made on this machine."""
    if HostCosign.is_available():
        return HostCosign()
    engine = client()
    with suppress(docker.errors.ImageNotFound):
        engine.images.get(COSIGN_IMAGE_LATEST)
        return ContainerCosign(engine, COSIGN_IMAGE_LATEST)
    raise PfbuildError(
        "there is no cosign to run",
        f"the host has no cosign on PATH and the engine no {COSIGN_IMAGE_LATEST} image",
        "install cosign (Debian 13: apt install cosign), or run where pfbuild made the images",
    )


# ---- the key pair -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CosignKey:
    """A cosign private key (encrypted with COSIGN_PASSWORD) and its public half."""

    private: Path
    public: Path
    local: bool


def _command_error(exc: CommandError) -> str:
    return cosign_error(exc.tail)


def _imported_key(ctx: Context, cosign: Cosign, key_file: Path) -> CosignKey:
    key_file = key_file.expanduser().absolute()
    if not key_file.is_file():
        raise PfbuildError(
            f"cosign key file {key_file} does not exist",
            fix=f"set {KEY_FILE_ENV} (or --cosign-key) to a key made by `cosign generate-key-pair`",
        )
    store = _prepare_store(ctx)
    public = store / IMPORTED_PUBLIC_NAME
    try:
        cosign.run(public_key_cmdline(key_file, public))
    except CommandError as exc:
        raise PfbuildError(
            f"cosign cannot open the key file {key_file}",
            _command_error(exc),
            f"check that it is a cosign private key and that {PASSWORD_ENV} is its password",
        ) from None
    return CosignKey(key_file, public, local=False)


def _prepare_store(ctx: Context) -> Path:
    store = ctx.cosign_dir
    store.mkdir(parents=True, exist_ok=True)
    store.chmod(0o700)  # the private key lives here
    return store


def _local_key(ctx: Context, cosign: Cosign) -> CosignKey:
    store = _prepare_store(ctx)
    private, public = store / PRIVATE_KEY_NAME, store / PUBLIC_KEY_NAME
    present = [p.name for p in (private, public) if p.is_file()]
    if len(present) == 1:
        raise PfbuildError(
            f"the cosign key store {store} holds {present[0]} without its other half",
            "a key pair is kept whole or not at all",
            f"restore the store from a backup, or remove {store} to make a new pair",
        )
    if not present:
        log.info("making the local cosign key pair in %s", store)
        with pid_temp_dir(store, "new-") as tmp:
            cosign.run(generate_key_pair_cmdline(tmp / "cosign"))
            # The public half last: both present means the pair is whole.
            os.replace(tmp / PRIVATE_KEY_NAME, private)
            os.replace(tmp / PUBLIC_KEY_NAME, public)
    log.warning(
        "signing images with the LOCAL cosign key %s: fine for tests and local use; set %s "
        "and %s for images others trust",
        public,
        KEY_FILE_ENV,
        PASSWORD_ENV,
    )
    return CosignKey(private, public, local=True)


def ensure_cosign_key(ctx: Context, cosign: Cosign, key_file: Path | None = None) -> CosignKey:
    """The configured cosign key file, else the workspace's local pair (made once)."""
    # The image actions of two variants sign side by side: one pair, one public key file.
    with resource_lock(ctx.resource_lock("cosign-key"), "the cosign key store"):
        if key_file is not None:
            return _imported_key(ctx, cosign, key_file)
        return _local_key(ctx, cosign)


# ---- signing and verifying --------------------------------------------------------------------


def sign_blob(cosign: Cosign, key: CosignKey, blob: bytes, scratch: Path) -> bytes:
    """cosign's base64 signature of `blob` with `key`."""
    with pid_temp_dir(scratch, "cosign-") as tmp:
        (tmp / "blob").write_bytes(blob)
        try:
            cosign.run(sign_blob_cmdline(key.private, tmp / "blob", tmp / "blob.sig"))
        except CommandError as exc:
            raise PfbuildError(
                f"cosign cannot sign with {key.private}",
                _command_error(exc),
                f"check that {PASSWORD_ENV} is the key's password",
            ) from None
        return (tmp / "blob.sig").read_bytes()


def verify_blob(
    cosign: Cosign, public_key: bytes, signature: bytes, blob: bytes, scratch: Path
) -> None:
    """Refuse unless cosign verifies `signature` over `blob` with `public_key`."""
    with pid_temp_dir(scratch, "cosign-") as tmp:
        for name, data in (("cosign.pub", public_key), ("blob.sig", signature), ("blob", blob)):
            (tmp / name).write_bytes(data)
        cmd = verify_blob_cmdline(tmp / "cosign.pub", tmp / "blob.sig", tmp / "blob")
        proc = cosign.run(cmd, check=False)
    output = proc.stdout.decode(errors="replace")
    if proc.returncode != 0 or "Verified OK" not in output:
        raise PfbuildError(
            "cosign verify-blob refuses the signature",
            f"{cosign_error(output)} (exit status {proc.returncode})",
        )


def sign_image(cosign: Cosign, key: CosignKey, ref: str) -> None:
    """Sign a pushed image (REF@DIGEST) in its registry, then check it as a consumer would."""
    if "@sha256:" not in ref:
        raise PfbuildError(f"{ref} is not a reference by digest", fix="sign REPO@sha256:DIGEST")
    registry = cosign.for_registry()
    try:
        registry.run(sign_image_cmdline(key.private, ref))
        registry.run(verify_image_cmdline(key.public, ref))
    except CommandError as exc:
        raise PfbuildError(
            f"cosign cannot sign {ref}",
            _command_error(exc),
            f"check {PASSWORD_ENV} and the registry login (docker login)",
        ) from None
    log.info("signed %s with cosign (%s)", ref, key.public)
