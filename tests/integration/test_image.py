"""The Postfix images for real: built from our published repo, proven against running containers.

Each variant is built once per session (Docker's layer cache makes a rebuild with an unchanged
repository take seconds) and one long-lived container per variant serves the read-only checks;
the checks that need their own settings start containers of their own.

The product's ImageProver only starts the containers here. What each test asserts on is what a
client of its own saw: smtplib and raw sockets on 127.0.0.1, openssl s_client in the TLS client
image, /proc/<pid>/maps read on the host, `docker inspect`, `docker logs` and Postfix's own tools.
The product's own checks (builder/image/proofs.py) are run as a whole by the release's
image-test action, which tests/e2e/test_release.py asserts on.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path

import pytest

import docker
from builder.bootstrap.buildenv import ensure_base_image
from builder.check.config.rules import RULES
from builder.core.checkout import DOCKER_DIR
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.image import build as image
from builder.image.container import LOCKDOWN_CAPS, PostfixContainer
from builder.image.proofs import ImageProver
from builder.image.smtp import free_port
from builder.image.stage import build_variant_image
from builder.image.tlsclient import ensure_tls_client_image
from builder.model.distro import TRIXIE
from tests.fixtures.sasl import dovecot_auth, ensure_dovecot_image
from tests.integration.conftest import POSTFIX_VERSION

pytestmark = pytest.mark.integration

TEST_IMAGE_NAME = "pfbuild-postfix-test"

LOOPBACK = "127.0.0.1"
# The test containers' mynetworks is 127.0.0.1/32: a client bound here is a stranger.
OUTSIDE = "127.0.0.5"
CLIENT_HELO = "client.example.com"
PQ_GROUP = "X25519MLKEM768"
ALLOCATORS = {"mimalloc": "/libmimalloc-secure.so", "jemalloc": "/libjemalloc.so"}
CONFIGS = Path(__file__).resolve().parents[1] / "data" / "postfix-configs"


@pytest.fixture(scope="session")
def client(shared_ctx: Context) -> docker.DockerClient:
    return docker_client(shared_ctx)


@pytest.fixture(scope="session")
def tls_client(shared_ctx: Context, client: docker.DockerClient) -> str:
    return ensure_tls_client_image(client, ensure_base_image(shared_ctx, TRIXIE))


@pytest.fixture(scope="session", params=image.variants())
def built(request: pytest.FixtureRequest, published: Context) -> image.BuiltImage:
    """One variant's image, built from the published repository."""
    config = image.ImageConfig(name=TEST_IMAGE_NAME, revision="test", created_epoch=1_764_000_000)
    return build_variant_image(published, config, str(request.param))


@pytest.fixture(scope="session")
def prover(
    built: image.BuiltImage, client: docker.DockerClient, tls_client: str
) -> Iterator[ImageProver]:
    with tempfile.TemporaryDirectory(prefix="pfbuild-imagetest-") as tmp:
        prover = ImageProver(client, built.tags[0], tls_client, Path(tmp))
        try:
            yield prover
        finally:
            prover.close()


@pytest.fixture(scope="session")
def locked_prover(
    built: image.BuiltImage, client: docker.DockerClient, tls_client: str
) -> Iterator[ImageProver]:
    """Starts containers of the variant locked down (read-only, minimal capabilities)."""
    with tempfile.TemporaryDirectory(prefix="pfbuild-imagetest-") as tmp:
        prover = ImageProver(client, built.tags[0], tls_client, Path(tmp), locked_down=True)
        try:
            yield prover
        finally:
            prover.close()


@pytest.fixture(scope="session")
def main_container(prover: ImageProver) -> PostfixContainer:
    """The variant's long-lived container with the default settings."""
    return prover.start()


