"""The one error type pfbuild raises on purpose: what went wrong, why, and how to fix it."""

from __future__ import annotations


def shorten(text: str, limit: int = 40) -> str:
    """`text` as repr, cut to `limit` characters: user input echoed in a one-line error."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 3]}...' ({len(text)} characters)"


class PfbuildError(Exception):
    """A handled failure; the CLI prints it as one line and exits with code 3."""

    def __init__(self, what: str, why: str = "", fix: str = "", details: str = "") -> None:
        self.what = what
        self.why = why
        self.fix = fix
        self.details = details
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Render `what: why (fix: how)` on a single line."""
        text = self.what
        if self.why:
            text += f": {self.why}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return " ".join(text.split())


class CommandError(PfbuildError):
    """A process exited non-zero; carries the command line and the tail of its output."""

    def __init__(
        self, cmdline: str, returncode: int, tail: str, log_path: str | None = None
    ) -> None:
        self.cmdline = cmdline
        self.returncode = returncode
        self.tail = tail
        self.log_path = log_path
        where = f"; full log: {log_path}" if log_path else ""
        last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
        super().__init__(
            f"command failed with exit status {returncode}: {cmdline}",
            f"last output line: {last}{where}",
            details=tail,
        )
