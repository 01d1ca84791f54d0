"""verify-reproducible without sbuild: build B's variations as data, log reading, comparison,
diffoscope staging (a fake diffoscope), the result JSON and the manifest merge."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from builder.build import compare, reproducible
from builder.build.buildlog import BuildFacts, describe_variations, parse_build_log
from builder.build.compare import (
    DebComparison,
    compare_debs,
    differing_members,
    diffoscope_cmdline,
    not_compared,
)
from builder.build.record import Verification, merge_into_manifest, verdict_of
from builder.build.reproducible import verify_reproducible
from builder.build.sbuild import BuildResult, SbuildVariant, sbuild_cmdline
from builder.build.variation import (
    B_BUILD_PATH,
    B_HOME,
    B_TZ,
    B_UID,
    B_USER,
    b_jobs,
    rules_wrapper,
    sbuild_config,
    variant_args,
)
from builder.commands import verify_reproducible as command
from builder.core.context import Context, prepare_workspace
from builder.core.errors import PfbuildError
from builder.model.distro import TRIXIE, Distribution
from tests.fixtures.reproducible import ALL_VARIATIONS

pytestmark = pytest.mark.unit

A_LOG = """\
sbuild (Debian sbuild) 0.85.0 (04 January 2023) on vm

+==============================================================================+
| demo 1.0-1 (amd64)                          Wed, 25 Nov 2026 13:10:24 +0000 |
+==============================================================================+

I: NOTICE: Log filtering will replace 'build/demo-j9osAL/demo-1.0' with '<<PKGBUILDDIR>>'
I: NOTICE: Log filtering will replace 'build/demo-j9osAL' with '<<BUILDDIR>>'

User Environment
----------------

HOME=/var/lib/sbuild
LC_ALL=C.UTF-8
LOGNAME=pfbuild
USER=pfbuild

dpkg-buildpackage
-----------------

Command: dpkg-buildpackage --sanitize-env -us -uc -b -rfakeroot
"""

B_LOG = """\
+==============================================================================+
| demo 1.0-1 (amd64)                          Wed, 25 Nov 2026 13:20:00 +0000 |
+==============================================================================+

I: NOTICE: Log filtering will replace 'build/reproducible-b/a-longer-build-path/demo-1.0' \
with '<<PKGBUILDDIR>>'

User Environment
----------------

HOME=/nonexistent/pfbuild-rebuilder
LC_ALL=C.UTF-8
USER=rebuilder

Command: dpkg-buildpackage --sanitize-env -us -uc -b -rfakeroot -j2 \
--rules-file=/opt/pfbuild-variation/rules
 /opt/pfbuild-variation/rules clean