# --- the tests' own clients --------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def read_banner(port: int, timeout: float = 60) -> str:
    """The first line the server on 127.0.0.1:port sends, polled until one arrives."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
                line = sock.makefile("rb").readline().decode(errors="replace")
                sock.sendall(b"QUIT\r\n")
                if line:
                    return line.rstrip("\r\n")
        except OSError:
            pass
        assert time.monotonic() < deadline, f"nothing greeted on {LOOPBACK}:{port}"
        time.sleep(0.1)


def smtp_session(port: int, source: str = LOOPBACK) -> smtplib.SMTP:
    return smtplib.SMTP(
        LOOPBACK, port, local_hostname=CLIENT_HELO, timeout=10, source_address=(source, 0)
    )


def any_certificate() -> ssl.SSLContext:
    # The containers' certificates are self-signed: what they present is the observation.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def presented_certificate(port: int) -> bytes:
    """The DER certificate the server presents after STARTTLS."""
    with smtp_session(port) as smtp:
        smtp.starttls(context=any_certificate())
        assert isinstance(smtp.sock, ssl.SSLSocket)
        der = smtp.sock.getpeercert(binary_form=True)
        assert der is not None
        return der


def docker_run(
    client: docker.DockerClient,
    image_ref: str,
    cmd: Sequence[str],
    volumes: dict[str, dict[str, str]] | None = None,
) -> tuple[int, str]:
    """`docker run --rm --network host [-v ...] IMAGE CMD...`: its exit status and output."""
    box = client.containers.run(
        image_ref, list(cmd), network_mode="host", detach=True, volumes=volumes or {}
    )
    try:
        status = int(box.wait(timeout=120)["StatusCode"])
        out = box.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        box.remove(force=True, v=True)
    return status, out


def s_client(
    client: docker.DockerClient, tls_client: str, port: int, *options: str
) -> tuple[int, str]:
    """openssl s_client -starttls smtp against 127.0.0.1:port, run in the TLS client image."""
    cmd = ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{LOOPBACK}:{port}"]
    return docker_run(client, tls_client, [*cmd, *options])


def docker_exec(running: PostfixContainer, cmd: Sequence[str]) -> tuple[int, str]:
    """`docker exec CONTAINER CMD...`: its exit status and output."""
    result = running.container.exec_run(list(cmd))
    assert result.exit_code is not None and isinstance(result.output, bytes)
    return result.exit_code, result.output.decode(errors="replace")


def docker_logs(running: PostfixContainer) -> str:
    return running.container.logs(stdout=True, stderr=True).decode(errors="replace")


def docker_state(running: PostfixContainer) -> dict[str, object]:
    running.container.reload()
    state: dict[str, object] = running.container.attrs["State"]
    return state


def host_pids(running: PostfixContainer, program: str) -> list[int]:
    """Host pids of the container's processes running `program`, as `docker top` lists them."""
    top = running.container.top(ps_args="-eo pid,args")
    titles = [t.upper() for t in top["Titles"]]
    pid_col, args_col = titles.index("PID"), titles.index("COMMAND")
    return [
        int(proc[pid_col])
        for proc in top["Processes"] or []
        if proc[args_col].split()[0].rsplit("/", 1)[-1] == program
    ]


def first_pid(running: PostfixContainer, program: str, timeout: float = 10) -> int:
    """The host pid of the container's first `program` process, waited for."""
    pids: list[int] = []

    def listed() -> bool:
        pids[:] = host_pids(running, program)
        return bool(pids)

    assert wait_until(listed, timeout), f"no {program} process in {running.name}"
    return pids[0]


def mapped_allocators(running: PostfixContainer) -> dict[str, set[str]]:
    """Per daemon (master, smtpd): the allocators in its /proc/<pid>/maps, read on the host."""
    found: dict[str, set[str]] = {}
    with smtp_session(running.port) as smtp:
        smtp.ehlo()  # the master forked an smtpd for this session; it lives while we hold it
        for program in ("master", "smtpd"):
            maps = Path(f"/proc/{first_pid(running, program)}/maps").read_text()
            found[program] = {name for name, lib in ALLOCATORS.items() if lib in maps}
    return found


def make_certificate(directory: Path, name: str) -> bytes:
    """A self-signed key and certificate named like certbot's; returns the certificate's DER."""
    key, cert = directory / "privkey.pem", directory / "fullchain.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-keyout", f"{key}.new", "-out", f"{cert}.new"],
        check=True, capture_output=True,
    )  # fmt: skip
    # Renamed into place, as certbot does, so a watcher never sees half a file.
    os.replace(f"{key}.new", key)
    os.replace(f"{cert}.new", cert)
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


# --- the tests ---------------------------------------------------------------------------------


def test_tags_and_labels(built: image.BuiltImage, client: docker.DockerClient) -> None:
    assert built.version == POSTFIX_VERSION
    assert list(built.tags) == image.image_tags(TEST_IMAGE_NAME, POSTFIX_VERSION, built.variant)
    attrs = client.images.get(built.tags[1]).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == POSTFIX_VERSION
    assert labels["org.opencontainers.image.created"] == "2025-11-24T16:00:00Z"
    assert labels["org.opencontainers.image.revision"] == "test"
    assert attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"


def test_installed_from_our_repo_without_leftovers(
    built: image.BuiltImage, client: docker.DockerClient
) -> None:
    query = ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "postfix", "libmimalloc-secure"]
    rc, out = docker_run(client, built.tags[0], query)
    assert rc == 0, out
    versions = dict(line.split(" ", 1) for line in out.splitlines())
    assert versions["postfix"].startswith(f"{POSTFIX_VERSION}-") and "+pf" in versions["postfix"]
    assert (
        versions["libmimalloc-secure"].startswith("2.0.9")
        and "+pf" in versions["libmimalloc-secure"]
    )
    # apt is purged with its lists, sources, keys and pin: dpkg knows it is gone.
    leftovers = (
        "ls -d /etc/apt /var/lib/apt /var/cache/apt 2>/dev/null; "
        "dpkg-query -W -f='${db:Status-Abbrev}${Package}\\n' apt 2>/dev/null | grep '^ii'; "
        "command -v apt-get apt gcc cc make dpkg-buildpackage gpg; "
        "find / -xdev \\( -name pfbuild.asc -o -name 'secring*' -o -name private-keys-v1.d \\)"
    )
    # The status is only the last command's: what they print is the finding.
    _, out = docker_run(client, built.tags[0], ["bash", "-c", leftovers])
    assert out.split() == [], f"apt, its lists, sources, keys or build tools left: {out.split()}"


