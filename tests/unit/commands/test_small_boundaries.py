"""Small CLI input boundaries: each bad input is one line, the right code, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import cli
from builder.core.errors import PfbuildError
from builder.core.gpg import refusal_reason
from builder.publish.serve import make_server

pytestmark = pytest.mark.unit


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_serve_port_out_of_range_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--workspace", str(tmp_path), "serve", "--port", "70000"]) == 2
    assert "0 to 65535" in capsys.readouterr().err


def test_serve_port_from_the_environment_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PFBUILD_SERVE_PORT", "-5")
    assert cli.main(["--workspace", str(tmp_path), "serve"]) == 2
    assert "must not be negative" in capsys.readouterr().err


def test_a_foreign_bind_address_is_told_to_fix_the_address(tmp_path: Path) -> None:
    # 203.0.113.0/24 is TEST-NET-3: never an address of this host; binding sends nothing.
    with pytest.raises(PfbuildError) as err:
        make_server(tmp_path, "203.0.113.7", 0)
    assert "--bind" in err.value.fix and "--port" not in err.value.fix


def test_rollback_of_a_suite_never_published_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert cli.main(["--workspace", str(ws), "publish", "--rollback", "trixie"]) == 3
    assert "never published" in one_line(capsys.readouterr().err)
    assert not (ws / "signing").exists()
    assert not (ws / "aptly").exists()


def test_a_huge_version_is_not_echoed_in_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = "3." * 3000
    assert cli.main(["--workspace", str(tmp_path), "fetch", "postfix", version]) == 3
    line = one_line(capsys.readouterr().err)
    assert len(line) < 300
    assert "6000 characters" in line


def test_the_fix_for_a_bad_version_names_one_that_can_be_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--workspace", str(tmp_path), "fetch", "postfix", "3.11"]) == 3
    line = one_line(capsys.readouterr().err)
    assert "e.g. 3.11.6" in line and "3.11.0" not in line


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("[GNUPG:] NODATA 1\n[GNUPG:] NODATA 2\n", "not an OpenPGP signature"),
        ("[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 0123 someone\n", "does not match the file"),
        ("[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 0123 22 10 00 1 9\n[GNUPG:] NO_PUBKEY 0123\n",
         "not in the pinned keyring"),
    ],
)  # fmt: skip
def test_gpgv_refusals_are_said_in_words(status: str, reason: str) -> None:
    assert reason in refusal_reason(status + "gpgv: Can't check signature: No public key\n")
