"""The acceptance proofs of an image: banner, TLS, relay, config, preload, logs, reloads.

Each proof starts what it needs through ImageProver (see container.py for how containers run)
and returns a one-line detail or raises ProofFailed. `pfbuild image --test`, the release's
image-test action and tests/integration/test_image.py all use this module.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import docker.errors

import docker
from builder.core.errors import PfbuildError
from builder.image.container import (
    CONTAINER_PREFIX,
    LOCKDOWN_CAPS,
    PostfixContainer,
    has_library,
    start_postfix,
    wait_until,
)
from builder.image.smtp import (
    LOOPBACK,
    OUTSIDE_CLIENT,
    ehlo_features,
    free_port,
    open_session,
    rcpt_reply,
    send_message,
    wait_for_banner,
)
from builder.image.tlsclient import (
    PQ_GROUP,
    certificate_subject,
    is_tls11_refused_by_server,
    make_certificate,
    negotiated_group,
    pq_handshake_cmdline,
    run_tool,
    s_client_cmdline,
    tls11_handshake_cmdline,
)

# How long an admin waits for `postfix reload` to reach the smtpd processes (idle ones finish
# their next client on the old configuration).
ADMIN_RELOAD_GRACE = 10.0
# The only files with a setuid or setgid bit the image keeps: Postfix's setgid postdrop and
# postqueue (local submission and queue listing by users other than root).
SETID_KEPT = frozenset({"/usr/sbin/postdrop", "/usr/sbin/postqueue"})
# Capability bits of /proc/<pid>/status (linux/capability.h).
CAPABILITY_BITS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13,
    "SYS_CHROOT": 18, "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31,
}  # fmt: skip
MIMALLOC_LIB = "libmimalloc-secure.so"
JEMALLOC_LIB = "libjemalloc.so"


class ProofFailed(PfbuildError):
    """A claim about the image that the running container did not bear out."""


def expect(condition: bool, message: str) -> None:
    """Fail a proof with `message` unless `condition` holds (works under python -O too)."""
    if not condition:
        raise ProofFailed(message)


def warning_lines(text: str) -> list[str]:
    """The lines of a Postfix tool's output that are warnings."""
    return [line for line in text.splitlines() if "warning:" in line]


def local_recipient(running: PostfixContainer) -> str:
    """postmaster at the name the server greets with ($myhostname, in mydestination)."""
    return f"postmaster@{running.banner.split()[1]}"


