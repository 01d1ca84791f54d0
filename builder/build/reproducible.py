"""verify-reproducible: build one .dsc twice, the second time deliberately different, compare.

Build A is the normal build (reused when the workspace already holds it). Build B runs sbuild
again on the same .dsc and chroot with another build path, job count, build user (name, uid,
home), clock, time zone, locale and umask. Every .deb is compared byte for byte; diffoscope
explains the pairs that differ. What each build really saw is read back from its log, so a
variation that did not take effect is reported as not applied instead of being claimed.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

from builder.core import run
from builder.core.atomic import atomic_dir, link_or_copy, remove_path, write_json, write_text
from builder.core.context import Context
from builder.model.distro import Distribution
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError
from builder.build.sbuild import BuildResult, SbuildVariant, build_package, make_stage_dir

log = logging.getLogger("pfbuild")

VARIANT_NAME = "b"
WRAPPER_MOUNT = "/opt/pfbuild-variation"
B_USER = "rebuilder"
B_UID = 2345
B_HOME = "/nonexistent/pfbuild-rebuilder"
B_BUILD_PATH = "/build/reproducible-b/a-longer-build-path"
B_TZ = "GMT-14"
B_LOCALE = "fr_CH.UTF-8"
B_LANGUAGE = "fr_CH:fr"
B_UMASK = "0002"
B_CLOCK_SHIFT = "+373d"
B_CLOCK_MIN_DAYS = 300
# Installed into B's chroot only: the clock and locale variations need them.
B_PACKAGES = ("faketime", "locales")
MARKER = "pfbuild-variation:"

COMPARED_SUFFIXES = (".deb", ".udeb", ".ddeb")
NOT_COMPARED = {
    ".buildinfo": "records the build's date, environment and installed packages, which differ "
    "on purpose",
    ".changes": "lists the .buildinfo's checksum and the build date",
}
NOT_VARIED = (
    (
        "hostname and domain name",
        "sbuild's unshare mode always names the build's UTS namespace 'sbuild' and has no "
        "option to change it",
    ),
    (
        "file system ordering",
        "disorderfs needs FUSE, which sbuild's unshare mode does not provide inside the chroot",
    ),
    (
        "kernel and CPU",
        "both builds run on this host's kernel and CPU (uname and CPU features are the same)",
    ),
    ("group", "sbuild creates every build user with the primary group 'sbuild'"),
)
NOTES = (
    f"B's chroot also has {' and '.join(B_PACKAGES)} installed (for the clock and the locale); "
    "otherwise both builds use the same build-deps chroot",
    "umask, locale, time zone and clock are set by a debian/rules wrapper in B, after "
    "dpkg-buildpackage --sanitize-env (which sbuild always passes and which would reset the "
    "umask to 0022 and LC_CTYPE/LC_COLLATE to C.UTF-8): B is as different as a builder "
    "running plain dpkg-buildpackage",
)

DIFFOSCOPE_TIMEOUT = 600
# A backstop for when diffoscope's own best-effort --timeout does not stop it: coreutils
# timeout signals diffoscope's whole process group (its readelf, objdump, ...).
DIFFOSCOPE_HARD_TIMEOUT = 2 * DIFFOSCOPE_TIMEOUT
TIMEOUT_EXIT = 124
DIFFOSCOPE_MAX_REPORT = 20 * 2**20
MAX_MEMBERS = 50

REPORT_NAME = "reproducible.json"
REPORTS_DIR = "reproducible"


def scratch_dir(ctx: Context, recipe: str, version: str, target: str) -> Path:
    """Where build B's results go: beside, never inside, the normal build's folder."""
    return ctx.workspace / "reproducible" / recipe / version / target / VARIANT_NAME


# ---- build B's variations -------------------------------------------------------------------


def rules_wrapper() -> str:
    """The debian/rules wrapper of build B: umask, locale, time zone and clock, then the rules."""
    clock = f"$(faketime -f {B_CLOCK_SHIFT} date -u +%Y-%m-%dT%H:%M:%SZ)"
    return (
        "#!/bin/sh\n"
        "# pfbuild verify-reproducible, build B. dpkg-buildpackage --sanitize-env resets the\n"
        "# umask and the locale, so they are set here, right before debian/rules.\n"
        f"umask {B_UMASK}\n"
        f"export TZ={B_TZ} LANG={B_LOCALE} LC_ALL={B_LOCALE} LANGUAGE={B_LANGUAGE}\n"
        "# Only the clock moves: by default libfaketime also shifts every file time stat()\n"
        "# reports, which a later real clock would not do (old upstream files would look\n"
        "# newer than SOURCE_DATE_EPOCH and be clamped in B only).\n"
        "export NO_FAKE_STAT=1\n"
        f'echo "{MARKER} target=$1 umask=$(umask) user=$(id -un) uid=$(id -u) home=$HOME '
        f'tz=$TZ lc_all=$LC_ALL charmap=$(locale charmap 2>/dev/null) clock={clock}"\n'
        f'exec faketime -f {B_CLOCK_SHIFT} debian/rules "$@"\n'
    )


def _perl(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sbuild_config(wrapper_dir: Path, runner: str) -> str:
    """Build B's sbuild configuration (SBUILD_CONFIG): user, mounted wrapper, locale."""
    # sbuild joins an external command into one string and runs it with /bin/sh -c.
    setup = [
        # sbuild runs a few commands (its disk-space check, dpkg --print-architecture) as the
        # user who started it, so that user must exist in the chroot beside the build user.
        f"getent passwd {shlex.quote(runner)} >/dev/null || useradd --system "
        "--home-dir /var/lib/sbuild --no-create-home --shell /bin/bash --gid sbuild "
        f"{shlex.quote(runner)}",
        shlex.join(["usermod", "--uid", str(B_UID), "--home", B_HOME, B_USER]),
        # sbuild gave the build folder to the build user before its uid changed.
        f"chown {B_USER} %SBUILD_BUILD_DIR",
    ]
    language, _, charset = B_LOCALE.partition(".")
    starting = [shlex.join(["localedef", "-i", language, "-f", charset, B_LOCALE])]
    return (
        "# pfbuild verify-reproducible, build B\n"
        f"$build_user = {_perl(B_USER)};\n"
        f"$unshare_bind_mounts = [ {{ directory => {_perl(str(wrapper_dir))}, "
        f"mountpoint => {_perl(WRAPPER_MOUNT)} }} ];\n"
        "$external_commands = {\n"
        f"    'chroot-setup-commands' => [ {', '.join(_perl(c) for c in setup)} ],\n"
        f"    'starting-build-commands' => [ {', '.join(_perl(c) for c in starting)} ],\n"
        "};\n"
        "1;\n"
    )