pfbuild-variation: target=clean umask=0002 user=rebuilder uid=2345 \
home=/nonexistent/pfbuild-rebuilder tz=GMT-14 lc_all=fr_CH.UTF-8 charmap=UTF-8 \
clock=2027-12-03T13:21:00Z
pfbuild-variation: target=binary umask=0002 user=root uid=0 home=/x tz=GMT-14 \
lc_all=fr_CH.UTF-8 charmap=UTF-8 clock=2027-12-03T13:22:00Z
"""

# ---- build B as data ------------------------------------------------------------------------


def test_b_is_one_sbuild_command_with_the_variations_and_no_network(tmp_path: Path) -> None:
    dsc, chroot, out = tmp_path / "x.dsc", tmp_path / "c.tar", tmp_path / "out"
    cmd = sbuild_cmdline(dsc, TRIXIE, chroot, out, jobs=2, extra_args=variant_args())
    assert cmd[0] == "sbuild" and "--chroot-mode=unshare" in cmd and cmd[-1] == str(dsc)
    assert f"--build-path={B_BUILD_PATH}" in cmd and "--jobs=2" in cmd
    assert "--add-depends=faketime, locales" in cmd
    assert "--debbuildopt=--rules-file=/opt/pfbuild-variation/rules" in cmd
    assert not any(a.startswith("--enable-network") for a in cmd)
    # The normal build's command line does not change.
    assert sbuild_cmdline(dsc, TRIXIE, chroot, out, extra_args=()) == sbuild_cmdline(
        dsc, TRIXIE, chroot, out
    )


@pytest.mark.integration  # perl -c checks the config
def test_b_config_is_valid_perl_with_user_mount_and_chroot_commands(tmp_path: Path) -> None:
    odd = tmp_path / "it's here"
    text = sbuild_config(odd, "pfbuild")
    assert f"$build_user = '{B_USER}';" in text
    assert "directory => '" + str(odd).replace("'", "\\'") + "'" in text
    assert "mountpoint => '/opt/pfbuild-variation'" in text
    assert f"usermod --uid {B_UID} --home {B_HOME} {B_USER}" in text
    assert f"chown {B_USER} %SBUILD_BUILD_DIR" in text
    assert "getent passwd pfbuild >/dev/null || useradd --system" in text
    assert "'localedef -i fr_CH -f UTF-8 fr_CH.UTF-8'" in text
    conf = tmp_path / "sbuild.conf"
    conf.write_text(text)
    check = subprocess.run(["perl", "-c", str(conf)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


@pytest.mark.integration  # the wrapper runs in /bin/sh with coreutils
def test_the_rules_wrapper_varies_umask_locale_and_zone_then_runs_the_rules(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "faketime"
    # Stands in for faketime: drops "-f +373d", runs the rest; date then prints a fixed clock.
    fake.write_text(
        '#!/bin/sh\nshift 2\nif [ "$1" = date ]; then echo 2027-12-03T00:00:00Z; exit; fi\n'
        'exec "$@"\n'
    )
    fake.chmod(0o755)
    rules = tmp_path / "debian" / "rules"
    rules.parent.mkdir()
    rules.write_text('#!/bin/sh\necho "rules $* umask=$(umask) $TZ $LC_ALL $NO_FAKE_STAT"\n')
    rules.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(rules_wrapper())
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/nowhere"}
    out = subprocess.run(
        [str(wrapper), "binary"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    facts = parse_build_log(out)
    assert facts.wrapper["target"] == "binary"
    assert facts.wrapper["umask"] == "0002" and facts.wrapper["tz"] == B_TZ
    assert facts.wrapper["lc_all"] == "fr_CH.UTF-8" and facts.wrapper["home"] == "/nowhere"
    assert facts.wrapper["clock"] == "2027-12-03T00:00:00Z"
    assert "rules binary umask=0002 GMT-14 fr_CH.UTF-8 1" in out


def test_b_runs_serially_when_a_ran_in_parallel_and_the_other_way_round() -> None:
    parallel = max(2, os.cpu_count() or 1)
    assert b_jobs("") == parallel
    assert b_jobs("1") == parallel
    assert b_jobs("4") == 1
    assert b_jobs("auto") == parallel


# ---- what each build saw --------------------------------------------------------------------


def test_the_logs_say_what_each_build_saw() -> None:
    a, b = parse_build_log(A_LOG), parse_build_log(B_LOG)
    assert a.build_path == "/build/demo-j9osAL/demo-1.0" and a.jobs == ""
    assert a.started == "Wed, 25 Nov 2026 13:10:24 +0000"
    assert a.env["USER"] == "pfbuild" and a.env["LC_ALL"] == "C.UTF-8" and not a.wrapper
    assert b.build_path == f"{B_BUILD_PATH}/demo-1.0" and b.jobs == "2"
    # The first wrapper line: the clean target, not binary under fakeroot.
    assert b.wrapper["user"] == B_USER and b.wrapper["uid"] == str(B_UID)


def test_every_variation_is_applied_when_b_log_proves_it() -> None:
    variations = describe_variations(parse_build_log(A_LOG), parse_build_log(B_LOG))
    assert {v.name for v in variations} == ALL_VARIATIONS
    assert all(v.applied for v in variations), [v for v in variations if not v.applied]
    by_name = {v.name: v for v in variations}
    assert by_name["build user"].b == f"{B_USER} (uid {B_UID})"
    assert by_name["parallel jobs"].a.startswith("no -j")
    assert by_name["clock"].b.startswith("2027-12-03T13:21:00Z")


def test_a_variation_b_did_not_show_is_not_claimed() -> None:
    a = parse_build_log(A_LOG)
    b = parse_build_log(B_LOG.replace("pfbuild-variation:", "something else:"))
    by_name = {v.name: v for v in describe_variations(a, b)}
    for name in ("clock", "time zone", "locale", "umask", "build user", "home directory"):
        assert not by_name[name].applied and by_name[name].b == "not seen in B's log", name
    # Seen in sbuild's own lines, so still applied.
    assert by_name["build path"].applied and by_name["parallel jobs"].applied


def test_an_unshifted_clock_or_a_missing_locale_is_not_applied() -> None:
    b = parse_build_log(
        B_LOG.replace("clock=2027-12-03T13:21:00Z", "clock=2026-11-25T13:21:00Z").replace(
            "charmap=UTF-8", "charmap=ANSI_X3.4-1968"
        )
    )
    by_name = {v.name: v for v in describe_variations(parse_build_log(A_LOG), b)}
    assert not by_name["clock"].applied
    assert not by_name["locale"].applied


# ---- comparison -----------------------------------------------------------------------------


def test_debs_are_paired_by_name_and_compared_by_hash(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    for d, content in ((a_dir, "1"), (b_dir, "2")):
        (d / "same_1_all.deb").write_text("same")
        (d / "differs_1_amd64.deb").write_text(content)
        (d / "x.buildinfo").write_text(content)
    (a_dir / "gone_1_all.deb").write_text("a")
    (b_dir / "new-dbgsym_1_amd64.ddeb").write_text("b")
    files_a = [p.name for p in a_dir.iterdir()]
    files_b = [p.name for p in b_dir.iterdir()]
    pairs = {p.name: p for p in compare_debs(a_dir, files_a, b_dir, files_b)}
    assert {n: p.verdict for n, p in pairs.items()} == {
        "differs_1_amd64.deb": "different",
        "gone_1_all.deb": "only in A",
        "new-dbgsym_1_amd64.ddeb": "only in B",
        "same_1_all.deb": "identical",
    }
    assert pairs["same_1_all.deb"].a_sha256 == pairs["same_1_all.deb"].b_sha256
    assert pairs["gone_1_all.deb"].b_sha256 is None
    assert [e["file"] for e in not_compared(files_a)] == ["x.buildinfo"]


DIFFOSCOPE_TEXT = """\
--- a/demo_1.0_amd64.deb
+++ b/demo_1.0_amd64.deb
├── file list
│ @@ -1,3 +1,3 @@
├── data.tar.xz
│ ├── data.tar
│ │ ├── file list
│ │ │ --rw-r--r--   0 root (0) root (0)  2178 2023-01-03 12:04:46.000000 ./usr/share/doc/x
│ │ │ +-rw-r--r--   0 root (0) root (0)  2178 2023-01-31 09:21:16.000000 ./usr/share/doc/x
│ │ │ -lrwxrwxrwx   0 root (0) root (0)     0 2023-01-31 09:21:16.000000 ./usr/lib/l -> l.2
│ │ ├── ./usr/sbin/postconf
│ │ │ ├── readelf --wide --notes {}
│ │ ├── ./usr/share/doc/x
"""


def test_differing_members_are_read_from_the_text_report() -> None:
    assert differing_members(DIFFOSCOPE_TEXT) == [
        "./usr/share/doc/x",
        "./usr/lib/l",
        "./usr/sbin/postconf",
    ]


def test_diffoscope_is_bounded_in_time_and_size() -> None:
    cmd = diffoscope_cmdline("a/x.deb", "b/x.deb", "out/x.txt", "out/x.html")
    assert cmd[0] == "diffoscope" and cmd[-2:] == ["a/x.deb", "b/x.deb"]
    assert "--text=out/x.txt" in cmd and "--html=out/x.html" in cmd
    assert any(a.startswith("--timeout=") for a in cmd)
    assert any(a.startswith("--max-report-size=") for a in cmd)
    assert any(a.startswith("--max-text-report-size=") for a in cmd)


# ---- the whole run with fake builds ---------------------------------------------------------


@pytest.fixture
def own_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A Context whose build user is whoever runs the tests, staging under tmp_path."""
    monkeypatch.setenv("PFBUILD_STAGE_ROOT", str(tmp_path / "stage"))
    me = pwd.getpwuid(os.geteuid()).pw_name
    return Context(workspace=prepare_workspace(tmp_path / "ws"), build_user=me)


