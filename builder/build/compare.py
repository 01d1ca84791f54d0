"""Compare the .debs of two builds byte for byte; diffoscope explains the pairs that differ."""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.build.stagedir import give_to_build_user, make_stage_dir
from builder.core import run
from builder.core.atomic import atomic_dir, link_or_copy, remove_path
from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError

log = logging.getLogger("pfbuild")

COMPARED_SUFFIXES = (".deb", ".udeb", ".ddeb")
NOT_COMPARED = {
    ".buildinfo": "records the build's date, environment and installed packages, which differ "
    "on purpose",
    ".changes": "lists the .buildinfo's checksum and the build date",
}

DIFFOSCOPE_TIMEOUT = 600
# A backstop for when diffoscope's own best-effort --timeout does not stop it: coreutils
# timeout signals diffoscope's whole process group (its readelf, objdump, ...).
DIFFOSCOPE_HARD_TIMEOUT = 2 * DIFFOSCOPE_TIMEOUT
TIMEOUT_EXIT = 124
DIFFOSCOPE_MAX_REPORT = 20 * 2**20
MAX_MEMBERS = 50


@dataclass(frozen=True)
class DebComparison:
    """One binary package of both builds, by name and sha256."""

    name: str
    a_sha256: str | None
    b_sha256: str | None

    @property
    def verdict(self) -> str:
        """identical, different, only in A or only in B."""
        if self.a_sha256 is None:
            return "only in B"
        if self.b_sha256 is None:
            return "only in A"
        return "identical" if self.a_sha256 == self.b_sha256 else "different"


def compared_names(files: Sequence[str]) -> list[str]:
    """The binary packages among a build's files."""
    return sorted(f for f in files if f.endswith(COMPARED_SUFFIXES))


def compare_debs(
    a_dir: Path, a_files: Sequence[str], b_dir: Path, b_files: Sequence[str]
) -> list[DebComparison]:
    """Every binary package of either build, paired by name, with both sha256s."""
    a_names, b_names = set(compared_names(a_files)), set(compared_names(b_files))
    return [
        DebComparison(
            name,
            sha256_file(a_dir / name) if name in a_names else None,
            sha256_file(b_dir / name) if name in b_names else None,
        )
        for name in sorted(a_names | b_names)
    ]


def not_compared(files: Sequence[str]) -> list[dict[str, str]]:
    """The build's other result files, each with why it is expected to differ."""
    return [
        {"file": name, "why": why}
        for name in sorted(files)
        for suffix, why in NOT_COMPARED.items()
        if name.endswith(suffix)
    ]


# ---- diffoscope -----------------------------------------------------------------------------


def diffoscope_path() -> str | None:
    """diffoscope on PATH, if installed."""
    return shutil.which("diffoscope")


def diffoscope_cmdline(a: str, b: str, text: str, html: str) -> list[str]:
    """diffoscope on one pair, bounded in time and report size (dbgsym packages are large)."""
    return [
        "diffoscope",
        f"--text={text}",
        f"--html={html}",
        "--text-color=never",
        f"--max-report-size={DIFFOSCOPE_MAX_REPORT}",
        f"--max-text-report-size={DIFFOSCOPE_MAX_REPORT}",
        f"--max-page-size={DIFFOSCOPE_MAX_REPORT}",
        f"--timeout={DIFFOSCOPE_TIMEOUT}",
        a,
        b,
    ]


# A member whose content differs: "│ │ ├── ./usr/bin/postconf".
MEMBER_RE = re.compile(r"^[│ ]*├── (\./\S.*)$")
# A member whose metadata differs, in a "file list" diff: "│ │ │ -drwxr-xr-x ... ./usr/lib/".
LISTED_RE = re.compile(r"^[│ ]*[-+][-bcdlps][-rwxsStT]{9} .* (\./\S+?)(?: -> \S+)?$")


def differing_members(report: str) -> list[str]:
    """The archive members a diffoscope text report shows differences in (./usr/...)."""
    found: dict[str, None] = {}
    for line in report.splitlines():
        if m := MEMBER_RE.match(line) or LISTED_RE.match(line):
            found.setdefault(m.group(1).strip())
    return list(found)[:MAX_MEMBERS]


def _diffoscope_one(ctx: Context, stage: Path, name: str) -> dict[str, Any]:
    text, html = f"out/{name}.diffoscope.txt", f"out/{name}.diffoscope.html"
    cmd = [
        "timeout",
        "--kill-after=30",
        str(DIFFOSCOPE_HARD_TIMEOUT),
        *diffoscope_cmdline(f"a/{name}", f"b/{name}", text, html),
    ]
    started = time.monotonic()
    try:
        # Unprivileged: diffoscope unpacks and parses freshly built archives.
        proc = run.run(cmd, user=ctx.build_user, cwd=stage, check=False)
    except PfbuildError as exc:
        return {"status": "failed", "why": exc.one_line()}
    seconds = round(time.monotonic() - started, 1)
    if proc.returncode == TIMEOUT_EXIT:
        return {"status": "failed", "why": f"timed out after {DIFFOSCOPE_HARD_TIMEOUT} s"}
    if proc.returncode not in (0, 1) or not (stage / text).is_file():
        tail = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[-3:]
        return {"status": "failed", "why": f"exit status {proc.returncode}: {' '.join(tail)}"}
    if proc.returncode == 0:
        return {
            "status": "no content difference",
            "why": "diffoscope sees the same content; only the archive bytes differ "
            "(compression or member metadata)",
            "seconds": seconds,
        }
    report = (stage / text).read_text(errors="replace")
    return {
        "status": "differences",
        "text": text,
        "html": html,
        "members": differing_members(report),
        "seconds": seconds,
    }


def explain_differences(
    ctx: Context, label: str, pairs: Sequence[DebComparison], a_dir: Path, b_dir: Path, dest: Path
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Run diffoscope on each differing pair into `dest`; return per-.deb findings, or why not."""
    remove_path(dest)
    differing = [p for p in pairs if p.verdict == "different"]
    if not differing:
        return {}, None
    if diffoscope_path() is None:
        return {}, "diffoscope is not installed (pfbuild doctor --fix installs diffoscope-minimal)"
    stage = make_stage_dir(ctx, f"diffoscope-{label}")
    try:
        for path in (stage / "a", stage / "b", stage / "out"):
            path.mkdir()
        # Only the output folder changes owner: the inputs may be hard links to the
        # workspace's (and the published repository's) files, which the build user only reads.
        give_to_build_user(ctx, stage / "out")
        findings: dict[str, dict[str, Any]] = {}
        for pair in differing:
            link_or_copy(a_dir / pair.name, stage / "a" / pair.name)
            link_or_copy(b_dir / pair.name, stage / "b" / pair.name)
            log.info("diffoscope %s (up to %d s)", pair.name, DIFFOSCOPE_TIMEOUT)
            findings[pair.name] = _diffoscope_one(ctx, stage, pair.name)
        with atomic_dir(dest) as tmp:
            for item in (stage / "out").iterdir():
                shutil.copyfile(item, tmp / item.name)
        for finding in findings.values():
            for kind in ("text", "html"):
                if kind in finding:
                    finding[kind] = str(dest / Path(finding[kind]).name)
        return findings, None
    finally:
        remove_path(stage)


def diffoscope_version() -> str:
    """`diffoscope --version`, or why it is unknown."""
    try:
        return run.output(["diffoscope", "--version"]).strip()
    except PfbuildError:
        return "not installed"
