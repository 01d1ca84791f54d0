"""What each build of verify-reproducible really saw, read back from its sbuild log.

A variation counts as applied only when build B's log proves it took effect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from builder.build.sbuild import BuildResult
from builder.build.variation import (
    B_CLOCK_MIN_DAYS,
    B_CLOCK_SHIFT,
    B_HOME,
    B_LANGUAGE,
    B_LOCALE,
    B_TZ,
    B_UID,
    B_UMASK,
    B_USER,
    MARKER,
)

PKGBUILDDIR_RE = re.compile(
    r"^I: NOTICE: Log filtering will replace '(.+)' with '<<PKGBUILDDIR>>'$"
)
COMMAND_RE = re.compile(r"^Command: dpkg-buildpackage (.*)$")
JOBS_RE = re.compile(r"^(?:-j|--jobs=)(\S*)$")
# The header box: "| postfix 3.11.6-1+pf1~trixie (amd64) Wed, 25 Nov 2026 13:10:24 +0000 |"
HEADER_DATE_RE = re.compile(
    r"([A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4})"
)
PAIR_RE = re.compile(r"(\w+)=(\S*)")


@dataclass(frozen=True)
class BuildFacts:
    """What one sbuild log says about the environment its debian/rules ran in."""

    build_path: str | None = None
    jobs: str = ""
    started: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    wrapper: Mapping[str, str] = field(default_factory=dict)


def _user_environment(lines: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    try:
        start = lines.index("User Environment")
    except ValueError:
        return env
    for line in lines[start + 3 :]:
        if not line.strip():
            break
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    return env


def parse_build_log(text: str) -> BuildFacts:
    """Build path, -jN, start time, user environment and B's wrapper line from an sbuild log."""
    lines = text.splitlines()
    build_path = jobs = started = None
    wrapper: dict[str, str] = {}
    for line in lines:
        if build_path is None and (m := PKGBUILDDIR_RE.match(line)):
            build_path = "/" + m.group(1).lstrip("/")
        elif jobs is None and (m := COMMAND_RE.match(line)):
            found = [j.group(1) for a in m.group(1).split() if (j := JOBS_RE.match(a))]
            jobs = found[-1] if found else ""
        elif started is None and (m := HEADER_DATE_RE.search(line)) and line.startswith("|"):
            started = m.group(1)
        elif not wrapper and line.startswith(MARKER):
            wrapper = dict(PAIR_RE.findall(line[len(MARKER) :]))
    return BuildFacts(build_path, jobs or "", started, _user_environment(lines), wrapper)


@dataclass(frozen=True)
class ObservedBuild:
    """One build's results and what its log says it saw."""

    result: BuildResult
    facts: BuildFacts


def observe(result: BuildResult) -> ObservedBuild:
    """A finished build with the facts of the log it left beside its results."""
    return ObservedBuild(result, parse_build_log(result.log_path.read_text(errors="replace")))


@dataclass(frozen=True)
class Variation:
    """One way build B differs from build A, with the value each build really had."""

    name: str
    a: str
    b: str
    applied: bool
    how: str


def _jobs_text(jobs: str) -> str:
    if not jobs:
        return "no -j (DEB_BUILD_OPTIONS without parallel=: serial)"
    return f"-j{jobs} (DEB_BUILD_OPTIONS parallel={jobs})"


def _is_shifted(clock: str, started: str | None) -> bool:
    try:
        faked = datetime.strptime(clock, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    if started is None:
        return False
    real = parsedate_to_datetime(started)
    return faked - real > timedelta(days=B_CLOCK_MIN_DAYS)


def describe_variations(a: BuildFacts, b: BuildFacts) -> list[Variation]:
    """Each variation with A's and B's values; applied only when B's log proves it."""
    w = b.wrapper
    missing = "not seen in B's log"
    a_user = a.env.get("USER", "unknown")
    return [
        Variation(
            "build path",
            a.build_path or "unknown",
            b.build_path or missing,
            bool(a.build_path and b.build_path and a.build_path != b.build_path),
            "sbuild --build-path",
        ),
        Variation(
            "parallel jobs",
            _jobs_text(a.jobs),
            _jobs_text(b.jobs),
            a.jobs != b.jobs,
            "sbuild --jobs (dpkg-buildpackage -jN)",
        ),
        Variation(
            "clock",
            f"real time (build started {a.started or 'at an unknown time'})",
            f"{w['clock']} when the rules ran (real start {b.started})"
            if w.get("clock")
            else missing,
            _is_shifted(w.get("clock", ""), b.started),
            f"libfaketime: faketime -f {B_CLOCK_SHIFT} around debian/rules",
        ),
        Variation(
            "time zone",
            a.env.get("TZ", "TZ unset (the chroot's /etc/localtime)"),
            f"TZ={w['tz']}" if w.get("tz") else missing,
            w.get("tz") == B_TZ and a.env.get("TZ") != B_TZ,
            "TZ in the debian/rules wrapper",
        ),
        Variation(
            "locale",
            f"LC_ALL={a.env.get('LC_ALL', 'unset')} from sbuild; dpkg-buildpackage "
            "--sanitize-env makes it LANG and sets LC_CTYPE/LC_COLLATE to C.UTF-8",
            f"LC_ALL=LANG={w['lc_all']} LANGUAGE={B_LANGUAGE} (charmap {w.get('charmap') or '?'})"
            if w.get("lc_all")
            else missing,
            w.get("lc_all") == B_LOCALE and w.get("charmap") == "UTF-8",
            f"locales + localedef {B_LOCALE} in B's chroot; LC_ALL in the debian/rules wrapper",
        ),
        Variation(
            "umask",
            "0022 (sbuild sets it; dpkg-buildpackage --sanitize-env resets it)",
            w.get("umask", missing),
            w.get("umask") == B_UMASK,
            "umask in the debian/rules wrapper",
        ),
        Variation(
            "build user",
            f"{a_user} (a system uid from sbuild's useradd --system)",
            f"{w['user']} (uid {w.get('uid', '?')})" if w.get("user") else missing,
            w.get("user") == B_USER and w.get("uid") == str(B_UID) and a_user != B_USER,
            "$build_user in B's sbuild config; usermod --uid in the chroot",
        ),
        Variation(
            "home directory",
            a.env.get("HOME", "unknown"),
            w.get("home", missing),
            w.get("home") == B_HOME and a.env.get("HOME") != B_HOME,
            "usermod --home in B's chroot",
        ),
    ]
