"""`release --parallel N`: its default from cores and memory, PFBUILD_PARALLEL, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import cli
from builder.commands.common import available_memory, default_parallel, host_parallel

pytestmark = pytest.mark.unit

GIB = 1 << 30


@pytest.mark.parametrize(
    ("cores", "memory", "expected"),
    [
        (2, 22 * GIB, 2),  # this kind of runner: the cores decide
        (16, 64 * GIB, 4),  # never more than 4 by default
        (8, 9 * GIB, 2),  # one per 4 GiB available
        (8, 3 * GIB, 1),  # little memory: one at a time, never none
        (1, 64 * GIB, 1),
        (6, None, 4),  # memory unknown: the cores (and the cap) decide
    ],
)
def test_default_is_one_per_core_and_per_4_gib_at_most_4(
    cores: int, memory: int | None, expected: int
) -> None:
    assert default_parallel(cores, memory) == expected


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    8388608 kB\n")
    assert available_memory(meminfo) == 8 * GIB
    meminfo.write_text("MemTotal:       24000000 kB\n")
    assert available_memory(meminfo) is None
    assert available_memory(tmp_path / "missing") is None


def test_the_environment_overrides_the_host() -> None:
    assert host_parallel({"PFBUILD_PARALLEL": "3"}) == "3"
    assert int(host_parallel({})) in range(1, 5)


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_parallel_is_a_usage_error_from_the_command_line_or_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    args = ["--workspace", str(tmp_path), "release", "3.11.6", "--dry-run"]
    assert cli.main([*args, "--parallel", value]) == 2
    assert "--parallel" in capsys.readouterr().err
    monkeypatch.setenv("PFBUILD_PARALLEL", value)
    assert cli.main(args) == 2
    assert "--parallel" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
