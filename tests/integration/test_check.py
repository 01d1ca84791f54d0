"""`pfbuild check` on real packages: test builds with and without flags, and Debian's postfix."""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from debian import deb822

from builder import cli
from builder.bootstrap.buildenv import ensure_chroot_tarball
from builder.check.blhc import run_blhc
from builder.check.hardening import check_build
from builder.check.judge import NA, NO, UNAVAILABLE, UNKNOWN, YES
from builder.check.report import HardeningReport, format_table
from builder.core import gpg, run
from builder.core.atomic import atomic_dir
from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.download import download
from builder.model.distro import RESOLUTE, TRIXIE, Distribution, HostKeyring

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "hardening" / "hello"
ALL_BUT_CET = frozenset(
    {"pie", "relro", "bindnow", "nxstack", "stackprotector", "fortify3", "stackclash"}
)
FILES = ["/usr/bin/hello", "/usr/bin/tiny", "/usr/lib/libgreet.so.1"]
# The trixie postfix .deb whose ELF files the parser is tried on; found through trixie's
# signed InRelease, so only the package name is pinned here.
REAL_PACKAGE = "postfix"


def _build_hello(root: Path, name: str, env: Mapping[str, str]) -> Path:
    """Build the hello test package on the host with dpkg-buildpackage; return its result dir."""
    src = root / name / "hello-1.0"
    shutil.copytree(FIXTURE, src)
    results = root / name / "results"
    log = results / "build.log"
    run.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, log_path=log)
    for built in src.parent.iterdir():
        if built.suffix in (".deb", ".changes", ".buildinfo"):
            built.rename(results / built.name)
    return results


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hello package built three ways: all flags, FORTIFY level 2, and without -z now."""
    root = tmp_path_factory.mktemp("hello-builds")
    return {
        "good": _build_hello(root, "good", {}),
        "fortify2": _build_hello(root, "fortify2", {"FORTIFY_LEVEL": "2"}),
        "lazy": _build_hello(root, "lazy", {"DEB_BUILD_MAINT_OPTIONS": "hardening=+all,-bindnow"}),
    }


def _statuses(report: HardeningReport, prop: str) -> dict[str, str]:
    return {row.path: row.findings[prop].status for row in report.elves}


def test_good_package_passes_and_reports_every_elf(ctx: Context, built: dict[str, Path]) -> None:
    report = check_build(ctx, built["good"], TRIXIE, "amd64", ALL_BUT_CET)
    assert report.verdict == "pass", report.failures
    assert [row.path for row in report.elves] == FILES
    for prop in ("relro", "bindnow", "nxstack", "stackprotector", "fortify3", "stackclash"):
        assert set(_statuses(report, prop).values()) == {YES}, prop
    assert _statuses(report, "pie") == {
        "/usr/bin/hello": YES, "/usr/bin/tiny": YES, "/usr/lib/libgreet.so.1": NA,
    }  # fmt: skip
    rows = {row.path: row for row in report.elves}
    # hello copies into a stack buffer: canary and a *_chk call are in the binary itself.
    assert "imports __stack_chk_fail" in rows["/usr/bin/hello"].findings["stackprotector"].detail
    assert "*_chk imports" in rows["/usr/bin/hello"].findings["fortify3"].detail
    # tiny has nothing to protect: the log's flags explain it, hardening-check's view is shown.
    tiny = rows["/usr/bin/tiny"]
    assert "no function needed a canary" in tiny.findings["stackprotector"].detail
    assert tiny.hardening_check["stackprotector"].startswith("no")
    assert any("needed no canary" in note for note in tiny.hardening_check_notes)
    assert any("known false positive" in note for note in tiny.hardening_check_notes)
    # CET markers need start files that carry them: measured on this host, not assumed.
    # Judged as trixie's (whose start files carry none) CET is unavailable either way, and
    # -fcf-protection still shows as endbr64 instrumentation.
    for row in report.elves:
        assert row.findings["cet"].status == UNAVAILABLE
        assert row.endbr64 is not None and row.endbr64 > 0
    assert report.build_log.blhc is not None and report.build_log.blhc.findings == ()
    assert report.build_log.fortify_levels == {"3": 3}
    assert any("hello-dbgsym" in s for s in report.skipped)
    assert report.lintian.cmdline[:3] == ("lintian", "--profile", "debian")
    assert any(t.tag == "no-copyright-file" for t in report.lintian.tags)


def host_start_files_carry_cet() -> bool:
    """Whether this host's C start files have the IBT and SHSTK properties (readelf's view)."""
    crt = subprocess.run(
        ["gcc", "-print-file-name=Scrt1.o"], capture_output=True, text=True, check=True
    ).stdout.strip()
    notes = subprocess.run(["readelf", "-n", crt], capture_output=True, text=True, check=True)
    return "IBT" in notes.stdout and "SHSTK" in notes.stdout


def test_resolute_requires_cet_markers(ctx: Context, built: dict[str, Path]) -> None:
    # The same binaries judged as resolute's: CET is expected there. On a host whose start
    # files lack the markers, none of the binaries can carry them, and that is a failure.
    report = check_build(
        ctx, built["good"], RESOLUTE, "amd64", ALL_BUT_CET | {"cet"}, lintian=False
    )
    if host_start_files_carry_cet():
        assert report.verdict == "pass", report.failures
        assert set(_statuses(report, "cet").values()) == {YES}
        return
    assert report.verdict == "fail"
    assert set(_statuses(report, "cet").values()) == {NO}
    assert list(report.offending_files) == FILES
    assert report.lintian.note == "not run: skipped on request"


def test_cli_check_passes_and_writes_report(
    ctx: Context, built: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    build_dir = ctx.build_dir("hello", "1.0", "trixie")
    shutil.copytree(built["good"], build_dir)
    code = cli.main(
        ["--workspace", str(ctx.workspace), "check", "hello", "1.0", "--target", "trixie",
         "--no-autopkgtest",
         "--expect", ",".join(sorted(ALL_BUT_CET | {"cet"}))]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "Hardening report for trixie (amd64): PASS" in out
    assert "cet unavailable: trixie's glibc start files" in out
    report_dir = ctx.report_dir("hello", "1.0", "trixie")
    assert (report_dir / "hardening.txt").read_text() in out
    assert '"verdict": "pass"' in (report_dir / "hardening.json").read_text()


@pytest.mark.parametrize(
    ("variant", "prop", "blhc_flag"),
    [("fortify2", "fortify3", None), ("lazy", "bindnow", "-Wl,-z,now")],
)
def test_missing_flag_fails_naming_the_files(
    ctx: Context,
    built: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    variant: str,
    prop: str,
    blhc_flag: str | None,
) -> None:
    shutil.copytree(built[variant], ctx.build_dir("hello", "1.0", "trixie"))
    code = cli.main(
        ["--workspace", str(ctx.workspace), "check", "hello", "1.0", "--target", "trixie",
         "--no-autopkgtest",
         "--expect", ",".join(sorted(ALL_BUT_CET))]
    )  # fmt: skip
    errors = [e for e in capsys.readouterr().err.splitlines() if e.startswith("pfbuild: error:")]
    assert code == 3
    assert len(errors) == 1
    (err,) = errors
    report_txt = ctx.report_dir("hello", "1.0", "trixie") / "hardening.txt"
    assert str(report_txt) in err
    for path in FILES:
        assert path in err
    text = report_txt.read_text()
    assert "FAIL" in text.splitlines()[0]
    assert f"{prop} missing" in text
    if blhc_flag:
        # blhc reads the same log and agrees: the link lines lack the flag.
        assert f"blhc finds {blhc_flag} missing" in text
    else:
        # blhc accepts level 2 as well as 3; the compile-line scan tells them apart.
        assert "_FORTIFY_SOURCE level 2 in force" in text


def _trixie_package(cache: Path, package: str) -> Path:
    """Download `package`'s trixie .deb through the signed InRelease chain, cached in `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    archive = TRIXIE.archive_url
    inrelease = cache / "InRelease"
    download(f"{archive}/dists/trixie/InRelease", inrelease)
    assert isinstance(TRIXIE.keyring, HostKeyring)
    keyring = Path(TRIXIE.keyring.path)
    payload = gpg.clearsigned_text(keyring, inrelease, gpg.keyring_fingerprints(keyring))
    release = deb822.Release(payload)
    index = "main/binary-amd64/Packages.xz"
    want = {f["name"]: f["sha256"] for f in release["SHA256"]}[index]
    packages_xz = cache / "Packages.xz"
    if not packages_xz.is_file() or sha256_file(packages_xz) != want:
        assert download(f"{archive}/dists/trixie/{index}", packages_xz) == want
    text = lzma.decompress(packages_xz.read_bytes()).decode()
    # Parsing all ~70,000 stanzas with deb822 takes seconds; only the one we want is parsed.
    for stanza in text.split("\n\n"):
        if stanza.startswith(f"Package: {package}\n"):
            para = deb822.Packages(stanza)
            deb = cache / Path(para["Filename"]).name
            if not deb.is_file() or sha256_file(deb) != para["SHA256"]:
                assert download(f"{archive}/{para['Filename']}", deb) == para["SHA256"]
            return deb
    raise AssertionError(f"{package} not in trixie's {index}")