def queue_ids(running: PostfixContainer) -> set[str]:
    """Queue ids of the messages in the container's queue (postqueue -j)."""
    _, out = running.exec(["postqueue", "-j"])
    return {json.loads(line)["queue_id"] for line in out.splitlines() if line.startswith("{")}


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
        self,
        client: docker.DockerClient,
        image: str,
        tls_client: str,
        scratch: Path,
        locked_down: bool = False,
    ) -> None:
        self.client = client
        self.image = image
        self.tls_client = tls_client
        self.scratch = scratch
        # Every container this prover starts runs locked down (container.lockdown_options).
        self.locked_down = locked_down
        self.started: list[PostfixContainer] = []

    def start(
        self,
        *,
        env: Mapping[str, str | None] | None = None,
        volumes: Mapping[str, Mapping[str, str]] | None = None,
        wait: bool = True,
    ) -> PostfixContainer:
        """Start a container of the image (see start_postfix); it is removed by close()."""
        scratch = Path(tempfile.mkdtemp(dir=self.scratch))
        running = start_postfix(
            self.client, self.image, env=env, volumes=volumes, scratch=scratch, wait=wait,
            locked_down=self.locked_down,
        )  # fmt: skip
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
        rc, out = self.run_tls_client(pq_handshake_cmdline(running.port))
        group = negotiated_group(out)
        expect(group == PQ_GROUP, f"negotiated group {group!r} (s_client exit {rc})")
        return f"Negotiated TLS1.3 group: {group}"

    def check_tls11_refused(self, running: PostfixContainer) -> str:
        rc, out = self.run_tls_client(tls11_handshake_cmdline(running.port))
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
            rc, out = running.exec(cmd, check=False)
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

    def check_preload_of(self, malloc: str, allocator: str | None) -> str:
        """Start a container with MALLOC=`malloc` and check what its processes map."""
        return self.check_preload(self.start(env={"MALLOC": malloc}), allocator)

    def check_bogus_malloc(self) -> str:
        running = self.start(env={"MALLOC": "bogus"}, wait=False)
        rc = running.wait_for_exit()
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
        _, out = self.exec_default(["cat", "/etc/postfix.orig/main.cf"])
        main_cf.write_text(out)
        # An administrator's main.cf is not seconds old; Postfix dozes on files that are.
        old = time.time() - 60
        os.utime(main_cf, (old, old))
        before = main_cf.read_bytes()
        mounts = {str(main_cf): {"bind": "/etc/postfix/main.cf", "mode": "ro"}}
        running = self.start(volumes=mounts)
        expect(main_cf.read_bytes() == before, "main.cf changed")
        return f"read-only main.cf: banner {running.banner_seconds * 1000:.0f} ms, file unchanged"

    def check_lockdown(self, running: PostfixContainer) -> str:
        """The container runs read-only, with only LOCKDOWN_CAPS, and gains nothing by exec."""
        running.container.reload()
        host = running.container.attrs["HostConfig"]
        expect(host.get("ReadonlyRootfs") is True, "the root filesystem is writable")
        rc, out = running.exec(["sh", "-c", "touch /usr/pfbuild-probe"], check=False)
        expect(rc != 0 and "Read-only file system" in out, f"writing /usr: exit {rc} {out}")
        _, status = running.exec(["cat", "/proc/1/status"])
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        effective = int(fields["CapEff"].strip(), 16)
        names = {name for name, bit in CAPABILITY_BITS.items() if effective >> bit & 1}
        expect(names == set(LOCKDOWN_CAPS), f"PID 1 has capabilities {sorted(names)}")
        expect(fields.get("NoNewPrivs", "").strip() == "1", "no_new_privs is not set")
        return f"read-only root; PID 1 capabilities {','.join(sorted(names))}; NoNewPrivs 1"

    def check_setid_files(self) -> str:
        """No file with a setuid or setgid bit besides the ones Postfix needs."""
        _, out = self.exec_default(
            ["find", "/", "-xdev", "-type", "f", "-perm", "/6000"], accept=(0, 1)
        )
        found = set(out.split())
        expect(found == SETID_KEPT, f"setuid/setgid files: {sorted(found)}")
        return f"setuid/setgid: {', '.join(sorted(found))} only"

    def check_admin_reload(self) -> str:
        """`postconf -e` + `postfix reload` in the container change what the master runs."""
        # The image's own mynetworks (127.0.0.0/8) trusts OUTSIDE_CLIENT; the reload loop is
        # slowed down so that only the admin's reload can close the relay.
        running = self.start(env={"POSTFIX_mynetworks": None, "RELOAD_POLL": "3600"})
        before, _ = rcpt_reply(running.port, "someone@example.net", source=OUTSIDE_CLIENT)
        expect(before == 250, f"before the edit, relaying from {OUTSIDE_CLIENT} got {before}")
        edit = "postconf -e mynetworks=127.0.0.1/32 && postfix reload"
        rc, out = running.exec(["sh", "-c", edit], check=False)
        expect(rc == 0, f"{edit}: exit {rc}: {out.strip()[-200:]}")
        # `postfix reload` returns once the master has its signal; an smtpd that was idle
        # may take one more client before it notices and exits, as on any Postfix host.
        started = time.monotonic()
        while True:
            after, msg = rcpt_reply(running.port, "someone@example.net", source=OUTSIDE_CLIENT)
            if after == 554 or time.monotonic() - started > ADMIN_RELOAD_GRACE:
                break
            time.sleep(0.5)
        waited = time.monotonic() - started
        expect(after == 554, f"after `{edit}`, relaying got {after} {msg} for {waited:.0f} s")
        return (
            f"`{edit}` in the container: relaying from {OUTSIDE_CLIENT} {before} -> {after}"
            f" ({waited:.1f} s after the reload)"
        )

    def check_gate_refuses_open_relay(self) -> str:
        """The configuration gate stops a container whose main.cf makes an open relay."""
        conf = Path(tempfile.mkdtemp(dir=self.scratch, prefix="open-relay-"))
        (conf / "main.cf").write_text("compatibility_level = 3.11\nmynetworks = 0.0.0.0/0\n")
        conf.chmod(0o755)
        mounts = {str(conf): {"bind": "/etc/postfix", "mode": "ro"}}
        running = self.start(volumes=mounts, env={"POSTFIX_mynetworks": None}, wait=False)
        rc = running.wait_for_exit(timeout=60)
        lines = running.logs().strip().splitlines()
        last = lines[-1] if lines else ""
        expect(rc != 0, "a container with mynetworks = 0.0.0.0/0 kept running")
        expect("open-relay-mynetworks" in last, f"last line: {last[:200]}")
        return f"mynetworks = 0.0.0.0/0: exit {rc}, {last[:90]}..."

    def exec_default(
        self, cmd: Sequence[str], *, check: bool = True, accept: Collection[int] = (0,)
    ) -> tuple[int, str]:
        """Run a command in a throwaway container of the image (no Postfix started)."""
        return run_tool(self.client, self.image, cmd, check=check, accept=accept)

    def run_tls_client(self, cmd: Sequence[str]) -> tuple[int, str]:
        """Run an openssl command in the TLS client image; the caller judges its status."""
        return run_tool(self.client, self.tls_client, cmd, check=False)

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
        skipped = "reload (configuration or certificate files changed) skipped: "
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
        changed = "reload (configuration or certificate files changed)"
        expect(wait_until(lambda: changed in running.logs(), 20), "no reload after renewal")
        expect(
            wait_until(lambda: self.peer_subject(running) == "CN=pfbuild-mounted-2", 10),
            "the renewed certificate is not presented",
        )
        return "mounted certificate presented; renewal reloaded and presented"

    def peer_subject(self, running: PostfixContainer) -> str:
        """The subject of the certificate STARTTLS presents."""
        _, out = self.run_tls_client(s_client_cmdline(running.port))
        return certificate_subject(out)

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
    locked_down: bool = False,
) -> list[Proof]:
    """Run every acceptance proof against containers of `image`; return the results.

    `locked_down`: every container runs locked down (read-only root, minimal capabilities,
    no-new-privileges), and the proofs are named "... (locked down)".
    """
    prover = ImageProver(client, image, tls_client, scratch, locked_down)
    try:
        main = prover.start()
        checks: list[tuple[str, Callable[[], str]]] = [
            ("banner", lambda: prover.check_banner(main)),
            ("starttls", lambda: prover.check_starttls(main)),
            ("post-quantum group", lambda: prover.check_pq_group(main)),
            ("TLS 1.1 refused", lambda: prover.check_tls11_refused(main)),
            ("relay denied", lambda: prover.check_relay_denied(main)),
            ("local mail accepted", lambda: prover.check_local_accepted(main)),
            ("no config warnings", lambda: prover.check_no_config_warnings(main)),
            ("mimalloc preloaded", lambda: prover.check_preload(main, MIMALLOC_LIB)),
            ("MALLOC=jemalloc", lambda: prover.check_preload_of("jemalloc", JEMALLOC_LIB)),
            ("MALLOC=none", lambda: prover.check_preload_of("none", None)),
            ("MALLOC=bogus refused", prover.check_bogus_malloc),
            ("config volume", prover.check_config_volume),
            ("postfix reload by the admin", prover.check_admin_reload),
            ("open relay refused at start", prover.check_gate_refuses_open_relay),
            ("read-only main.cf", prover.check_readonly_main_cf),
            ("queue survives", prover.check_queue_survives),
            ("reload interval", prover.check_reload_logged),
            ("remote syslog", prover.check_syslog),
            ("mounted certificate", prover.check_mounted_certificate),
        ]
        if locked_down:
            checks.append(("lock-down in effect", lambda: prover.check_lockdown(main)))
        else:
            checks.append(("setuid/setgid files", prover.check_setid_files))
        if healthcheck:
            checks.append(("healthcheck", lambda: prover.check_healthy(main)))
        suffix = " (locked down)" if locked_down else ""
        return [_proof(f"{name}{suffix}", check) for name, check in checks]
    finally:
        prover.close()