def variant_args() -> tuple[str, ...]:
    """sbuild arguments of build B (its job count is passed as `jobs`)."""
    return (
        f"--build-path={B_BUILD_PATH}",
        f"--add-depends={', '.join(B_PACKAGES)}",
        f"--debbuildopt=--rules-file={WRAPPER_MOUNT}/rules",
    )


def b_jobs(a_jobs: str) -> int:
    """B's compiler jobs: serial when A ran in parallel, parallel when A ran serially."""
    if a_jobs.isdigit() and int(a_jobs) > 1:
        return 1
    return max(2, os.cpu_count() or 1)


def sbuild_runner(ctx: Context) -> str:
    """The host user sbuild runs as: the build user when pfbuild is root, else ourselves."""
    if os.geteuid() == 0:
        return ctx.build_user
    return pwd.getpwuid(os.geteuid()).pw_name


def _give_to_build_user(ctx: Context, *paths: Path) -> None:
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, user=ctx.build_user, group=ctx.build_user)


def write_variation_files(ctx: Context, where: Path) -> Path:
    """Write the rules wrapper and sbuild configuration of build B; return the config's path."""
    wrapper = where / "rules"
    wrapper.write_text(rules_wrapper())
    wrapper.chmod(0o755)
    config = where / "sbuild.conf"
    config.write_text(sbuild_config(where, sbuild_runner(ctx)))
    config.chmod(0o644)
    _give_to_build_user(ctx, wrapper, config)
    return config


# ---- what each build really saw -------------------------------------------------------------

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


# ---- comparing the results ------------------------------------------------------------------


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
        _give_to_build_user(ctx, stage / "out")
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


# ---- the record -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """The outcome of one verify-reproducible run for one target."""

    target: str
    verdict: str
    debs: tuple[DebComparison, ...]
    findings: Mapping[str, Mapping[str, Any]]
    no_diffoscope: str | None
    report: Path
    manifest: Path | None
    record: Mapping[str, Any]


def verdict_of(pairs: Sequence[DebComparison]) -> str:
    """reproducible when every .deb of both builds is identical."""
    if pairs and all(p.verdict == "identical" for p in pairs):
        return "reproducible"
    return "unreproducible"


def manifest_summary(record: Mapping[str, Any], report: Path) -> dict[str, Any]:
    """The short form of a result that goes into the release manifest."""
    debs = record["debs"]
    return {
        "verdict": record["verdict"],
        "checked": record["checked"],
        "dsc_sha256": record["dsc"]["sha256"],
        "identical": sorted(d["name"] for d in debs if d["verdict"] == "identical"),
        "differing": sorted(d["name"] for d in debs if d["verdict"] != "identical"),
        "variations": [v["name"] for v in record["variations"] if v["applied"]],
        "not_applied": [v["name"] for v in record["variations"] if not v["applied"]],
        "report": str(report),
    }


