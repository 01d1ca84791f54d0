"""pfbuild's exit codes: one table for every command, the README and `--help`."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What a pfbuild process's exit status means."""

    OK = 0  # success, or the positive answer of a query command
    USAGE = 2  # the command line is wrong; nothing was done
    REFUSED = 3  # refused or failed, with a one-line reason (what, why, how to fix)
    NOT_NEWER = 10  # check-upstream: no release newer than the published one
    NOT_REPRODUCIBLE = 11  # verify-reproducible: the second build differs
    INTERNAL = 70  # a crash: "internal error", rerun with --debug for the traceback
    INTERRUPTED = 130  # stopped with Ctrl-C (SIGINT)


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
