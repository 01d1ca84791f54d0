"""The Docker Engine, reached through the docker SDK."""

from __future__ import annotations

import docker.errors

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