def test_banner(main_container: PostfixContainer) -> None:
    line = read_banner(main_container.port)
    print(line)
    assert line.startswith("220 "), line
    assert "ESMTP" in line.split(), line
    assert main_container.banner_seconds < 10


def test_starttls(main_container: PostfixContainer) -> None:
    with smtp_session(main_container.port) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls"), smtp.esmtp_features
        code, reply = smtp.starttls(context=any_certificate())
        assert code == 220, reply
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.sock.version() == "TLSv1.3"
        assert smtp.ehlo()[0] == 250
        # RFC 3207: not offered again inside TLS.
        assert not smtp.has_extn("starttls"), smtp.esmtp_features


def test_post_quantum_group(
    client: docker.DockerClient, tls_client: str, main_container: PostfixContainer
) -> None:
    # Offering only the hybrid group: the handshake succeeds only if the server speaks it.
    rc, out = s_client(client, tls_client, main_container.port, "-groups", PQ_GROUP)
    assert rc == 0, out[-1500:]
    assert re.search(rf"^Negotiated TLS1\.3 group: {PQ_GROUP}\s*$", out, re.M), out[-1500:]


def test_tls11_refused(
    client: docker.DockerClient, tls_client: str, main_container: PostfixContainer
) -> None:
    # Security level 0 lets our client offer the old protocol: any refusal is the server's.
    weak = ("-cipher", "DEFAULT@SECLEVEL=0")
    rc, out = s_client(client, tls_client, main_container.port, "-tls1_2", *weak)
    assert rc == 0, out[-1500:]
    assert re.search(r"^New, TLSv1\.2, Cipher is [A-Z]", out, re.M), out[-1500:]
    rc, out = s_client(client, tls_client, main_container.port, "-tls1_1", *weak)
    assert rc != 0, out[-1500:]
    assert "no protocols available" not in out, "our client refused, not the server"
    assert "Cipher is (NONE)" in out or "alert protocol version" in out, out[-1500:]
    assert not re.search(r"^New, TLSv1(\.1)?, Cipher is [A-Z]", out, re.M), out[-1500:]


def test_no_open_relay(main_container: PostfixContainer) -> None:
    local = f"postmaster@{read_banner(main_container.port).split()[1]}"
    with smtp_session(main_container.port, source=OUTSIDE) as smtp:
        smtp.ehlo()
        assert smtp.mail("<>")[0] == 250
        code, reply = smtp.rcpt("someone@example.net")
        assert code == 554, reply
        assert reply.startswith(b"5.7.1") and b"Relay access denied" in reply, reply
        # The same stranger may still mail the server's own domain.
        code, reply = smtp.rcpt(local)
        assert code == 250, reply
        smtp.rset()


def test_sender_checks_bind_strangers_not_local_clients(main_container: PostfixContainer) -> None:
    local = f"postmaster@{read_banner(main_container.port).split()[1]}"
    with smtp_session(main_container.port, source=OUTSIDE) as smtp:
        smtp.ehlo()
        assert smtp.mail("<root>")[0] == 250
        code, reply = smtp.rcpt(local)
        assert code == 504 and b"need fully-qualified address" in reply, reply
        smtp.rset()
        # No DNS answers in the test network: the unknown domain is refused, if only for now.
        assert smtp.mail("<someone@unknown-domain.invalid>")[0] == 250
        code, reply = smtp.rcpt(local)
        assert code in (450, 550) and b"Sender address rejected" in reply, reply
        smtp.rset()
    # A program on the host (in mynetworks) may send as a bare local name, as Debian's tests do.
    with smtp_session(main_container.port) as smtp:
        smtp.ehlo()
        assert smtp.mail("<root>")[0] == 250
        code, reply = smtp.rcpt(local)
        assert code == 250, reply
        smtp.rset()


def test_no_config_warnings(main_container: PostfixContainer) -> None:
    for cmd in (
        ["postconf"],
        ["postfix", "check"],
        ["postfix", "-c", "/run/pfbuild-postfix", "check"],
    ):
        rc, out = docker_exec(main_container, cmd)
        assert rc == 0, (cmd, out[-500:])
        warnings = [line for line in out.splitlines() if "warning:" in line]
        assert warnings == [], (cmd, warnings)


def test_mimalloc_is_preloaded_by_default(main_container: PostfixContainer) -> None:
    assert mapped_allocators(main_container) == {"master": {"mimalloc"}, "smtpd": {"mimalloc"}}


@pytest.mark.parametrize("malloc", ["jemalloc", "none"])
def test_malloc_choice(prover: ImageProver, malloc: str) -> None:
    running = prover.start(env={"MALLOC": malloc})
    try:
        expected = {malloc} & set(ALLOCATORS)
        assert mapped_allocators(running) == {"master": expected, "smtpd": expected}
    finally:
        running.remove()