@pytest.fixture(scope="session")
def debian_postfix_deb(shared_ctx: Context) -> Path:
    """Debian trixie's own postfix .deb, verified and cached in the shared workspace."""
    return _trixie_package(shared_ctx.cache_dir / "test-debs" / "trixie", REAL_PACKAGE)


def test_real_trixie_postfix_binaries(ctx: Context, debian_postfix_deb: Path) -> None:
    build_dir = ctx.workspace / "debian-build"
    build_dir.mkdir()
    shutil.copy(debian_postfix_deb, build_dir)
    exact = frozenset({"pie", "relro", "bindnow", "nxstack"})
    report = check_build(ctx, build_dir, TRIXIE, "amd64", exact, lintian=False)
    assert report.verdict == "pass", report.failures
    rows = {row.path: row for row in report.elves}
    assert len(rows) > 40
    assert rows["/usr/sbin/postfix"].kind == "executable"
    assert rows["/usr/lib/postfix/sbin/smtpd"].findings["pie"].status == YES
    libraries = [r for r in report.elves if r.kind == "shared library"]
    assert libraries and {r.findings["pie"].status for r in libraries} == {NA}
    assert (
        "imports __stack_chk_fail"
        in rows["/usr/lib/postfix/sbin/smtpd"].findings["stackprotector"].detail
    )
    # What the issue claims about trixie, measured on Debian's own build: no file carries the
    # CET markers, yet the code is instrumented.
    for row in report.elves:
        assert row.findings["cet"].status == UNAVAILABLE, row.path
        assert row.endbr64 is not None and row.endbr64 > 0
    # Without a build log the flag-only properties cannot be proven: expecting them fails.
    strict = check_build(ctx, build_dir, TRIXIE, "amd64", exact | {"fortify3"})
    assert strict.verdict == "fail"
    assert set(_statuses(strict, "fortify3").values()) == {UNKNOWN}
    assert "/usr/lib/postfix/sbin/smtpd" in strict.offending_files
    assert strict.lintian.note.startswith("not run: no .changes")


