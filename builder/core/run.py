"""The only place pfbuild starts processes: argument lists in, logged, failures explained."""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import signal
import subprocess
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.core.errors import CommandError, PfbuildError

if TYPE_CHECKING:
    from docker.models.containers import Container

    from docker import DockerClient

log = logging.getLogger("pfbuild")

TAIL_LINES = 25

Arg = str | Path


def as_user_cmdline(
    user: str, cmd: Sequence[Arg], env: Mapping[str, str] | None = None
) -> list[str]:
    """Wrap a command so it runs as `user` with a clean login-like environment."""
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        raise PfbuildError(
            f"build user {user!r} does not exist",
            "sbuild's unshare mode must run as an unprivileged user with subuid/subgid ranges",
            "run `pfbuild doctor --fix` as root",
        ) from None
    pairs = [
        f"HOME={home}",
        f"USER={user}",
        f"LOGNAME={user}",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    pairs += [f"{k}={v}" for k, v in (env or {}).items()]
    return ["runuser", "-u", user, "--", "env", "-i", *pairs, *[str(c) for c in cmd]]


def needs_user_switch(user: str | None) -> bool:
    """True when the command must change user: we are root and asked to run as someone else."""
    if user is None or os.geteuid() != 0:
        return False
    return pwd.getpwuid(os.geteuid()).pw_name != user


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run(
    cmd: Sequence[Arg],
    *,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input: bytes | None = None,
    log_path: Path | None = None,
    check: bool = True,
    accept: Collection[int] = (0,),
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `cmd`; output is captured (or streamed to `log_path`).

    An exit status outside `accept` raises CommandError with the command line and the tail of
    the output, unless `check` is False (the caller judges the status itself).
    """
    argv = [str(c) for c in cmd]
    if needs_user_switch(user):
        argv = as_user_cmdline(str(user), argv, env)
        full_env = None
    else:
        full_env = {**os.environ, **env} if env else None
    cmdline = shlex.join(argv)
    log.debug("$ %s", cmdline)
    try:
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("wb") as out:
                proc = subprocess.run(
                    argv,
                    cwd=cwd,
                    env=full_env,
                    input=input,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            proc = subprocess.CompletedProcess(argv, proc.returncode, log_path.read_bytes(), b"")
        else:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=full_env,
                input=input,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError:
        raise PfbuildError(
            f"cannot run {argv[0]!r}",
            "it is not installed or not on PATH",
            "run `pfbuild doctor --fix` as root",
        ) from None
    except subprocess.TimeoutExpired:
        raise PfbuildError(f"command timed out after {timeout} s: {cmdline}") from None
    _judge(cmdline, proc, check=check, accept=accept, log_path=log_path)
    return proc


def _judge(
    cmdline: str,
    proc: subprocess.CompletedProcess[bytes],
    *,
    check: bool,
    accept: Collection[int],
    log_path: Path | None = None,
) -> None:
    if check and proc.returncode not in accept:
        output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        raise CommandError(
            cmdline, proc.returncode, _tail(output), str(log_path) if log_path else None
        )


def run_in_container(
    container: Container,
    cmd: Sequence[Arg],
    *,
    check: bool = True,
    accept: Collection[int] = (0,),
    user: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Run `cmd` inside a running container (docker exec), logged and judged like `run`."""
    argv = [str(c) for c in cmd]
    cmdline = shlex.join(
        [
            "docker",
            "exec",
            *(["--user", user] if user else []),
            container.name or container.id or "?",
            *argv,
        ]
    )
    log.debug("$ %s", cmdline)
    result = container.exec_run(argv, stdout=True, stderr=True, user=user)
    output = result.output if isinstance(result.output, bytes) else b""
    proc = subprocess.CompletedProcess(argv, int(result.exit_code or 0), output, b"")
    _judge(cmdline, proc, check=check, accept=accept)
    return proc


def run_in_image(
    client: DockerClient,
    image: str,
    cmd: Sequence[Arg],
    *,
    check: bool = True,
    accept: Collection[int] = (0,),
    timeout: float = 60,
    entrypoint: Sequence[str] | None = None,
    network: str = "host",
    volumes: Mapping[str, str] | None = None,
    read_only: Collection[str] = (),
    environment: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `cmd` in a one-shot container of `image`, logged and judged like `run`.

    `entrypoint` replaces the image's own (an empty list runs `cmd` as it is). `volumes` mounts
    host folders (host path -> container path), read-only for those in `read_only`;
    `environment` sets variables whose values are not logged.
    """
    argv = [str(c) for c in cmd]
    override = [] if entrypoint is None else ["--entrypoint", " ".join(entrypoint)]
    mounts = {
        host: {"bind": inside, "mode": "ro" if host in read_only else "rw"}
        for host, inside in (volumes or {}).items()
    }
    shown = [
        *[f"--volume={h}:{m['bind']}:{m['mode']}" for h, m in mounts.items()],
        # A variable by name only: the docker CLI takes its value from the caller's environment.
        *[f"--env={name}" for name in environment or {}],
    ]
    cmdline = shlex.join(
        ["docker", "run", "--rm", "--network", network, *shown, *override, image, *argv]
    )
    log.debug("$ %s", cmdline)
    options: dict[str, Any] = {} if entrypoint is None else {"entrypoint": list(entrypoint)}
    if mounts:
        options["volumes"] = mounts
    if environment:
        options["environment"] = dict(environment)
    container = client.containers.run(image, argv, network_mode=network, detach=True, **options)
    try:
        status = int(container.wait(timeout=timeout)["StatusCode"])
        logs = bytes(container.logs(stdout=True, stderr=True))
    finally:
        container.remove(force=True, v=True)
    proc = subprocess.CompletedProcess(argv, status, logs, b"")
    _judge(cmdline, proc, check=check, accept=accept)
    return proc


def output(cmd: Sequence[Arg], **options: Any) -> str:
    """Run `cmd` as `run` does (same options) and return its standard output as text."""
    return run(cmd, **options).stdout.decode(errors="replace")


def spawn_daemon(cmd: Sequence[Arg], log_path: Path) -> int:
    """Start a long-running service detached from us, its output appended to `log_path`."""
    argv = [str(c) for c in cmd]
    log.debug("$ %s &", shlex.join(argv))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise PfbuildError(f"cannot run {argv[0]!r}", "it is not installed") from None
    return proc.pid


# ---- stopping ---------------------------------------------------------------------------------


def _stat_fields(pid: str) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def child_processes() -> list[int]:
    """This process's children, but not the daemons it started (leaders of their own session)."""
    me = str(os.getpid())
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid, _pgrp, session = _stat_fields(entry.name)[:4]
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
        if ppid == me and session != entry.name and state != "Z":
            children.append(int(entry.name))
    return children


def terminate_children() -> list[int]:
    """Send SIGTERM to this process's running children (sbuild, mmdebstrap, ...); return them.

    On a terminal, Ctrl-C reaches them already; a SIGTERM sent to pfbuild alone does not.
    """
    pids = child_processes()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    if pids:
        log.info("sent SIGTERM to %s", ", ".join(map(str, pids)))
    return pids


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM interrupts like Ctrl-C: the code stops cleanly, not mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
