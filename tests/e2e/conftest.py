"""The e2e tier's one release: every heavy test shares it instead of making its own builds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.cli import run_pfbuild

VERSION = "3.11.6"
# A release builds postfix for both targets and both images: allow it an hour and a half.
TIMEOUT = 5400


@pytest.fixture(scope="session")
def release(shared_workspace: Path) -> subprocess.CompletedProcess[str]:
    """The README's first command, `pfbuild release 3.11.6`, in the shared workspace."""
    started = time.monotonic()
    proc = run_pfbuild(shared_workspace, "release", VERSION, timeout=TIMEOUT)
    print(f"release took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return proc