def test_bogus_malloc_stops_the_container(prover: ImageProver) -> None:
    running = prover.start(env={"MALLOC": "bogus"}, wait=False)
    status = running.container.wait(timeout=30)["StatusCode"]
    assert status != 0
    assert docker_state(running)["Status"] == "exited"
    lines = [line for line in docker_logs(running).splitlines() if line.strip()]
    assert lines == ["bootstrap: error: MALLOC=bogus is not one of mimalloc, jemalloc, none"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, running.port), timeout=2).close()


def test_config_volume_edit_survives_and_broken_master_cf_is_not_reloaded(
    prover: ImageProver, tmp_path: Path
) -> None:
    conf = tmp_path / "etc-postfix"
    conf.mkdir()
    mounts = {str(conf): {"bind": "/etc/postfix", "mode": "rw"}}
    running = prover.start(volumes=mounts, env={"RELOAD_INTERVAL": "2"})
    main_cf = conf / "main.cf"
    assert main_cf.is_file(), f"defaults not copied: {sorted(p.name for p in conf.iterdir())}"
    main_cf.write_text(main_cf.read_text() + "smtpd_banner = $myhostname ESMTP pfbuild-edited\n")
    edited = main_cf.read_bytes()
    running.container.restart(timeout=10)
    banner = read_banner(running.port)
    assert banner.startswith("220 ") and banner.endswith(" ESMTP pfbuild-edited"), banner
    assert main_cf.read_bytes() == edited, "main.cf was rewritten"

    master_cf = conf / "master.cf"
    master_cf.write_text(master_cf.read_text() + "this line breaks master.cf\n")
    # The gate reads master.cf as Postfix does and refuses the line first.
    skipped = "reload (configuration or certificate files changed) skipped: "
    assert wait_until(lambda: skipped in docker_logs(running), 20), docker_logs(running)[-1500:]
    assert "config-syntax" in docker_logs(running).split(skipped)[1].splitlines()[0]
    time.sleep(3)  # past the next reload attempt too
    assert docker_state(running)["Status"] == "running"
    assert read_banner(running.port, timeout=5).endswith(" ESMTP pfbuild-edited")


def test_read_only_main_cf(
    prover: ImageProver, client: docker.DockerClient, tmp_path: Path
) -> None:
    rc, default = docker_run(client, prover.image, ["cat", "/etc/postfix.orig/main.cf"])
    assert rc == 0, default
    main_cf = tmp_path / "main.cf"
    main_cf.write_text(default)
    # An administrator's main.cf is not seconds old; Postfix dozes on files that are.
    old = time.time() - 60
    os.utime(main_cf, (old, old))
    before = main_cf.stat()
    mounts = {str(main_cf): {"bind": "/etc/postfix/main.cf", "mode": "ro"}}
    running = prover.start(volumes=mounts)
    running.container.reload()
    mount = next(
        m for m in running.container.attrs["Mounts"] if m["Destination"] == "/etc/postfix/main.cf"
    )
    assert (mount["Source"], mount["RW"]) == (str(main_cf), False), mount
    assert read_banner(running.port).startswith("220 ")
    rc, out = docker_exec(running, ["sh", "-c", "echo '# x' >> /etc/postfix/main.cf"])
    assert rc != 0 and "Read-only file system" in out, out
    after = main_cf.stat()
    assert main_cf.read_text() == default
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_queued_mail_survives_replacing_the_container(
    prover: ImageProver, client: docker.DockerClient
) -> None:
    spool = client.volumes.create(name=f"pfbuild-imagetest-spool-{uuid.uuid4().hex[:12]}")
    try:
        mounts = {str(spool.name): {"bind": "/var/spool/postfix", "mode": "rw"}}
        env = {"POSTFIX_defer_transports": "local"}  # held in the queue, not delivered
        first = prover.start(volumes=mounts, env=env)
        rcpt = f"postmaster@{read_banner(first.port).split()[1]}"
        with smtp_session(first.port) as smtp:
            smtp.ehlo()
            smtp.mail("<>")
            assert smtp.rcpt(rcpt)[0] == 250
            body = f"Subject: queued\r\nTo: <{rcpt}>\r\n\r\npfbuild image test\r\n"
            code, reply = smtp.data(body.encode())
        assert code == 250, reply
        queued = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
        assert queued, reply
        queue_id = queued.group(1).decode()
        first.container.stop(timeout=10)
        first.remove()

        second = prover.start(volumes=mounts, env=env)

        def listed() -> bool:
            _, out = docker_exec(second, ["postqueue", "-j"])
            lines = [line for line in out.splitlines() if line.startswith("{")]
            return queue_id in {json.loads(line)["queue_id"] for line in lines}

        assert wait_until(listed, 10), docker_exec(second, ["postqueue", "-p"])[1]
        second.remove()
    finally:
        spool.remove(force=True)


