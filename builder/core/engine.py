"""The Docker Engine, reached through the docker SDK."""

from __future__ import annotations

import io
from contextlib import suppress

import docker.errors
import docker.models.images

import docker
from builder.core.context import Context
from builder.core.errors import PfbuildError


def docker_client(ctx: Context) -> docker.DockerClient:
    """A client for the configured engine (DOCKER_HOST or --docker-host); refuses if it is down."""
    try:
        if ctx.docker_host:
            client = docker.DockerClient(base_url=ctx.docker_host)
        else:
            client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise PfbuildError(
            "Docker Engine is not reachable",
            str(exc).split("(")[0].strip() or type(exc).__name__,
            "start it with `pfbuild doctor --fix` (as root)",
        ) from None
    return client


TOOL_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {packages} \\
 && rm -rf /var/lib/apt/lists/*
"""


def tool_dockerfile(packages: str) -> str:
    """The Dockerfile of a tool image: `packages` from the distribution, on a `{base}`."""
    return TOOL_DOCKERFILE.replace("{packages}", packages)


def build_tool_image(
    client: docker.DockerClient, tag: str, base: str, packages: str
) -> docker.models.images.Image:
    """Build `tag` from `base` with the distribution's `packages` (apt, host network)."""
    dockerfile = tool_dockerfile(packages).format(base=base).encode()
    try:
        image, _logs = client.images.build(
            fileobj=io.BytesIO(dockerfile), tag=tag, network_mode="host", rm=True, forcerm=True
        )
    except docker.errors.BuildError as exc:
        raise PfbuildError(
            f"cannot build the tool image {tag}",
            str(exc),
            "check that apt in the base image reaches the archive",
        ) from None
    return image


def ensure_tool_image(client: docker.DockerClient, repo: str, base: str, packages: str) -> str:
    """`repo`:<base's tag>, made once from `base` with the distribution's `packages` (apt)."""
    tag = f"{repo}:{base.rsplit(':', 1)[-1]}"
    with suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    build_tool_image(client, tag, base, packages)
    return tag
