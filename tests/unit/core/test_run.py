"""The process runner: argument lists, failures explained with the command and its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.core import run
from builder.core.errors import CommandError, PfbuildError

pytestmark = pytest.mark.unit


def python(code: str) -> list[str]:
    """This Python running `code`: the runner's subject, and no host tool for the unit tier."""
    return [sys.executable, "-c", f"import sys\n{code}"]


def test_failure_carries_command_status_and_tail() -> None:
    with pytest.raises(CommandError) as exc:
        run.run(python("for i in range(1, 41): print(f'line{i}')\nsys.exit(7)"))
    err = exc.value
    assert err.returncode == 7
    assert "line40" in err.tail and "line1\n" not in err.tail
    assert "exit status 7" in err.one_line() and "line40" in err.one_line()


def test_output_goes_to_the_log_and_the_error_names_it(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "x.log"
    with pytest.raises(CommandError) as exc:
        run.run(python("print('to-the-log'); sys.exit(1)"), log_path=log)
    assert log.read_text() == "to-the-log\n"
    assert str(log) in exc.value.one_line()


def test_missing_program_is_a_handled_error() -> None:
    with pytest.raises(PfbuildError) as exc:
        run.run(["pfbuild-no-such-program"])
    assert "not installed" in exc.value.one_line()


def test_user_switch_is_runuser_with_a_clean_environment() -> None:
    cmd = run.as_user_cmdline("root", ["id", "-u"], {"LANG": "C.UTF-8"})
    assert cmd[:6] == ["runuser", "-u", "root", "--", "env", "-i"]
    assert "HOME=/root" in cmd and "LANG=C.UTF-8" in cmd
    assert cmd[-2:] == ["id", "-u"]


def test_unknown_user_is_explained() -> None:
    with pytest.raises(PfbuildError) as exc:
        run.as_user_cmdline("no-such-user-pfbuild", ["true"])
    assert "doctor --fix" in exc.value.one_line()


def test_an_interrupt_stops_children_but_not_daemons() -> None:
    nap = python("import time; time.sleep(30)")
    child = subprocess.Popen(nap)
    # A daemon leads a session of its own (spawn_daemon starts it so): it outlives the run.
    daemon = subprocess.Popen(nap, start_new_session=True)
    try:
        assert child.pid in run.child_processes()
        assert daemon.pid not in run.child_processes()
        assert child.pid in run.terminate_children()
        assert child.wait(10) == -signal.SIGTERM
        assert daemon.poll() is None
    finally:
        for proc in (child, daemon):
            proc.kill()
            proc.wait()


def test_sigterm_interrupts_like_ctrl_c_only_within_the_block() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), run.interrupt_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) == before