def test_reload_interval(prover: ImageProver) -> None:
    running = prover.start(env={"RELOAD_INTERVAL": "2"})
    master = first_pid(running, "master")
    reload_line = f"reload -- version {POSTFIX_VERSION}"
    reloaded = wait_until(lambda: docker_logs(running).count(reload_line) >= 2, 30)
    assert reloaded, docker_logs(running)[-1500:]
    # The same master, reloaded twice: neither restarted nor stopped.
    assert host_pids(running, "master") == [master]
    assert read_banner(running.port).startswith("220 ")


def relay_reply(port: int) -> tuple[int, bytes]:
    """What a stranger at 127.0.0.5 hears when it asks to relay to another domain."""
    with smtp_session(port, source=OUTSIDE) as smtp:
        smtp.ehlo()
        assert smtp.mail("<>")[0] == 250
        reply = smtp.rcpt("someone@example.net")
        smtp.rset()
    return reply


def test_admin_postconf_and_postfix_reload_change_what_runs(prover: ImageProver) -> None:
    # No POSTFIX_mynetworks: the image's main.cf trusts 127.0.0.0/8, so 127.0.0.5 may relay.
    # The reload loop is slowed down: only the admin's `postfix reload` can make the change.
    running = prover.start(env={"POSTFIX_mynetworks": None, "RELOAD_POLL": "3600"})
    master = first_pid(running, "master")
    assert relay_reply(running.port)[0] == 250
    rc, out = docker_exec(
        running, ["sh", "-c", "postconf -e mynetworks=127.0.0.1/32 && postfix reload"]
    )
    assert rc == 0, out
    # An smtpd that was idle at the reload may serve one more client on the old settings
    # (as on any Postfix host): the admin's answer comes within seconds.
    deadline = time.monotonic() + 10
    while (answer := relay_reply(running.port))[0] != 554 and time.monotonic() < deadline:
        time.sleep(0.5)
    code, reply = answer
    assert code == 554 and b"Relay access denied" in reply, reply
    # postconf without -c reads what runs (the container's settings included), not just
    # /etc/postfix; postqueue finds the running queue.
    assert docker_exec(running, ["postconf", "-h", "mynetworks"]) == (0, "127.0.0.1/32\n")
    assert docker_exec(running, ["postconf", "-h", "maillog_file"]) == (0, "/dev/stdout\n")
    rc, out = docker_exec(running, ["postqueue", "-p"])
    assert rc == 0 and "Mail queue is empty" in out, out
    assert host_pids(running, "master") == [master], "reloaded, not restarted"


def test_main_cf_edits_are_picked_up_and_the_gate_refuses_an_open_relay(
    prover: ImageProver,
) -> None:
    running = prover.start(env={"POSTFIX_mynetworks": None, "RELOAD_POLL": "1"})
    assert relay_reply(running.port)[0] == 250
    rc, out = docker_exec(running, ["postconf", "-e", "mynetworks = 127.0.0.1/32"])
    assert rc == 0, out
    assert wait_until(lambda: relay_reply(running.port)[0] == 554, 15), docker_logs(running)
    assert "reload (configuration or certificate files changed)" in docker_logs(running)

    rc, out = docker_exec(
        running, ["sh", "-c", "postconf -e 'mynetworks = 0.0.0.0/0' && postfix reload"]
    )
    assert rc != 0, out
    assert "error open-relay-mynetworks mynetworks" in out, out
    assert "reload (requested) skipped: the configuration gate refuses it" in out, out
    time.sleep(3)  # the loop tries the refused files once, then waits for the next change
    logs = docker_logs(running)
    assert logs.count("skipped: the configuration gate refuses it") == 1, logs[-2000:]
    assert relay_reply(running.port)[0] == 554
    assert docker_exec(running, ["postconf", "-h", "mynetworks"]) == (0, "127.0.0.1/32\n")


def test_gate_refuses_to_start_an_open_relay(prover: ImageProver) -> None:
    mounts = {str(CONFIGS / "open-relay"): {"bind": "/etc/postfix", "mode": "ro"}}
    running = prover.start(volumes=mounts, env={"POSTFIX_mynetworks": None}, wait=False)
    assert running.container.wait(timeout=60)["StatusCode"] != 0
    last = docker_logs(running).strip().splitlines()[-1]
    assert last.startswith(
        "bootstrap: error: the configuration gate refuses it: error open-relay-mynetworks "
    ), last
    assert "fix: postconf -e 'mynetworks = 127.0.0.0/8" in last and "LINT=warn" in last, last
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, running.port), timeout=2).close()


def test_lint_warn_starts_anyway(prover: ImageProver, tmp_path: Path) -> None:
    # The open-relay fixture's restrictions Postfix itself refuses to run; this one it runs.
    (tmp_path / "main.cf").write_text("compatibility_level = 3.11\nmynetworks = 0.0.0.0/0\n")
    tmp_path.chmod(0o755)
    mounts = {str(tmp_path): {"bind": "/etc/postfix", "mode": "ro"}}
    running = prover.start(volumes=mounts, env={"POSTFIX_mynetworks": None, "LINT": "warn"})
    assert running.banner.startswith("220 ")
    logs = docker_logs(running)
    assert "bootstrap: gate: error open-relay-mynetworks mynetworks (main.cf:2)" in logs, logs
    assert "(going on: LINT=warn)" in logs


