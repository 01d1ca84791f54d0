"""Doctor's checks and fixes, with the host replaced by fakes where it would change the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.core import doctor
from builder.core import run as core_run
from builder.core.context import Context
from builder.core.errors import PfbuildError

pytestmark = pytest.mark.unit


def _etc(tmp_path: Path, subuid: str, subgid: str) -> Path:
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subgid)
    return tmp_path


def test_build_user_needs_full_subid_ranges(tmp_path: Path) -> None:
    etc = _etc(tmp_path, "root:100000:65536\n", "root:100000:1000\n")
    check = doctor.check_build_user("root", etc)
    assert not check.ok
    assert "/etc/subgid" in check.detail
    etc = _etc(tmp_path, "root:100000:65536\n", "other:1:2\nroot:100000:65536\n")
    assert doctor.check_build_user("root", etc).ok


def test_missing_user_is_reported() -> None:
    check = doctor.check_build_user("no-such-user-pfbuild")
    assert not check.ok and "does not exist" in check.detail


def test_fix_commands_install_packages_and_create_the_user(ctx: Context, tmp_path: Path) -> None:
    etc = _etc(tmp_path, "alice:100000:65536\n", "alice:100000:65536\n")
    checks = [
        doctor.Check("aptly", False, "not installed", ("aptly",)),
        doctor.Check("blhc", False, "not installed", ("blhc",)),
        doctor.Check("build user", False, "missing"),
    ]
    object.__setattr__(ctx, "build_user", "no-such-user-pfbuild")
    cmds = doctor.fix_cmdlines(ctx, checks, etc)
    assert cmds[0] == ["apt-get", "update", "-q"]
    assert cmds[1][-2:] == ["aptly", "blhc"]
    assert cmds[2][0] == "useradd" and cmds[2][-1] == "no-such-user-pfbuild"
    assert cmds[3] == [
        "usermod",
        "--add-subuids",
        "165536-231071",
        "--add-subgids",
        "165536-231071",
        "no-such-user-pfbuild",
    ]


def test_fix_without_root_says_what_to_run(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    checks = [
        doctor.Check("sbuild", False, "not installed", ("sbuild",)),
        doctor.Check("docker engine", False, "not reachable"),
    ]
    with pytest.raises(PfbuildError) as exc:
        doctor.fix(ctx, checks)
    line = exc.value.one_line()
    assert "needs root" in line
    assert "apt-get install -y -q --no-install-recommends sbuild" in line
    assert "dockerd --bridge=none --iptables=false" in line


def test_private_engine_gets_its_own_state(ctx: Context) -> None:
    object.__setattr__(ctx, "docker_host", "unix:///tmp/pfbuild-test.sock")
    cmd = doctor.dockerd_cmdline(ctx)
    assert cmd[:3] == ["dockerd", "--bridge=none", "--iptables=false"]
    assert "--host=unix:///tmp/pfbuild-test.sock" in cmd
    assert any(a.startswith("--data-root=") and str(ctx.workspace) in a for a in cmd)


def test_default_engine_command_is_plain(ctx: Context) -> None:
    assert doctor.dockerd_cmdline(ctx) == ["dockerd", "--bridge=none", "--iptables=false"]


def test_report_has_one_row_per_check() -> None:
    text = doctor.format_report(
        [doctor.Check("sbuild", True, "0.85"), doctor.Check("docker engine", False, "down")]
    )
    assert text.splitlines() == ["ok      sbuild         0.85", "MISSING docker engine  down"]


def test_cosign_is_installed_where_apt_has_it_else_run_from_the_tool_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trixie = "cosign:\n  Installed: (none)\n  Candidate: 2.5.0-2+b5\n  Version table:\n"
    assert doctor.policy_candidate(trixie) == "2.5.0-2+b5"
    assert doctor.policy_candidate("cosign:\n  Installed: (none)\n  Candidate: (none)\n") is None
    assert doctor.policy_candidate("") is None  # bookworm: apt-cache knows no such package
    monkeypatch.setattr("shutil.which", lambda _cmd, path=None: None)
    monkeypatch.setattr(core_run, "output", lambda _cmd: trixie)
    check = doctor.check_cosign()
    assert (check.ok, check.packages) == (False, ("cosign",))
    monkeypatch.setattr(core_run, "output", lambda _cmd: "")
    check = doctor.check_cosign()
    assert check.ok and "pfbuild-cosign" in check.detail
