"""Proofs against a running Postfix container: banner, TLS, relay, config, preload, logs, reloads.

Every container runs with host networking on a free 127.0.0.1 port (SMTP_PORT) and listens on
the loopback only, so several run side by side and nothing leaves the host. Their resolver
points at 127.0.0.1, where nothing answers: a test never sends a DNS query anywhere else.
`pfbuild image --test` and tests/integration/test_image.py both use this module.
"""

from __future__ import annotations

import io
import json
import os
import smtplib
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import docker.models.containers

import docker
from builder.core import run
from builder.core.errors import PfbuildError

LOOPBACK = "127.0.0.1"
OUTSIDE_CLIENT = "127.0.0.5"
PQ_GROUP = "X25519MLKEM768"
TLS_CLIENT_REPO = "pfbuild-tlsclient"
CONTAINER_PREFIX = "pfbuild-imagetest"
BANNER_TIMEOUT = 60.0
MIMALLOC_LIB = "libmimalloc-secure.so"
JEMALLOC_LIB = "libjemalloc.so"
TLS_CLIENT_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl \\
 && rm -rf /var/lib/apt/lists/*
"""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def container_env(port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test container: loopback only, our port, mynetworks 127.0.0.1/32."""
    return {
        "SMTP_PORT": str(port),
        "POSTFIX_inet_interfaces": LOOPBACK,
        "POSTFIX_mynetworks": f"{LOOPBACK}/32",
        **(extra or {}),
    }


def s_client_cmdline(port: int, *extra: str) -> list[str]:
    """openssl s_client speaking STARTTLS to the container's smtp port."""
    return ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{LOOPBACK}:{port}", *extra]


def pq_handshake_cmdline(port: int) -> list[str]:
    """A TLS 1.3 handshake that offers only the hybrid post-quantum group."""
    return s_client_cmdline(port, "-groups", PQ_GROUP)


def tls11_handshake_cmdline(port: int) -> list[str]:
    """A TLS 1.1-only handshake; security level 0 so the refusal is the server's, not ours."""
    return s_client_cmdline(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")


def negotiated_group(s_client_output: str) -> str | None:
    """The TLS 1.3 group s_client reports, if any."""
    for line in s_client_output.splitlines():
        if line.startswith("Negotiated TLS1.3 group:"):
            return line.split(":", 1)[1].strip()
    return None


def is_tls11_refused_by_server(rc: int, output: str) -> bool:
    """True when the server's alert ended the handshake, not our own client refusing."""
    # s_client prints "Protocol: TLSv1.1" for the attempted version even when it failed; a
    # failed handshake shows "Cipher is (NONE)".
    if rc == 0 or "no protocols available" in output:
        return False
    return "alert protocol version" in output or "Cipher is (NONE)" in output


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


def warning_lines(text: str) -> list[str]:
    """The lines of a Postfix tool's output that are warnings."""
    return [line for line in text.splitlines() if "warning:" in line]


# ---- a running container ----------------------------------------------------------------------


class ProofFailed(PfbuildError):
    """A claim about the image that the running container did not bear out."""


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

    def exec(self, cmd: Sequence[str]) -> tuple[int, str]:
        """Run a command in the container; return its exit status and output."""
        result = self.container.exec_run(list(cmd), stdout=True, stderr=True)
        output = result.output if isinstance(result.output, bytes) else b""
        return int(result.exit_code or 0), output.decode(errors="replace")

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

    def status(self) -> str:
        """The container's state (running, exited, ...)."""
        self.container.reload()
        return str(self.container.attrs["State"]["Status"])

    def health(self) -> str:
        """The HEALTHCHECK status (starting, healthy, unhealthy)."""
        self.container.reload()
        return str(self.container.attrs["State"].get("Health", {}).get("Status", "none"))

    def exit_code(self) -> int:
        """The exit status of a stopped container."""
        self.container.reload()
        return int(self.container.attrs["State"]["ExitCode"])

    def remove(self) -> None:
        """Stop (SIGTERM) and remove the container."""
        with suppress(docker.errors.NotFound):
            # v=True: the image's anonymous volumes go with the container.
            self.container.remove(force=True, v=True)


def wait_for_banner(
    port: int, timeout: float = BANNER_TIMEOUT, alive: Callable[[], bool] | None = None
) -> str:
    """Poll 127.0.0.1:port until the server sends its greeting; return that line."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
                line = sock.makefile("rb").readline().decode(errors="replace").strip()
                with suppress(OSError):
                    sock.sendall(b"QUIT\r\n")
                if line:
                    return line
        except OSError:
            pass
        if time.monotonic() > deadline or (alive is not None and not alive()):
            raise PfbuildError(f"no SMTP banner on {LOOPBACK}:{port} after {timeout:g} s")
        time.sleep(0.02)


def resolv_conf(directory: Path) -> Path:
    """A resolv.conf that points at 127.0.0.1, so Postfix's lookups never leave the host."""
    path = directory / "resolv.conf"
    path.write_text(f"nameserver {LOOPBACK}\noptions timeout:1 attempts:1\n")
    return path


def start_postfix(
    client: docker.DockerClient,
    image: str,
    *,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str, Mapping[str, str]] | None = None,
    port: int | None = None,
    scratch: Path,
    wait: bool = True,
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


def wait_for_exit(running: PostfixContainer, timeout: float = 30) -> int:
    """Wait for the container to stop by itself; return its exit status."""
    result = running.container.wait(timeout=timeout)
    return int(result["StatusCode"])


# ---- SMTP -------------------------------------------------------------------------------------


def ehlo_features(port: int) -> dict[str, str]:
    """The ESMTP extensions advertised after EHLO."""
    with smtplib.SMTP(LOOPBACK, port, local_hostname="client.example.com", timeout=10) as smtp:
        smtp.ehlo()
        return dict(smtp.esmtp_features)


def rcpt_reply(port: int, rcpt: str, source: str = LOOPBACK) -> tuple[int, str]:
    """The reply to RCPT TO (null sender, FQDN HELO) from client address `source`."""
    with smtplib.SMTP(
        LOOPBACK, port, local_hostname="client.example.com", timeout=10, source_address=(source, 0)
    ) as smtp:
        smtp.ehlo()
        smtp.mail("<>")
        code, msg = smtp.rcpt(rcpt)
        smtp.rset()
        return code, msg.decode(errors="replace")


def send_message(port: int, rcpt: str, subject: str) -> str:
    """Submit a message from 127.0.0.1 (in mynetworks); return the server's final reply."""
    body = f"Subject: {subject}\r\nFrom: <>\r\nTo: <{rcpt}>\r\n\r\npfbuild image test\r\n"
    with smtplib.SMTP(LOOPBACK, port, local_hostname="client.example.com", timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("<>")
        code, msg = smtp.rcpt(rcpt)
        if code != 250:
            raise PfbuildError(f"RCPT TO:<{rcpt}> got {code} {msg.decode(errors='replace')}")
        code, msg = smtp.data(body.encode())
        return f"{code} {msg.decode(errors='replace')}"


@contextmanager
def open_session(port: int) -> Iterator[smtplib.SMTP]:
    """An SMTP session held open, so an smtpd process exists while the block runs."""
    smtp = smtplib.SMTP(LOOPBACK, port, local_hostname="client.example.com", timeout=10)
    try:
        smtp.ehlo()
        yield smtp
    finally:
        with suppress(smtplib.SMTPException, OSError):
            smtp.quit()


def local_recipient(running: PostfixContainer) -> str:
    """postmaster at the name the server greets with ($myhostname, in mydestination)."""
    return f"postmaster@{running.banner.split()[1]}"


def queue_ids(running: PostfixContainer) -> set[str]:
    """Queue ids of the messages in the container's queue (postqueue -j)."""
    rc, out = running.exec(["postqueue", "-j"])
    if rc != 0:
        raise PfbuildError("postqueue -j failed", out.strip())
    return {json.loads(line)["queue_id"] for line in out.splitlines() if line.startswith("{")}


def make_certificate(directory: Path, name: str) -> None:
    """A self-signed key and certificate named like certbot's (privkey.pem, fullchain.pem)."""
    key, cert = directory / "privkey.pem", directory / "fullchain.pem"
    run.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{key}.new", "-out", f"{cert}.new",
        ]
    )  # fmt: skip
    os.replace(f"{key}.new", key)
    os.replace(f"{cert}.new", cert)


# ---- the TLS client ---------------------------------------------------------------------------


def ensure_tls_client_image(client: docker.DockerClient, base: str) -> str:
    """An OpenSSL >= 3.5 client image made once from a trixie base (the host's is too old)."""
    tag = f"{TLS_CLIENT_REPO}:{base.rsplit(':', 1)[-1]}"
    with suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    dockerfile = TLS_CLIENT_DOCKERFILE.format(base=base).encode()
    try:
        client.images.build(
            fileobj=io.BytesIO(dockerfile), tag=tag, network_mode="host", rm=True, forcerm=True
        )
    except docker.errors.BuildError as exc:
        raise PfbuildError(f"cannot build the TLS client image {tag}", str(exc)) from None
    return tag


def run_tool(client: docker.DockerClient, image: str, cmd: Sequence[str]) -> tuple[int, str]:
    """Run a one-shot command in `image` with host networking; return exit status and output."""
    container = client.containers.run(image, list(cmd), network_mode="host", detach=True)
    try:
        rc = int(container.wait(timeout=60)["StatusCode"])
        return rc, bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")
    finally:
        container.remove(force=True, v=True)


def expect(condition: bool, message: str) -> None:
    """Fail a proof with `message` unless `condition` holds (works under python -O too)."""
    if not condition:
        raise ProofFailed(message)


# ---- the proofs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """One claim about the image and whether the running container bore it out."""

    name: str
    ok: bool
    detail: str


def _proof(name: str, check: Callable[[], str]) -> Proof:
    try:
        return Proof(name, True, check())
    except (
        PfbuildError,
        OSError,
        smtplib.SMTPException,
        docker.errors.APIError,
    ) as exc:
        return Proof(
            name,
            False,
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )


class ImageProver:
    """Runs the acceptance proofs for one image; containers live in a scratch directory."""

    def __init__(
        self, client: docker.DockerClient, image: str, tls_client: str, scratch: Path
    ) -> None:
        self.client = client
        self.image = image
        self.tls_client = tls_client
        self.scratch = scratch
        self.started: list[PostfixContainer] = []

    def start(
        self,
        *,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[str, Mapping[str, str]] | None = None,
        wait: bool = True,
    ) -> PostfixContainer:
        """Start a container of the image (see start_postfix); it is removed by close()."""
        scratch = Path(tempfile.mkdtemp(dir=self.scratch))
        running = start_postfix(
            self.client, self.image, env=env, volumes=volumes, scratch=scratch, wait=wait
        )
        self.started.append(running)
        return running

    def close(self) -> None:
        """Remove every container this prover started."""
        for running in self.started:
            running.remove()
        self.started.clear()

    # Each check returns a one-line detail or raises ProofFailed (or another PfbuildError).

    def check_banner(self, running: PostfixContainer) -> str:
        expect(running.banner.startswith("220 "), f"banner is {running.banner!r}")
        return f"{running.banner!r} {running.banner_seconds * 1000:.0f} ms after docker start"

    def check_starttls(self, running: PostfixContainer) -> str:
        features = ehlo_features(running.port)
        expect("starttls" in features, f"EHLO advertises {sorted(features)}")
        return "EHLO advertises STARTTLS"

    def check_pq_group(self, running: PostfixContainer) -> str:
        rc, out = run_tool(self.client, self.tls_client, pq_handshake_cmdline(running.port))
        group = negotiated_group(out)
        expect(group == PQ_GROUP, f"negotiated group {group!r} (s_client exit {rc})")
        return f"Negotiated TLS1.3 group: {group}"

    def check_tls11_refused(self, running: PostfixContainer) -> str:
        rc, out = run_tool(self.client, self.tls_client, tls11_handshake_cmdline(running.port))
        expect(is_tls11_refused_by_server(rc, out), f"TLS 1.1 handshake not refused: {out[-300:]}")
        return f"TLS 1.1 handshake refused (s_client exit {rc})"

    def check_relay_denied(self, running: PostfixContainer) -> str:
        code, msg = rcpt_reply(running.port, "someone@example.net", source=OUTSIDE_CLIENT)
        expect(code == 554 and msg.startswith("5.7.1"), f"relay attempt got {code} {msg}")
        return f"{OUTSIDE_CLIENT} -> someone@example.net: {code} {msg}"

    def check_local_accepted(self, running: PostfixContainer) -> str:
        rcpt = local_recipient(running)
        code, msg = rcpt_reply(running.port, rcpt, source=OUTSIDE_CLIENT)
        expect(code == 250, f"local recipient got {code} {msg}")
        return f"{OUTSIDE_CLIENT} -> {rcpt}: {code} {msg}"

    def check_no_config_warnings(self, running: PostfixContainer) -> str:
        found = []
        for cmd in (
            ["postconf"],
            ["postfix", "check"],
            ["postfix", "-c", "/run/pfbuild-postfix", "check"],
        ):
            rc, out = running.exec(cmd)
            expect(rc == 0, f"{' '.join(cmd)} exit {rc}: {out[-200:]}")
            found += warning_lines(out)
        expect(not found, f"{len(found)} warnings, first: {''.join(found[:1])}")
        return "postconf and postfix check print no warnings"

    def check_preload(self, running: PostfixContainer, allocator: str | None) -> str:
        with open_session(running.port):
            # smtpd is forked by the master for this connection.
            expect(wait_until(lambda: bool(running.host_pids("smtpd")), 10), "no smtpd process")
            found = {name: running.libraries(name) for name in ("master", "smtpd")}
        for name, libs in found.items():
            for lib in (MIMALLOC_LIB, JEMALLOC_LIB):
                mapped = has_library(libs, lib)
                expect(
                    mapped == (lib == allocator),
                    f"{name}: {lib} mapped={mapped}, expected {allocator}",
                )
        return f"master and smtpd map {allocator or 'neither allocator'}"

    def check_bogus_malloc(self) -> str:
        running = self.start(env={"MALLOC": "bogus"}, wait=False)
        rc = wait_for_exit(running)
        lines = [line for line in running.logs().splitlines() if line.strip()]
        expect(rc != 0, "MALLOC=bogus did not stop the container")
        expect(
            lines == ["bootstrap: error: MALLOC=bogus is not one of mimalloc, jemalloc, none"],
            f"output: {lines}",
        )
        return f"exit {rc}: {lines[0]}"

    def check_reload_logged(self) -> str:
        running = self.start(env={"RELOAD_INTERVAL": "2"})
        expect(
            wait_until(lambda: "reload -- version" in running.logs(), 20), "no reload in the log"
        )
        return "RELOAD_INTERVAL=2: master logged a reload"

    def check_syslog(self) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            udp.settimeout(0.5)
            port = udp.getsockname()[1]
            running = self.start(env={"SYSLOG_HOST": LOOPBACK, "SYSLOG_PORT": str(port)})
            ehlo_features(running.port)
            received: list[str] = []

            def got_connect() -> bool:
                with suppress(TimeoutError):
                    received.append(udp.recv(65536).decode(errors="replace"))
                return any("connect from" in line for line in received)

            expect(wait_until(got_connect, 15, step=0), f"UDP got {received[:3]}")
        expect("connect from" in running.logs(), "the log line did not reach stdout")
        line = next(line for line in received if "connect from" in line)
        return f"UDP 127.0.0.1:{port} got {line.strip()[:80]!r}, stdout too"

    def check_readonly_main_cf(self) -> str:
        main_cf = self.scratch / "readonly-main.cf"
        rc, out = self.exec_default(["cat", "/etc/postfix.orig/main.cf"])
        expect(rc == 0, out)
        main_cf.write_text(out)
        # An administrator's main.cf is not seconds old; Postfix dozes on files that are.
        old = time.time() - 60
        os.utime(main_cf, (old, old))
        before = main_cf.read_bytes()
        mounts = {str(main_cf): {"bind": "/etc/postfix/main.cf", "mode": "ro"}}
        running = self.start(volumes=mounts)
        expect(main_cf.read_bytes() == before, "main.cf changed")
        return f"read-only main.cf: banner {running.banner_seconds * 1000:.0f} ms, file unchanged"

    def exec_default(self, cmd: Sequence[str]) -> tuple[int, str]:
        """Run a command in a throwaway container of the image (no Postfix started)."""
        return run_tool(self.client, self.image, cmd)

    def check_config_volume(self) -> str:
        """A user-edited main.cf survives a restart; a broken master.cf makes reload skip."""
        conf = Path(tempfile.mkdtemp(dir=self.scratch, prefix="etc-postfix-"))
        mounts = {str(conf): {"bind": "/etc/postfix", "mode": "rw"}}
        running = self.start(volumes=mounts, env={"RELOAD_INTERVAL": "2"})
        main_cf = conf / "main.cf"
        expect(main_cf.is_file(), "defaults were not copied into the empty volume")
        main_cf.write_text(
            main_cf.read_text() + "smtpd_banner = $myhostname ESMTP pfbuild-edited\n"
        )
        edited = main_cf.read_bytes()
        running.container.restart(timeout=10)
        running.banner = wait_for_banner(running.port)
        expect("pfbuild-edited" in running.banner, f"banner after restart: {running.banner}")
        expect(main_cf.read_bytes() == edited, "main.cf was rewritten")
        master_cf = conf / "master.cf"
        master_cf.write_text(master_cf.read_text() + "this line breaks master.cf\n")
        skipped = "skipped: postfix check failed"
        expect(wait_until(lambda: skipped in running.logs(), 20), "the reload was not skipped")
        time.sleep(1)
        expect(running.status() == "running", "the container stopped")
        banner = wait_for_banner(running.port, timeout=5)
        return f"edit kept across restart; broken master.cf: reload skipped, still {banner[:3]}"

    def check_queue_survives(self) -> str:
        spool = self.client.volumes.create(name=f"{CONTAINER_PREFIX}-spool-{free_port()}")
        try:
            mounts = {spool.name: {"bind": "/var/spool/postfix", "mode": "rw"}}
            env = {"POSTFIX_defer_transports": "local"}  # held in the queue, not delivered
            first = self.start(volumes=mounts, env=env)
            reply = send_message(first.port, local_recipient(first), "queued")
            expect(reply.startswith("250"), reply)
            expect(wait_until(lambda: bool(queue_ids(first)), 10), "message not in the queue")
            ids = queue_ids(first)
            first.remove()
            second = self.start(volumes=mounts, env=env)
            expect(ids <= queue_ids(second), f"queue {ids} not found after replacing the container")
            second.remove()
            return f"queued {sorted(ids)} survived replacing the container"
        finally:
            with suppress(docker.errors.APIError):
                spool.remove(force=True)

    def check_mounted_certificate(self) -> str:
        """STARTTLS presents a mounted certificate; replacing it reloads Postfix."""
        certs = Path(tempfile.mkdtemp(dir=self.scratch, prefix="certs-"))
        make_certificate(certs, "pfbuild-mounted-1")
        mounts = {str(certs): {"bind": "/etc/letsencrypt/live/mx", "mode": "ro"}}
        env = {
            "TLS_CERT_FILE": "/etc/letsencrypt/live/mx/fullchain.pem",
            "TLS_KEY_FILE": "/etc/letsencrypt/live/mx/privkey.pem",
            "RELOAD_POLL": "1",
        }
        running = self.start(volumes=mounts, env=env)
        expect("self-signed" not in running.logs(), "a self-signed certificate was made anyway")
        expect(self.peer_subject(running) == "CN=pfbuild-mounted-1", "mounted cert not presented")
        make_certificate(certs, "pfbuild-mounted-2")
        changed = "reload (certificate files changed)"
        expect(wait_until(lambda: changed in running.logs(), 20), "no reload after renewal")
        expect(
            wait_until(lambda: self.peer_subject(running) == "CN=pfbuild-mounted-2", 10),
            "the renewed certificate is not presented",
        )
        return "mounted certificate presented; renewal reloaded and presented"

    def peer_subject(self, running: PostfixContainer) -> str:
        """The subject of the certificate STARTTLS presents."""
        _, out = run_tool(self.client, self.tls_client, s_client_cmdline(running.port))
        for line in out.splitlines():
            if line.startswith("subject="):
                return line.split("=", 1)[1].strip().replace(" = ", "=")
        return ""

    def check_healthy(self, running: PostfixContainer, timeout: float = 150) -> str:
        expect(
            wait_until(lambda: running.health() == "healthy", timeout, step=1),
            f"health is {running.health()}",
        )
        return "HEALTHCHECK reports healthy"


def prove_image(
    client: docker.DockerClient,
    image: str,
    tls_client: str,
    *,
    scratch: Path,
    healthcheck: bool = True,
) -> list[Proof]:
    """Run every acceptance proof against containers of `image`; return the results."""
    proofs: list[Proof] = []
    prover = ImageProver(client, image, tls_client, scratch)
    if True:
        try:
            main = prover.start()
            proofs.append(_proof("banner", lambda: prover.check_banner(main)))
            proofs.append(_proof("starttls", lambda: prover.check_starttls(main)))
            proofs.append(_proof("post-quantum group", lambda: prover.check_pq_group(main)))
            proofs.append(_proof("TLS 1.1 refused", lambda: prover.check_tls11_refused(main)))
            proofs.append(_proof("relay denied", lambda: prover.check_relay_denied(main)))
            proofs.append(_proof("local mail accepted", lambda: prover.check_local_accepted(main)))
            proofs.append(
                _proof("no config warnings", lambda: prover.check_no_config_warnings(main))
            )
            proofs.append(
                _proof("mimalloc preloaded", lambda: prover.check_preload(main, MIMALLOC_LIB))
            )
            for malloc, lib in (("jemalloc", JEMALLOC_LIB), ("none", None)):
                proofs.append(
                    _proof(
                        f"MALLOC={malloc}",
                        lambda m=malloc, lib=lib: prover.check_preload(  # type: ignore[misc]
                            prover.start(env={"MALLOC": m}), lib
                        ),
                    )
                )
            proofs.append(_proof("MALLOC=bogus refused", prover.check_bogus_malloc))
            proofs.append(_proof("config volume", prover.check_config_volume))
            proofs.append(_proof("read-only main.cf", prover.check_readonly_main_cf))
            proofs.append(_proof("queue survives", prover.check_queue_survives))
            proofs.append(_proof("reload interval", prover.check_reload_logged))
            proofs.append(_proof("remote syslog", prover.check_syslog))
            proofs.append(_proof("mounted certificate", prover.check_mounted_certificate))
            if healthcheck:
                proofs.append(_proof("healthcheck", lambda: prover.check_healthy(main)))
        finally:
            prover.close()
    return proofs