def test_check_reports_an_old_configuration_mounted_read_only(
    prover: ImageProver, client: docker.DockerClient
) -> None:
    mounts = {str(CONFIGS / "old-3.6"): {"bind": "/etc/postfix", "mode": "ro"}}
    rc, out = docker_run(client, prover.image, ["/usr/local/sbin/bootstrap.sh", "check"], mounts)
    assert rc == 3, out
    findings = [
        line.split()[2:4] for line in out.splitlines() if line.startswith("bootstrap: gate: ")
    ]
    rules = {rule for severity, rule in findings if severity in ("error", "warning", "info")}
    # Every rule fires on this fixture; unknown-parameter needs the image's own postconf -d.
    assert rules == set(RULES), sorted(set(RULES) ^ rules)


def test_check_passes_the_image_defaults(main_container: PostfixContainer) -> None:
    rc, out = docker_exec(main_container, ["/usr/local/sbin/bootstrap.sh", "check"])
    assert rc == 0, out
    assert "bootstrap: gate: /etc/postfix with the container's settings: no findings" in out, out


def test_remote_syslog_and_stdout(prover: ImageProver) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((LOOPBACK, 0))
        udp.settimeout(0.5)
        port = udp.getsockname()[1]
        running = prover.start(env={"SYSLOG_HOST": LOOPBACK, "SYSLOG_PORT": str(port)})
        with smtp_session(running.port) as smtp:
            smtp.ehlo()
        received: list[str] = []
        deadline = time.monotonic() + 20
        while not any("connect from" in d for d in received) and time.monotonic() < deadline:
            with suppress(TimeoutError):
                received.append(udp.recv(65536).decode(errors="replace"))
    # RFC 3164: <PRI>timestamp host tag[pid]: text; the client is us, from 127.0.0.1.
    syslog = re.compile(
        r"<\d{1,3}>\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ "
        r"(postfix/smtpd\[\d+\]: connect from \S*\[127\.0\.0\.1\])$"
    )
    matches = [m for m in map(syslog.match, received) if m]
    assert matches, received[-5:]
    assert matches[0].group(1) in docker_logs(running)


