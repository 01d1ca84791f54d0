"""docker/ on the host: hadolint, syntax, the settings check, healthcheck, syslog forwarder."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from builder.core import run
from builder.core.checkout import DOCKER_DIR

# The scripts run for real: bootstrap.sh and healthcheck.sh with bash, the forwarder with perl.
pytestmark = pytest.mark.integration

HADOLINT = Path(sys.executable).parent / "hadolint"
BOOTSTRAP = DOCKER_DIR / "bootstrap.sh"
HEALTHCHECK = DOCKER_DIR / "healthcheck.sh"
COMMANDS = DOCKER_DIR / "postfix-command.sh"
FORWARDER = DOCKER_DIR / "syslog-forward.pl"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent"}


@pytest.mark.unit
def test_dockerfile_passes_hadolint() -> None:
    proc = run.run([HADOLINT, "--no-color", DOCKER_DIR / "Dockerfile"], check=False)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout.strip() == b""


@pytest.mark.unit
def test_dockerfile_keeps_the_contract() -> None:
    text = (DOCKER_DIR / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE" in text
    assert 'VOLUME ["/etc/postfix", "/var/lib/postfix", "/var/spool/postfix", "/var/mail"]' in text
    assert "EXPOSE 25\n" in text
    assert "rm -rf /var/lib/apt/lists/*" in text
    assert "mv /etc/postfix /etc/postfix.orig" in text
    assert "HEALTHCHECK --interval=60s" in text


@pytest.mark.parametrize("script", [BOOTSTRAP, HEALTHCHECK, COMMANDS])
def test_shell_scripts_parse(script: Path) -> None:
    run.run(["bash", "-n", script])


def test_shell_scripts_pass_shellcheck() -> None:
    proc = run.run(["shellcheck", BOOTSTRAP, HEALTHCHECK, COMMANDS], check=False)
    assert proc.returncode == 0, proc.stdout.decode()


def test_forwarder_compiles() -> None:
    run.run(["perl", "-c", FORWARDER])


def check_settings(env: dict[str, str]) -> tuple[int, list[str]]:
    """Run only bootstrap.sh's settings check (no side effects) with `env`."""
    proc = run.run(["bash", BOOTSTRAP, "settings"], env={**CLEAN_ENV, **env}, check=False)
    lines = (proc.stdout + proc.stderr).decode().strip().splitlines()
    return proc.returncode, lines


def test_default_settings_pass() -> None:
    assert check_settings({}) == (0, [])


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"MALLOC": "bogus"}, "MALLOC=bogus is not one of mimalloc, jemalloc, none"),
        ({"SYSLOG_PROTO": "sctp"}, "SYSLOG_PROTO=sctp is not udp or tcp"),
        ({"LINT": "strict"}, "LINT=strict is not one of error, warn, off"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT=xml is not text or json"),
        ({"POSTSCREEN": "on"}, "POSTSCREEN=on is not yes or no"),
        ({"SUBMISSIONS": "on"}, "SUBMISSIONS=on is not yes or no"),
        ({"SASL_TYPE": "pam"}, "SASL_TYPE=pam is not dovecot or cyrus"),
        ({"SUBMISSION": "yes"}, "submission needs SASL_PATH, the SASL backend"),
        (
            {"POSTSCREEN_DNSBL_THRESHOLD": "high"},
            "POSTSCREEN_DNSBL_THRESHOLD=high is not a whole number",
        ),
        ({"RELOAD_INTERVAL": "1d"}, "RELOAD_INTERVAL=1d is not a positive whole number"),
        ({"SMTP_PORT": "0"}, "SMTP_PORT=0 is not a positive whole number"),
        (
            {"TZ": "Nowhere/Atlantis"},
            "TZ=Nowhere/Atlantis is not a time zone in /usr/share/zoneinfo",
        ),
        ({"TLS_CERT_FILE": "/x.pem"}, "set both TLS_CERT_FILE and TLS_KEY_FILE, or neither"),
        ({"POSTFIX_MyNetworks": "x"}, "POSTFIX_MyNetworks does not name a Postfix parameter"),
    ],
)
def test_bad_settings_stop_with_one_line(env: dict[str, str], line: str) -> None:
    rc, lines = check_settings(env)
    assert rc == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"bootstrap: error: {line}")