def _sbuild_cmdline(dsc: Path, dist: Distribution, chroot: Path, out: Path) -> list[str]:
    return [
        "sbuild", "--chroot-mode=unshare", f"--chroot={chroot}", f"--dist={dist.name}",
        f"--arch={dist.arch}", f"--build-dir={out}", "--arch-any", "--no-source",
        "--no-run-lintian", "--no-run-piuparts", "--no-run-autopkgtest", "--nolog", str(dsc),
    ]  # fmt: skip


def _fixture_key(chroot: Path) -> str:
    """The test build's inputs: every fixture file and the chroot's record."""
    digest = hashlib.sha256(chroot.with_suffix(".json").read_bytes())
    for path in sorted(p for p in FIXTURE.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(FIXTURE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _sbuild_hello(ctx: Context, dist: Distribution) -> Path:
    """sbuild the hello package in `dist`'s base chroot as the build user; cached per inputs."""
    chroot = ensure_chroot_tarball(ctx, dist)
    results = ctx.cache_dir / "test-hardening" / f"{dist.name}-{_fixture_key(chroot)}"
    if (results / "build.log").is_file():
        return results
    ctx.stage_root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix="hardening-", dir=ctx.stage_root))
    try:
        shutil.copytree(FIXTURE, stage / "hello-1.0")
        run.run(["dpkg-source", "-b", "hello-1.0"], cwd=stage)
        out = stage / "out"
        out.mkdir()
        if os.geteuid() == 0:
            for path in [stage, *stage.rglob("*")]:
                shutil.chown(path, user=ctx.build_user, group=ctx.build_user)
        log = stage / "sbuild.log"
        run.run(
            _sbuild_cmdline(stage / "hello_1.0.dsc", dist, chroot, out),
            user=ctx.build_user, cwd=stage, log_path=log, timeout=900,
        )  # fmt: skip
        with atomic_dir(results) as tmp:
            for built in out.iterdir():
                if built.suffix in (".deb", ".changes", ".buildinfo"):
                    shutil.copy2(built, tmp / built.name)
            shutil.copy2(log, tmp / "build.log")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return results