class FakeBuilds:
    """build_package's stand-in: A and B write their .debs and logs; B's inputs are checked."""

    def __init__(self, b_contents: dict[str, str]) -> None:
        self.b_contents = b_contents
        self.variants: list[SbuildVariant | None] = []
        self.config_text = ""

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
    ) -> BuildResult:
        self.variants.append(variant)
        out_dir.mkdir(parents=True, exist_ok=True)
        if variant is None:
            contents = {"demo_1.0_amd64.deb": "one", "demo-doc_1.0_all.deb": "doc"}
            (out_dir / "build.log").write_text(A_LOG)
        else:
            config = Path(dict(variant.env)["SBUILD_CONFIG"])
            self.config_text = config.read_text()
            assert (config.parent / "rules").read_text() == rules_wrapper()
            assert jobs == b_jobs("")
            contents = self.b_contents
            (out_dir / "build.log").write_text(B_LOG)
        for name, text in {**contents, "demo_1.0_amd64.buildinfo": str(variant)}.items():
            (out_dir / name).write_text(text)
        files = tuple(sorted(p.name for p in out_dir.iterdir() if p.name != "build.log"))
        return BuildResult(dist.name, out_dir, "k", files, variant is None)


def _dsc(tmp_path: Path) -> Path:
    dsc = tmp_path / "demo_1.0.dsc"
    dsc.write_text("Format: 3.0 (native)\nSource: demo\n")
    return dsc