def test_good_settings_pass() -> None:
    env = {"MALLOC": "none", "SYSLOG_PROTO": "tcp", "RELOAD_INTERVAL": "60", "TZ": "UTC",
           "LINT": "warn"}  # fmt: skip
    assert check_settings({**env, "POSTFIX_mynetworks": "127.0.0.1/32"}) == (0, [])


@contextmanager
def fake_smtp(greeting: bytes) -> Iterator[int]:
    """A one-connection-at-a-time server on 127.0.0.1 that sends `greeting`, then reads QUIT."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(greeting)
                conn.recv(64)
                conn.sendall(b"221 2.0.0 Bye\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.mark.parametrize(
    ("greeting", "rc"), [(b"220 mx.example ESMTP\r\n", 0), (b"554 5.3.2 not now\r\n", 1)]
)
def test_healthcheck_wants_220(greeting: bytes, rc: int) -> None:
    with fake_smtp(greeting) as port:
        proc = run.run(
            ["bash", HEALTHCHECK], env={**CLEAN_ENV, "SMTP_PORT": str(port)}, check=False
        )
    assert proc.returncode == rc, proc.stdout.decode()


def test_healthcheck_fails_without_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        proc = run.run(
            ["bash", HEALTHCHECK], env={**CLEAN_ENV, "SMTP_PORT": str(port)}, check=False
        )
    assert proc.returncode != 0


@contextmanager
def forwarder(dev_log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """syslog-forward.pl listening on `dev_log` with `args`; killed afterwards."""
    proc = subprocess.Popen(
        [str(FORWARDER), str(dev_log), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while not dev_log.is_socket():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the forwarder did not bind its socket"
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_forwarder_copies_to_stdout_and_udp(tmp_path: Path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(10)
    dev_log = tmp_path / "log"
    try:
        with forwarder(dev_log, "127.0.0.1", str(udp.getsockname()[1]), "udp", "mx1") as proc:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.sendto(
                    b"<22>Nov 25 12:00:00 postfix/smtpd[7]: connect from x\0", os.fspath(dev_log)
                )
            remote = udp.recv(65536).decode()
            assert remote == "<22>Nov 25 12:00:00 mx1 postfix/smtpd[7]: connect from x"
            assert proc.stdout is not None
            assert (
                proc.stdout.readline().decode()
                == "Nov 25 12:00:00 mx1 postfix/smtpd[7]: connect from x\n"
            )
    finally:
        udp.close()


def test_forwarder_writes_json_lines(tmp_path: Path) -> None:
    dev_log = tmp_path / "log"
    sent = [
        b"<22>Nov 25 12:00:00 postfix/cleanup[7]: 4F9D1C0A2B: message-id=<x@y>",
        b'<19>Nov 25 12:00:01 postfix/smtpd[8]: warning: say "hi"\\ \t now',
        b"<22>Nov 25 12:00:02 postfix/qmgr[9]: 4cQ3hy1sKszB6wL: removed",
    ]
    with forwarder(dev_log, "", "514", "udp", "mx1", "json") as proc:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            for datagram in sent:
                client.sendto(datagram + b"\0", os.fspath(dev_log))
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in sent]
    first, second, third = lines
    assert datetime.datetime.fromisoformat(first.pop("time")).tzinfo is not None
    assert first == {
        "host": "mx1", "severity": "info", "program": "postfix/cleanup", "pid": 7,
        "queue_id": "4F9D1C0A2B", "message": "4F9D1C0A2B: message-id=<x@y>",
    }  # fmt: skip
    assert second["severity"] == "err"
    assert second["message"] == 'warning: say "hi"\\ \t now'
    assert "queue_id" not in second
    assert third["queue_id"] == "4cQ3hy1sKszB6wL"