def test_postscreen_answers_and_drops_a_pregreet_client(prover: ImageProver) -> None:
    running = prover.start(env={"POSTSCREEN": "yes"})
    assert host_pids(running, "postscreen"), "no postscreen process"
    # A stranger that waits for the whole greeting reaches smtpd through postscreen.
    with smtp_session(running.port, source=OUTSIDE) as smtp:
        code, _ = smtp.ehlo()
        assert code == 250
    # One that talks first is dropped (another address: postscreen remembers who passed).
    pregreeter = "127.0.0.6"
    with socket.create_connection(
        (LOOPBACK, running.port), timeout=30, source_address=(pregreeter, 0)
    ) as sock:
        sock.sendall(b"EHLO pregreet.example\r\n")
        received = b""
        with suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(4096):
                received += chunk
    assert b"521 5.5.1 Protocol error" in received, received
    # postscreen logs the verdict as it drops the client: the line may come a moment later.
    pregreet = re.compile(rf"postscreen\[\d+\]: PREGREET \d+ after [\d.]+ from \[{pregreeter}\]")
    deadline = time.monotonic() + 10
    while not pregreet.search(logs := docker_logs(running)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pregreet.search(logs), logs[-2000:]
    assert f"PASS NEW [{OUTSIDE}]" in logs, logs[-2000:]
    _, out = docker_exec(running, ["postconf", "-h", "postscreen_dnsbl_sites"])
    assert "sorbs" not in out and "zen.spamhaus.org=127.0.0.[2..11]" in out, out


SASL_USER, SASL_PASSWORD = "alice@example.org", "correct horse battery staple"


@pytest.fixture(scope="session")
def sasl_path(shared_ctx: Context, client: docker.DockerClient) -> Iterator[str]:
    """A real SASL backend (Dovecot's auth service) that knows SASL_USER."""
    image_ref = ensure_dovecot_image(client, ensure_base_image(shared_ctx, TRIXIE))
    with tempfile.TemporaryDirectory(prefix="pfbuild-sasl-") as tmp:
        users = {SASL_USER: SASL_PASSWORD}
        with dovecot_auth(client, image_ref, Path(tmp), free_port(), users) as path:
            yield path


def test_submission_wants_tls_and_authentication(prover: ImageProver, sasl_path: str) -> None:
    port, implicit = free_port(), free_port()
    env = {"SUBMISSION": "yes", "SUBMISSION_PORT": str(port), "SUBMISSIONS": "yes",
           "SUBMISSIONS_PORT": str(implicit), "SASL_PATH": sasl_path}  # fmt: skip
    running = prover.start(env=env)
    assert read_banner(port).startswith("220 ")
    # Without TLS: no AUTH offered, and nothing accepted.
    with smtp_session(port, source=OUTSIDE) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth"), smtp.esmtp_features
        code, reply = smtp.mail("<alice@example.org>")
        assert code == 530 and b"STARTTLS" in reply, reply
    # With TLS but without authentication: refused.
    with smtp_session(port, source=OUTSIDE) as smtp:
        smtp.starttls(context=any_certificate())
        smtp.ehlo()
        assert "PLAIN" in smtp.esmtp_features.get("auth", "").upper(), smtp.esmtp_features
        assert smtp.mail("<alice@example.org>")[0] == 250
        code, reply = smtp.rcpt("someone@example.net")
        assert code == 554, reply
    # A wrong password is refused by the backend.
    with smtp_session(port, source=OUTSIDE) as smtp:
        smtp.starttls(context=any_certificate())
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(SASL_USER, "wrong password")
    # Authenticated over TLS: the user may send anywhere.
    with smtp_session(port, source=OUTSIDE) as smtp:
        smtp.starttls(context=any_certificate())
        smtp.ehlo()
        smtp.login(SASL_USER, SASL_PASSWORD)
        assert smtp.mail("<alice@example.org>")[0] == 250
        code, reply = smtp.rcpt("someone@example.net")
        assert code == 250, reply
        smtp.rset()
    # Implicit TLS on the submissions port.
    with smtplib.SMTP_SSL(
        LOOPBACK, implicit, timeout=30, context=any_certificate(),
        source_address=(OUTSIDE, 0), local_hostname=CLIENT_HELO,
    ) as smtp:  # fmt: skip
        smtp.ehlo()
        smtp.login(SASL_USER, SASL_PASSWORD)
        assert smtp.mail("<alice@example.org>")[0] == 250
        assert smtp.rcpt("someone@example.net")[0] == 250
        smtp.rset()
    logs = docker_logs(running)
    assert "postfix/submission/smtpd" in logs and "sasl_username=alice@example.org" in logs, logs[
        -2000:
    ]
    assert "bootstrap: gate: /etc/postfix with the container's settings: no findings" in logs


def test_json_logs(prover: ImageProver) -> None:
    running = prover.start(env={"LOG_FORMAT": "json", "POSTFIX_defer_transports": "local"})
    rcpt = f"postmaster@{read_banner(running.port).split()[1]}"
    with smtp_session(running.port) as smtp:
        smtp.ehlo()
        smtp.mail("<>")
        assert smtp.rcpt(rcpt)[0] == 250
        code, reply = smtp.data(b"Subject: json\r\n\r\npfbuild json log test\r\n")
    assert code == 250, reply
    queued = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
    assert queued, reply
    queue_id = queued.group(1).decode()

    def records() -> list[dict[str, object]]:
        out = running.container.logs(stdout=True, stderr=False).decode(errors="replace")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def cleanup_record() -> bool:
        return any(r["program"] == "postfix/cleanup" and r.get("queue_id") == queue_id
                   for r in records())  # fmt: skip

    assert wait_until(cleanup_record, 10), records()[-5:]
    smtpd = [r for r in records() if r["program"] == "postfix/smtpd"]
    assert any(str(r["message"]).startswith("connect from ") for r in smtpd), smtpd
    assert all(isinstance(r["pid"], int) for r in smtpd)


def test_mounted_certificate_and_its_renewal(prover: ImageProver, tmp_path: Path) -> None:
    certs = tmp_path / "live-mx"
    certs.mkdir()
    first = make_certificate(certs, "pfbuild-mounted-1")
    mounts = {str(certs): {"bind": "/etc/letsencrypt/live/mx", "mode": "ro"}}
    env = {
        "TLS_CERT_FILE": "/etc/letsencrypt/live/mx/fullchain.pem",
        "TLS_KEY_FILE": "/etc/letsencrypt/live/mx/privkey.pem",
        "RELOAD_POLL": "1",
    }
    running = prover.start(volumes=mounts, env=env)
    assert presented_certificate(running.port) == first
    renewed = make_certificate(certs, "pfbuild-mounted-2")
    assert renewed != first
    assert wait_until(lambda: presented_certificate(running.port) == renewed, 30, step=1)


# --- locked down ------------------------------------------------------------------------------

# Capability bits in /proc/<pid>/status (linux/capability.h), read on the host.
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "SETGID": 6, "SETUID": 7,
            "NET_BIND_SERVICE": 10}  # fmt: skip