@pytest.fixture(scope="session")
def sbuilt(shared_ctx: Context) -> dict[str, Path]:
    """The hello package built by real sbuild for each target (about 45 s each, then cached)."""
    return {dist.name: _sbuild_hello(shared_ctx, dist) for dist in (TRIXIE, RESOLUTE)}


def test_sbuild_trixie_cet_unavailable_but_instrumented(
    ctx: Context, sbuilt: dict[str, Path]
) -> None:
    report = check_build(
        ctx, sbuilt["trixie"], TRIXIE, "amd64", ALL_BUT_CET | {"cet"}, lintian=False
    )
    assert report.verdict == "pass", report.failures
    assert [row.path for row in report.elves] == FILES
    for row in report.elves:
        cet = row.findings["cet"]
        assert cet.status == UNAVAILABLE and "endbr64" in cet.detail
        assert row.endbr64 is not None and row.endbr64 > 0
    # The sbuild log carries the dpkg-buildpackage header blhc reads, and the compile lines.
    assert report.build_log.blhc is not None and report.build_log.blhc.returncode == 0
    assert report.build_log.fortify_levels == {"3": 3}
    assert "crt1.o" in format_table(report)


def test_sbuild_resolute_every_elf_has_ibt_and_shstk(ctx: Context, sbuilt: dict[str, Path]) -> None:
    report = check_build(ctx, sbuilt["resolute"], RESOLUTE, "amd64", ALL_BUT_CET | {"cet"})
    assert report.verdict == "pass", report.failures
    assert [row.path for row in report.elves] == FILES
    for row in report.elves:
        assert row.findings["cet"].status == YES
        assert row.endbr64 is None  # the markers are the proof; no need to count
    assert report.build_log.fortify_levels == {"3": 3}
    assert "IBT and SHSTK" in format_table(report)
    assert report.lintian.cmdline[:3] == ("lintian", "--profile", "ubuntu")
    # lintian's errors (no copyright file, and the host's lintian misreading newer packages)
    # are shown, never gated on.
    assert any(t.severity == "E" for t in report.lintian.tags)


def test_blhc_on_a_real_postfix_log_excerpt() -> None:
    # sbuild's header (Build Architecture) and the compile/link lines of Debian's postfix on
    # resolute: blhc finds them and has nothing to complain about.
    result = run_blhc(FIXTURE.parent / "postfix-resolute-anvil.log", "amd64")
    assert result.returncode == 0
    assert result.findings == () and result.nonverbose == 0
    assert not result.no_compiler_commands
    # The same tool does complain where a flag is missing.
    assert run_blhc(FIXTURE.parent / "build-log-excerpt.txt", "amd64").findings
