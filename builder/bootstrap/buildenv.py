"""Base build environments per target: an sbuild chroot tarball and a Docker base image."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import docker.errors

import docker
from builder.bootstrap.keyring import ensure_keyring, unshare_readable
from builder.core import run
from builder.core.atomic import atomic_file, remove_path, write_text
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.core.lock import resource_lock
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

BASE_IMAGE_REPO = "pfbuild-base"


@dataclass(frozen=True)
class EnvRecord:
    """What was made, from which inputs, and when: stored beside the environment."""

    target: str
    kind: str
    ref: str
    inputs: str
    created: float

    def is_fresh(self, inputs: str, ctx: Context, now: float) -> bool:
        """Same inputs, younger than the configured age and not older than the run asks."""
        return (
            self.inputs == inputs
            and now - self.created <= ctx.max_age_days * 86400
            and self.created >= ctx.envs_after
        )


def _read_record(path: Path) -> EnvRecord | None:
    try:
        return EnvRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_record(path: Path, record: EnvRecord) -> None:
    write_text(path, json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")


def mmdebstrap_version() -> str:
    """The installed mmdebstrap's version (part of every environment's inputs)."""
    return run.output(["mmdebstrap", "--version"]).strip()


def mmdebstrap_cmdline(
    dist: Distribution, *, variant: str, keyring: Path, output: Path, includes: tuple[str, ...] = ()
) -> list[str]:
    """The mmdebstrap call that makes a tarball of `dist`."""
    cmd = [
        "mmdebstrap",
        f"--variant={variant}",
        "--mode=unshare",
        "--format=tar",
        f"--architectures={dist.arch}",
        f"--components={','.join(dist.components)}",
        f"--keyring={keyring}",
    ]
    packages = (*dist.includes, *includes)
    if packages:
        cmd.append(f"--include={','.join(packages)}")
    return [*cmd, dist.name, str(output), dist.archive_url]


def _inputs_key(kind: str, dist: Distribution, keyring: Path, tool: str) -> str:
    data = json.dumps(
        [kind, asdict(dist), hashlib.sha256(keyring.read_bytes()).hexdigest(), tool],
        sort_keys=True,
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def chroot_tarball_path(ctx: Context, dist: Distribution) -> Path:
    """The sbuild chroot tarball of `dist` in the workspace."""
    return ctx.chroots_dir / f"{dist.name}-{dist.arch}.tar"


def ensure_chroot_tarball(ctx: Context, dist: Distribution, *, now: float | None = None) -> Path:
    """Make (or reuse) the buildd-variant chroot tarball sbuild's unshare mode builds in."""
    now = time.time() if now is None else now
    keyring = ensure_keyring(ctx, dist)
    tarball = chroot_tarball_path(ctx, dist)
    record_path = tarball.with_suffix(".json")
    inputs = _inputs_key("chroot", dist, keyring, mmdebstrap_version())
    # Builds of several recipes for one target need it at once: one makes it, the others wait.
    with resource_lock(ctx.resource_lock(f"chroot-{dist.name}-{dist.arch}"), tarball.name):
        record = _read_record(record_path)
        if record and tarball.is_file() and record.is_fresh(inputs, ctx, now):
            log.info("%s: chroot tarball reused (%s)", dist.name, tarball)
            return tarball
        log.info("%s: making chroot tarball with mmdebstrap", dist.name)
        started = time.monotonic()
        with atomic_file(tarball) as tmp:
            cmd = mmdebstrap_cmdline(
                dist, variant="buildd", keyring=unshare_readable(ctx, keyring), output=tmp
            )
            run.run(cmd, log_path=ctx.logs_dir / f"bootstrap-{dist.name}-chroot.log")
            # sbuild runs as the unprivileged build user: it must be able to read the tarball.
            tmp.chmod(0o644)
        _write_record(record_path, EnvRecord(dist.name, "chroot", str(tarball), inputs, now))
    log.info("%s: chroot tarball ready in %.0f s", dist.name, time.monotonic() - started)
    return tarball


def base_image_tag(dist: Distribution, now: float) -> str:
    """`pfbuild-base:<target>-<YYYYMMDD>`: tagged by target and the day it was made."""
    return f"{BASE_IMAGE_REPO}:{dist.name}-{time.strftime('%Y%m%d', time.gmtime(now))}"


def ensure_base_image(ctx: Context, dist: Distribution, *, now: float | None = None) -> str:
    """Make (or reuse) a minbase image of `dist` imported into the Docker Engine; return its tag."""
    now = time.time() if now is None else now
    client = docker_client(ctx)
    keyring = ensure_keyring(ctx, dist)
    # Checks, images and cosign's tool image of one target need it at once (and it is made
    # through one fixed tarball path): one makes it, the others wait.
    with resource_lock(ctx.resource_lock(f"base-image-{dist.name}"), f"{dist.name} base image"):
        return _ensure_base_image(ctx, client, dist, keyring, now)


def _ensure_base_image(
    ctx: Context, client: docker.DockerClient, dist: Distribution, keyring: Path, now: float
) -> str:
    record_path = ctx.images_dir / f"base-{dist.name}.json"
    inputs = _inputs_key("image", dist, keyring, mmdebstrap_version())
    record = _read_record(record_path)
    if record and record.is_fresh(inputs, ctx, now):
        try:
            client.images.get(record.ref)
            log.info("%s: base image reused (%s)", dist.name, record.ref)
            return record.ref
        except docker.errors.ImageNotFound:
            log.info("%s: base image %s is gone from the engine", dist.name, record.ref)
    tag = base_image_tag(dist, now)
    log.info("%s: making base image %s with mmdebstrap", dist.name, tag)
    tarball = ctx.tmp_dir / f"base-{dist.name}.tar"
    try:
        cmd = mmdebstrap_cmdline(
            dist, variant="minbase", keyring=unshare_readable(ctx, keyring), output=tarball
        )
        run.run(cmd, log_path=ctx.logs_dir / f"bootstrap-{dist.name}-image.log")
        repo, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repo, tag=version, changes=['CMD ["/bin/bash"]']
        )
        image_id = client.images.get(tag).id
    finally:
        remove_path(tarball)
    _write_record(record_path, EnvRecord(dist.name, "image", tag, inputs, now))
    log.info("%s: base image %s imported (%s)", dist.name, tag, image_id)
    return tag


def bootstrap(
    ctx: Context, targets: list[Distribution], *, images: bool = True
) -> dict[str, dict[str, str]]:
    """Make every base environment the targets need; return what each one is."""
    made: dict[str, dict[str, str]] = {}
    for dist in targets:
        made[dist.name] = {"chroot": str(ensure_chroot_tarball(ctx, dist))}
        if images:
            made[dist.name]["image"] = ensure_base_image(ctx, dist)
    return made