def host_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_locked_down_master_runs_with_the_named_capabilities_only(
    locked_prover: ImageProver,
) -> None:
    running = locked_prover.start()
    running.container.reload()
    host = running.container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    status = host_status(first_pid(running, "master"))
    caps = int(status["CapEff"], 16)
    assert caps == sum(1 << CAP_BITS[name] for name in LOCKDOWN_CAPS), status["CapEff"]
    assert status["NoNewPrivs"] == "1"
    # The daemons drop to the postfix user: no capability left at all.
    with smtp_session(running.port) as smtp:
        smtp.ehlo()
        smtpd_status = host_status(first_pid(running, "smtpd"))
    assert int(smtpd_status["CapEff"], 16) == 0, smtpd_status["CapEff"]
    assert smtpd_status["Uid"].split()[1] != "0"
    rc, out = docker_exec(running, ["sh", "-c", "echo x > /etc/pfbuild-probe"])
    assert rc != 0 and "Read-only file system" in out, out


def test_no_setid_files_but_postdrop_and_postqueue(
    built: image.BuiltImage, client: docker.DockerClient
) -> None:
    _, out = docker_run(
        client, built.tags[0], ["find", "/", "-xdev", "-type", "f", "-perm", "/6000"]
    )
    assert sorted(out.split()) == ["/usr/sbin/postdrop", "/usr/sbin/postqueue"], out
    _, out = docker_run(client, built.tags[0], ["stat", "-c", "%A %G", "/usr/sbin/postdrop"])
    assert re.fullmatch(r"-r.xr-sr-x postdrop", out.strip()), out


def test_time_zone_works_read_only(locked_prover: ImageProver) -> None:
    # India: +05:30 all year, so the local time of a log line tells the zone apart from UTC.
    running = locked_prover.start(env={"TZ": "Asia/Kolkata"})
    with smtp_session(running.port, source=OUTSIDE) as smtp:
        smtp.ehlo()
    expected = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=5, minutes=30)

    def connect_line() -> str:
        wanted = f"connect from unknown[{OUTSIDE}]"
        lines = docker_logs(running).splitlines()
        return next((x for x in lines if "postfix/smtpd" in x and wanted in x), "")

    assert wait_until(lambda: bool(connect_line()), 10), docker_logs(running)[-1500:]
    stamp = re.match(r"^(\w{3}) +(\d+) (\d\d):(\d\d):\d\d ", connect_line())
    assert stamp, connect_line()
    # Minutes of the day, compared around the clock (a run at midnight stays right).
    logged = int(stamp.group(3)) * 60 + int(stamp.group(4))
    offset = (logged - (expected.hour * 60 + expected.minute)) % 1440
    assert min(offset, 1440 - offset) <= 3, (connect_line(), expected)


def compose_command() -> list[str]:
    """Compose v1 (Debian 12's docker-compose) or the v2 plugin."""
    found = shutil.which("docker-compose")
    return [found] if found else ["docker", "compose"]


def test_compose_file_runs_locked_down_with_a_mounted_certificate(
    built: image.BuiltImage, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    presented = make_certificate(certs, "compose.example.org")
    port = free_port()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    # The test's own additions: DNS never leaves the host.
    override = tmp_path / "override.yaml"
    override.write_text(
        f"services:\n  postfix:\n    volumes:\n      - {resolv}:/etc/resolv.conf:ro\n"
    )
    project = f"pfbuild-compose-{port}"
    compose = [*compose_command(), "-p", project, "-f", str(DOCKER_DIR / "compose.yaml"),
               "-f", str(override)]  # fmt: skip
    env = {**os.environ, "PFBUILD_IMAGE": built.tags[0], "CERT_DIR": str(certs),
           "SMTP_PORT": str(port), "INET_INTERFACES": LOOPBACK, "HEALTH_INTERVAL": "2s",
           "MAIL_HOSTNAME": "compose.example.org"}  # fmt: skip
    try:
        subprocess.run([*compose, "up", "-d"], env=env, check=True, capture_output=True)
        banner = read_banner(port)
        assert banner.startswith("220 compose.example.org ESMTP"), banner
        assert presented_certificate(port) == presented
        names = subprocess.run(
            [*compose, "ps", "-q"], env=env, check=True, capture_output=True, text=True
        ).stdout.split()
        assert len(names) == 1, names
        attrs = json.loads(
            subprocess.run(["docker", "inspect", names[0]], check=True, capture_output=True).stdout
        )[0]
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert sorted(attrs["HostConfig"]["CapAdd"]) == sorted(LOCKDOWN_CAPS)

        def health() -> str:
            out = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", names[0]],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return out.stdout.strip()

        assert wait_until(lambda: health() == "healthy", 60, step=1), health()
    finally:
        subprocess.run(
            [*compose, "down", "-v", "-t", "10"], env=env, capture_output=True, check=False
        )


def test_healthcheck_turns_healthy(main_container: PostfixContainer) -> None:
    # Last on purpose: the first probe runs a minute after start, which has mostly passed.
    def health() -> dict[str, object]:
        found = docker_state(main_container).get("Health")
        assert isinstance(found, dict)
        return found

    assert wait_until(lambda: health()["Status"] == "healthy", 150, step=1), health()
    log = health()["Log"]
    assert isinstance(log, list) and log, health()
    assert log[-1]["ExitCode"] == 0 and "answered 220" in log[-1]["Output"], log[-1]