def _verify(ctx: Context, tmp_path: Path, b_deb: str) -> tuple[Verification, FakeBuilds]:
    """verify-reproducible with fake builds; B's demo .deb holds `b_deb` (A's holds "one")."""
    builds = FakeBuilds({"demo_1.0_amd64.deb": b_deb, "demo-doc_1.0_all.deb": "doc"})
    return verify_reproducible(ctx, "demo", "1.0", _dsc(tmp_path), TRIXIE, build=builds), builds


@pytest.fixture
def no_diffoscope(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a host without diffoscope."""
    monkeypatch.setattr(compare, "diffoscope_path", lambda: None)


@pytest.mark.usefixtures("no_diffoscope")
def test_identical_builds_are_reproducible_and_recorded(own_ctx: Context, tmp_path: Path) -> None:
    result, builds = _verify(own_ctx, tmp_path, "one")
    assert result.verdict == "reproducible" and result.manifest is None
    assert builds.variants[0] is None and builds.variants[1] is not None
    assert "$build_user = 'rebuilder';" in builds.config_text
    report = own_ctx.report_dir("demo", "1.0", "trixie") / "reproducible.json"
    assert result.report == report
    data = json.loads(report.read_text())
    assert data["verdict"] == "reproducible" and data["target"] == "trixie"
    assert data["dsc"]["name"] == "demo_1.0.dsc" and len(data["dsc"]["sha256"]) == 64
    assert {v["name"] for v in data["variations"] if v["applied"]} == ALL_VARIATIONS
    assert all(d["a_sha256"] == d["b_sha256"] for d in data["debs"])
    b_dir = reproducible.scratch_dir(own_ctx, "demo", "1.0", "trixie")
    assert data["build_b"]["dir"] == str(b_dir)
    assert b_dir == own_ctx.workspace / "reproducible" / "demo" / "1.0" / "trixie" / "b"
    assert data["not_compared"][0]["file"] == "demo_1.0_amd64.buildinfo"
    assert not (own_ctx.workspace / "manifests").exists()
    # B's variation files were staged for the build only.
    assert not list((tmp_path / "stage").glob("variation-*"))


@pytest.mark.usefixtures("no_diffoscope")
def test_a_difference_without_diffoscope_says_so(own_ctx: Context, tmp_path: Path) -> None:
    result, _builds = _verify(own_ctx, tmp_path, "two")
    assert result.verdict == "unreproducible"
    assert result.no_diffoscope is not None and "not installed" in result.no_diffoscope
    data = json.loads(result.report.read_text())
    assert data["diffoscope"]["why_none"] == result.no_diffoscope
    verdicts = {d["name"]: d["verdict"] for d in data["debs"]}
    assert verdicts == {"demo_1.0_amd64.deb": "different", "demo-doc_1.0_all.deb": "identical"}


FAKE_DIFFOSCOPE = """\
#!/bin/sh
[ "$1" = --version ] && { echo "diffoscope 999"; exit 0; }
for a in "$@"; do
    prev="$last"; last="$a"
    case "$a" in --text=*) t="${a#--text=}";; --html=*) h="${a#--html=}";; esac