def merge_into_manifest(path: Path, target: str, summary: Mapping[str, Any]) -> bool:
    """Set manifest["reproducible"][target]; False (and nothing written) without a manifest."""
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise PfbuildError(
            f"cannot read the release manifest {path}",
            str(exc),
            "run `pfbuild release` again to rewrite it, or remove it",
        ) from None
    if not isinstance(manifest, dict):
        raise PfbuildError(f"release manifest {path} is not a JSON object", fix="remove it")
    section = manifest.get("reproducible")
    section = dict(section) if isinstance(section, dict) else {}
    section[target] = dict(summary)
    manifest["reproducible"] = section
    write_json(path, manifest)
    return True


class Builder(Protocol):
    """build_package's shape, so tests can replace sbuild."""

    def __call__(
        self,
        ctx: Context,
        recipe: str,
        dsc: Path,
        dist: Distribution,
        out_dir: Path,
        *,
        jobs: int = 0,
        variant: SbuildVariant | None = None,
    ) -> BuildResult: ...


def _build_record(result: BuildResult, facts: BuildFacts) -> dict[str, Any]:
    return {
        "dir": str(result.out_dir),
        "key": result.key,
        "reused": result.reused,
        "log": str(result.log_path),
        "build_path": facts.build_path,
        "jobs": facts.jobs,
    }


def build_variant(
    ctx: Context,
    recipe: str,
    version: str,
    dsc: Path,
    dist: Distribution,
    jobs: int,
    build: Builder,
) -> BuildResult:
    """Build B: the same .dsc with every variation, into the scratch folder."""
    where = make_stage_dir(ctx, f"variation-{recipe}-{dist.name}")
    try:
        config = write_variation_files(ctx, where)
        variant = SbuildVariant(VARIANT_NAME, variant_args(), (("SBUILD_CONFIG", str(config)),))
        out = scratch_dir(ctx, recipe, version, dist.name)
        log.info("%s: build B of %s with variations into %s", dist.name, dsc.name, out)
        return build(ctx, recipe, dsc, dist, out, jobs=jobs, variant=variant)
    finally:
        remove_path(where)


def verify_reproducible(
    ctx: Context,
    recipe: str,
    version: str,
    dsc: Path,
    dist: Distribution,
    *,
    build: Builder = build_package,
) -> Verification:
    """Build `dsc` twice (A normal, B varied), compare every .deb, record the result."""
    # As `pfbuild release` builds it (no --jobs), so a release reuses it and the other way round.
    a = build(ctx, recipe, dsc, dist, ctx.build_dir(recipe, version, dist.name))
    if a.reused:
        log.info("%s: build A is the normal build already in %s (same key)", dist.name, a.out_dir)
    a_facts = parse_build_log(a.log_path.read_text(errors="replace"))
    b = build_variant(ctx, recipe, version, dsc, dist, b_jobs(a_facts.jobs), build)
    b_facts = parse_build_log(b.log_path.read_text(errors="replace"))
    pairs = compare_debs(a.out_dir, a.files, b.out_dir, b.files)
    if not pairs:
        raise PfbuildError(
            f"the build of {dsc.name} for {dist.name} made no .deb",
            f"see {a.log_path}",
            "check the package's debian/control",
        )
    report_dir = ctx.report_dir(recipe, version, dist.name)
    label = f"{recipe}-{dist.name}"
    findings, no_diffoscope = explain_differences(
        ctx, label, pairs, a.out_dir, b.out_dir, report_dir / REPORTS_DIR
    )
    variations = describe_variations(a_facts, b_facts)
    record: dict[str, Any] = {
        "recipe": recipe,
        "version": version,
        "target": dist.name,
        "checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dsc": {"name": dsc.name, "sha256": sha256_file(dsc)},
        "verdict": verdict_of(pairs),
        "build_a": _build_record(a, a_facts),
        "build_b": _build_record(b, b_facts),
        "variations": [asdict(v) for v in variations],
        "not_varied": [{"name": n, "why": why} for n, why in NOT_VARIED],
        "notes": list(NOTES),
        "not_compared": not_compared(a.files),
        "debs": [
            {
                "name": p.name,
                "verdict": p.verdict,
                "a_sha256": p.a_sha256,
                "b_sha256": p.b_sha256,
                **({"diffoscope": findings[p.name]} if p.name in findings else {}),
            }
            for p in pairs
        ],
        "diffoscope": {
            "version": diffoscope_version() if findings else None,
            "why_none": no_diffoscope,
        },
    }
    report = report_dir / REPORT_NAME
    write_text(report, json.dumps(record, indent=2, sort_keys=True) + "\n")
    manifest = ctx.manifest_path(recipe, version)
    merged = merge_into_manifest(manifest, dist.name, manifest_summary(record, report))
    if not merged:
        log.info("%s: no release manifest %s; %s is the record", dist.name, manifest, report)
    return Verification(
        dist.name,
        record["verdict"],
        tuple(pairs),
        findings,
        no_diffoscope,
        report,
        manifest if merged else None,
        record,
    )
