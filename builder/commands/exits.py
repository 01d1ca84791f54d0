"""pfbuild's exit codes: one table for every command, the README and `--help`."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What a pfbuild process's exit status means (MEANINGS says it in words)."""

    OK = 0
    USAGE = 2
    REFUSED = 3
    NOTHING_TO_DO = 10
    NOT_NEWER = 10  # check-upstream's name for it
    NOT_REPRODUCIBLE = 11
    INTERNAL = 70
    INTERRUPTED = 130


MEANINGS = {
    Exit.OK: "success, or the positive answer of a query command",
    Exit.USAGE: "usage error: the command line is wrong, nothing was done",
    Exit.REFUSED: "refused or failed, with a one-line reason (what, why, how to fix)",
    Exit.NOTHING_TO_DO: "nothing to do: check-upstream finds nothing newer, check-updates no "
    "reason to rebuild, release --base every build already published with the same inputs",
    Exit.NOT_REPRODUCIBLE: "verify-reproducible: the second build differs",
    Exit.INTERNAL: "internal error (a bug): rerun with --debug for the traceback",
    Exit.INTERRUPTED: "interrupted",
}


def exit_table() -> str:
    """The table as `--help` shows it."""
    rows = [f"  {int(code):<4}{text}" for code, text in MEANINGS.items()]
    return "\n".join(["exit status:", *rows])
