"""A running Postfix test container: start it, read its logs, exec into it, see its processes.

Every container runs with host networking on a free 127.0.0.1 port (SMTP_PORT) and listens on
the loopback only, so several run side by side and nothing leaves the host. Their resolver
points at 127.0.0.1, where nothing answers: a test never sends a DNS query anywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import docker.models.containers

import docker
from builder.core import run
from builder.core.errors import PfbuildError
from builder.image.smtp import LOOPBACK, free_port, wait_for_banner

CONTAINER_PREFIX = "pfbuild-imagetest"

# The locked-down mode (docker/compose.yaml, docker/README.md "Least privilege"): a read-only
# root, tmpfs for /run and /tmp, the volumes, no privilege gained through exec, and only the
# capabilities measured as needed (docker/README.md says why each): not KILL (the master runs as
# root and signals its own children), not SYS_CHROOT (Debian's master.cf chroots nothing).
LOCKDOWN_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "NET_BIND_SERVICE", "SETGID", "SETUID")
# Paths inside the container, not on this host.
LOCKDOWN_TMPFS = {"/run": "rw,nosuid,nodev,mode=0755", "/tmp": "rw,nosuid,nodev,mode=1777"}  # noqa: S108


def lockdown_options() -> dict[str, Any]:
    """The docker SDK's create() arguments for a locked-down container."""
    return {
        "read_only": True,
        "tmpfs": dict(LOCKDOWN_TMPFS),
        "cap_drop": ["ALL"],
        "cap_add": list(LOCKDOWN_CAPS),
        "security_opt": ["no-new-privileges:true"],
    }


def container_env(port: int, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a test container: loopback only, our port, mynetworks 127.0.0.1/32.

    A None in `extra` leaves that variable out (the image's main.cf decides).
    """
    env: dict[str, str | None] = {
        "SMTP_PORT": str(port),
        "POSTFIX_inet_interfaces": LOOPBACK,
        "POSTFIX_mynetworks": f"{LOOPBACK}/32",
        **(extra or {}),
    }
    return {name: value for name, value in env.items() if value is not None}


def maps_libraries(maps_text: str) -> set[str]:
    """Base names of the files mapped in a /proc/<pid>/maps text."""
    names = set()
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            names.add(parts[5].rsplit("/", 1)[-1])
    return names


def has_library(libraries: set[str], prefix: str) -> bool:
    """True when a mapped library's name starts with `prefix` (e.g. libjemalloc.so)."""
    return any(name.startswith(prefix) for name in libraries)


@dataclass
class PostfixContainer:
    """One running Postfix container and how to reach it."""

    client: docker.DockerClient
    container: docker.models.containers.Container
    port: int
    banner: str = ""
    banner_seconds: float = 0.0
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.container.name)

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr."""
        return bytes(self.container.logs(stdout=True, stderr=True)).decode(errors="replace")

    def exec(
        self, cmd: Sequence[str], *, check: bool = True, accept: Collection[int] = (0,)
    ) -> tuple[int, str]:
        """Run a command in the container (see run.run_in_container); return status and output."""
        proc = run.run_in_container(self.container, cmd, check=check, accept=accept)
        return proc.returncode, proc.stdout.decode(errors="replace")

    def host_pids(self, command_prefix: str) -> list[int]:
        """Host pids of the container's processes whose command starts with a prefix."""
        top = self.container.top(ps_args="-eo pid,args")
        titles = [t.upper() for t in top["Titles"]]
        pid_col, cmd_col = titles.index("PID"), titles.index("COMMAND")
        found = []
        for proc in top["Processes"] or []:
            args = str(proc[cmd_col])
            base = args.split()[0].rsplit("/", 1)[-1] if args else ""
            if base.startswith(command_prefix):
                found.append(int(proc[pid_col]))
        return found

    def libraries(self, command_prefix: str) -> set[str]:
        """Libraries mapped by the first process named like `command_prefix` (read on the host)."""
        pids = self.host_pids(command_prefix)
        if not pids:
            raise PfbuildError(f"no {command_prefix} process in container {self.name}")
        return maps_libraries(Path(f"/proc/{pids[0]}/maps").read_text())

    def _state(self) -> dict[str, Any]:
        self.container.reload()
        state: dict[str, Any] = self.container.attrs["State"]
        return state

    def status(self) -> str:
        """The container's state (running, exited, ...)."""
        return str(self._state()["Status"])

    def health(self) -> str:
        """The HEALTHCHECK status (starting, healthy, unhealthy)."""
        return str(self._state().get("Health", {}).get("Status", "none"))

    def exit_code(self) -> int:
        """The exit status of a stopped container."""
        return int(self._state()["ExitCode"])

    def wait_for_exit(self, timeout: float = 30) -> int:
        """Wait for the container to stop by itself; return its exit status."""
        result = self.container.wait(timeout=timeout)
        return int(result["StatusCode"])

    def remove(self) -> None:
        """Stop (SIGTERM) and remove the container."""
        with suppress(docker.errors.NotFound):
            # v=True: the image's anonymous volumes go with the container.
            self.container.remove(force=True, v=True)


def resolv_conf(directory: Path) -> Path:
    """A resolv.conf that points at 127.0.0.1, so Postfix's lookups never leave the host."""
    path = directory / "resolv.conf"
    path.write_text(f"nameserver {LOOPBACK}\noptions timeout:1 attempts:1\n")
    return path


def start_postfix(
    client: docker.DockerClient,
    image: str,
    *,
    env: Mapping[str, str | None] | None = None,
    volumes: Mapping[str, Mapping[str, str]] | None = None,
    port: int | None = None,
    scratch: Path,
    wait: bool = True,
    locked_down: bool = False,
) -> PostfixContainer:
    """Create and start a container of `image` on a free port; wait for its banner."""
    port = port or free_port()
    mounts = {str(resolv_conf(scratch)): {"bind": "/etc/resolv.conf", "mode": "ro"}}
    mounts.update({k: dict(v) for k, v in (volumes or {}).items()})
    container = client.containers.create(
        image,
        name=f"{CONTAINER_PREFIX}-{port}",
        environment=container_env(port, env),
        network_mode="host",
        volumes=mounts,
        labels={"pfbuild.imagetest": "1"},
        **(lockdown_options() if locked_down else {}),
    )
    running = PostfixContainer(client, container, port, volumes=mounts)
    started = time.monotonic()
    container.start()
    if wait:
        try:
            running.banner = wait_for_banner(port, alive=lambda: running.status() == "running")
        except PfbuildError as exc:
            logs = running.logs()
            running.remove()
            raise PfbuildError(
                f"container of {image} did not greet on port {port}",
                logs.strip().splitlines()[-1] if logs.strip() else "no output",
                details=logs,
            ) from exc
        running.banner_seconds = time.monotonic() - started
    return running


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
