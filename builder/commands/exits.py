"""pfbuild's exit codes: one table for every command, the README and `--help`."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What a pfbuild process's exit status means (MEANINGS says it in words)."""

    OK = 0
    USAGE = 2
    REFUSED = 3
    NOT_NEWER = 10
    NOT_REPRODUCIBLE = 11
    INTERNAL = 70
    INTERRUPTED = 130


MEANINGS = {
    Exit.OK: "success, or the positive answer of a query command",
    Exit.USAGE: "usage error: the command line is wrong, nothing was done",
    Exit.REFUSED: "refused or failed, with a one-line reason (what, why, how to fix)",
    Exit.NOT_NEWER: "check-upstream: nothing newer than the published release",
    Exit.NOT_REPRODUCIBLE: "verify-reproducible: the second build differs",
    Exit.INTERNAL: "internal error (a bug): rerun with --debug for the traceback",
    Exit.INTERRUPTED: "interrupted",
}


def exit_table() -> str:
    """The table as `--help` shows it."""
    rows = [f"  {int(code):<4}{text}" for code, text in MEANINGS.items()]
    return "\n".join(["exit status:", *rows])