done
printf -- '--- %s\\n+++ %s\\n├── data.tar.xz\\n│ ├── ./usr/bin/demo\\n' "$prev" "$last" > "$t"
echo '<html></html>' > "$h"
exit 1
"""


@pytest.mark.integration  # coreutils timeout runs a /bin/sh diffoscope
def test_differences_get_a_diffoscope_report_and_the_manifest_an_entry(
    own_ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "diffoscope").write_text(FAKE_DIFFOSCOPE)
    (bin_dir / "diffoscope").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    manifest = own_ctx.workspace / "manifests" / "demo-1.0.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"recipe": "demo", "reproducible": {"resolute": {"x": 1}}}))
    stale = own_ctx.report_dir("demo", "1.0", "trixie") / "reproducible" / "old.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    result, _builds = _verify(own_ctx, tmp_path, "two")

    finding = result.findings["demo_1.0_amd64.deb"]
    assert finding["status"] == "differences" and finding["members"] == ["./usr/bin/demo"]
    text = Path(finding["text"])
    assert text.parent == stale.parent and not stale.exists()
    assert text.read_text().startswith("--- a/demo_1.0_amd64.deb\n+++ b/demo_1.0_amd64.deb")
    assert Path(finding["html"]).is_file()
    data = json.loads(result.report.read_text())
    assert data["diffoscope"]["version"] == "diffoscope 999"
    assert result.manifest == manifest
    merged = json.loads(manifest.read_text())
    assert merged["recipe"] == "demo" and merged["reproducible"]["resolute"] == {"x": 1}
    entry = merged["reproducible"]["trixie"]
    assert entry["verdict"] == "unreproducible"
    assert entry["differing"] == ["demo_1.0_amd64.deb"]
    assert entry["identical"] == ["demo-doc_1.0_all.deb"]
    assert set(entry["variations"]) == ALL_VARIATIONS and entry["not_applied"] == []
    assert entry["report"] == str(result.report)
    lines = command.format_verification(result)
    assert lines[0] == "trixie    identical   demo-doc_1.0_all.deb"
    assert lines[1].startswith("trixie    different   demo_1.0_amd64.deb  diffoscope: ")
    assert "(./usr/bin/demo)" in lines[1]
    assert lines[2].startswith("trixie    unreproducible: 1 of 2 .debs identical under 8 ")


def test_manifest_merge_replaces_one_target_and_needs_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    assert merge_into_manifest(path, "trixie", {"verdict": "reproducible"}) is False
    assert not path.exists()
    path.write_text(json.dumps({"a": 1, "reproducible": {"trixie": {"old": True}}}))
    assert merge_into_manifest(path, "trixie", {"verdict": "reproducible"}) is True
    assert json.loads(path.read_text()) == {
        "a": 1,
        "reproducible": {"trixie": {"verdict": "reproducible"}},
    }
    path.write_text("{not json")
    with pytest.raises(PfbuildError, match="cannot read the release manifest"):
        merge_into_manifest(path, "trixie", {})


# ---- the command ----------------------------------------------------------------------------


def test_dsc_needs_exactly_one_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dsc = _dsc(tmp_path)
    code = cli.main(["--workspace", str(tmp_path / "ws"), "verify-reproducible", "demo", "1.0",
                     "--dsc", str(dsc)])  # fmt: skip
    assert code == 3
    assert "--dsc needs exactly one --target" in capsys.readouterr().err


def test_exit_status_follows_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake(ctx: Context, recipe: str, version: str, dsc: Path, dist: Distribution) -> Any:
        pair = DebComparison("demo_1.0_amd64.deb", "a" * 64, ("a" if same else "b") * 64)
        record = {"variations": [{"name": "umask", "applied": True}]}
        return Verification(
            dist.name, verdict_of([pair]), (pair,), {}, None,
            tmp_path / "r.json", None, record,
        )  # fmt: skip

    monkeypatch.setattr(command, "verify_reproducible", fake)
    args = ["--workspace", str(tmp_path / "ws"), "verify-reproducible", "demo", "1.0",
            "--target", "trixie", "--dsc", str(_dsc(tmp_path))]  # fmt: skip
    same = True
    assert cli.main(args) == 0
    assert "reproducible: 1 of 1 .debs identical under 1 variations (umask)" in (
        capsys.readouterr().out
    )
    same = False
    assert cli.main(args) == 11
    out = capsys.readouterr().out
    assert "different   demo_1.0_amd64.deb" in out and "unreproducible: 0 of 1" in out


def test_facts_default_to_unknown() -> None:
    facts = BuildFacts()
    assert facts.build_path is None and facts.jobs == "" and not facts.wrapper
