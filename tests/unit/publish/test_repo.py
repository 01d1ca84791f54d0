"""The publish stage: command lines, input checks, dates, history, tree swap, CLI.

Tests marked integration make real .debs (dpkg-deb) or sign (gpg).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from debian import deb822

from builder.cli import main
from builder.core.atomic import remove_path
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.core.lock import workspace_lock
from builder.model.distro import RESOLUTE, TRIXIE
from builder.publish import aptly, history, inputs, tree
from builder.publish import repo as publish
from builder.publish.signing import SigningConfig, ensure_signing_key, stop_agent
from tests.fixtures.builds import make_build, make_deb, write_verdict

pytestmark = pytest.mark.unit

CONF = Path("/ws/aptly/aptly.conf")
FPR = "A" * 40


# ---- command lines ----------------------------------------------------------------------------


def test_aptly_cmdline_scrubs_source_date_epoch() -> None:
    assert aptly.aptly_cmdline(CONF, "repo", "list") == [
        "env",
        "-u",
        "SOURCE_DATE_EPOCH",
        "aptly",
        "-config=/ws/aptly/aptly.conf",
        "repo",
        "list",
    ]


def test_publish_snapshot_cmdline_signs_by_hash_for_both_architectures() -> None:
    cmd = aptly.publish_snapshot_cmdline(CONF, "pfbuild-trixie-1", "trixie", FPR)
    assert cmd[5:] == [
        "publish",
        "snapshot",
        "-batch",
        f"-gpg-key={FPR}",
        "-acquire-by-hash",
        "-architectures=amd64,all",
        "-component=main",
        "-distribution=trixie",
        "-origin=pfbuild",
        "-label=pfbuild",
        "pfbuild-trixie-1",
        ".",
    ]


def test_publish_switch_cmdline() -> None:
    cmd = aptly.publish_switch_cmdline(CONF, "resolute", "pfbuild-resolute-2", FPR)
    assert cmd[5:] == [
        "publish",
        "switch",
        "-batch",
        f"-gpg-key={FPR}",
        "-component=main",
        "resolute",
        ".",
        "pfbuild-resolute-2",
    ]


def test_repo_commands_use_one_repo_per_target() -> None:
    create = aptly.repo_create_cmdline(CONF, RESOLUTE)
    assert create[5:] == [
        "repo",
        "create",
        "-distribution=resolute",
        "-component=main",
        "pfbuild-resolute",
    ]
    add = aptly.repo_add_cmdline(CONF, TRIXIE, [Path("/b/a.deb")])
    assert add[5:] == ["repo", "add", "pfbuild-trixie", "/b/a.deb"]
    snap = aptly.snapshot_create_cmdline(CONF, "s1", TRIXIE)
    assert snap[5:] == ["snapshot", "create", "s1", "from", "repo", "pfbuild-trixie"]


def test_aptly_config_keeps_everything_in_the_workspace(ctx: Context) -> None:
    path = aptly.write_aptly_config(ctx)
    config = json.loads(path.read_text())
    assert path.parent == ctx.aptly_dir
    assert Path(config["rootDir"]).is_relative_to(ctx.workspace)
    assert config["architectures"] == ["amd64", "all"]
    assert config["gpgProvider"] == "gpg"


def test_sources_snippet_is_deb822_with_signed_by() -> None:
    text = tree.sources_snippet("http://127.0.0.1:9000", "trixie")
    stanza = deb822.Deb822(line for line in text.splitlines() if not line.startswith("#"))
    assert dict(stanza) == {
        "Types": "deb",
        "URIs": "http://127.0.0.1:9000/",
        "Suites": "trixie",
        "Components": "main",
        "Signed-By": "/etc/apt/keyrings/pfbuild.asc",
    }


def test_options_refuse_a_url_apt_cannot_use() -> None:
    with pytest.raises(PfbuildError, match="not an http"):
        publish.PublishOptions(url="127.0.0.1:8080")


def test_new_snapshot_name_is_unique_and_time_ordered() -> None:
    now = 1795600000.0
    first = aptly.new_snapshot_name(TRIXIE, set(), now)
    assert first == "pfbuild-trixie-20261125T094640Z"
    assert aptly.new_snapshot_name(TRIXIE, {first}, now) == first + "-2"


# ---- inputs -----------------------------------------------------------------------------------


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_checked_debs_accepts_a_build_its_changes_vouches_for(ctx: Context) -> None:
    build_dir = make_build(ctx, TRIXIE, "1.0")
    debs = inputs.checked_debs(build_dir)
    assert [d.name for d in debs] == [
        "pfbuild-data_1.0-1+pf1~trixie_all.deb",
        "pfbuild-hello_1.0-1+pf1~trixie_amd64.deb",
    ]
    assert inputs.collect_debs(ctx, TRIXIE, "hello", "1.0") == debs
    assert inputs.collect_debs(ctx, TRIXIE, None, None) == debs


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_the_build_environment_of_a_build_goes_into_its_recorded_inputs(ctx: Context) -> None:
    build_dir = make_build(ctx, TRIXIE, "1.0")
    debs = inputs.checked_debs(build_dir)
    version = "1.0-1+pf1~trixie"
    recorded = [("pfbuild-hello", version, {"templates": "t"})]
    # No .buildinfo (a hand-made build published unchecked): the environment is unknown.
    assert publish._with_build_env(recorded, debs) == recorded
    buildinfo = deb822.Deb822({"Format": "1.0", "Source": "pfbuild-hello", "Version": version,
                               "Architecture": "amd64 all"})  # fmt: skip
    buildinfo["Installed-Build-Depends"] = (
        "\n libc6 (= 2.41-12),\n gcc-14 (= 14.2.0-19),\n dpkg-dev (= 1.22.21)"
    )
    (build_dir / f"pfbuild-hello_{version}_amd64.buildinfo").write_text(buildinfo.dump())
    assert publish._with_build_env(recorded, debs) == [
        (
            "pfbuild-hello",
            version,
            {"templates": "t", "build-env": "dpkg-dev=1.22.21 gcc-14=14.2.0-19 libc6=2.41-12"},
        )
    ]
    # Another build's inputs take nothing of it.
    other = [("pfbuild-hello", "1.0-1+pf2~trixie", {"templates": "t"})]
    assert publish._with_build_env(other, debs) == other


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_checked_debs_refuses_a_changed_file(ctx: Context) -> None:
    build_dir = make_build(ctx, TRIXIE, "1.0")
    deb = next(build_dir.glob("pfbuild-data_*.deb"))
    deb.write_bytes(deb.read_bytes() + b"x")
    with pytest.raises(PfbuildError, match="does not match the SHA-256"):
        inputs.checked_debs(build_dir)


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_checked_debs_refuses_a_stray_deb(ctx: Context) -> None:
    build_dir = make_build(ctx, TRIXIE, "1.0")
    make_deb(build_dir, "stray", "1.0-1+pf1~trixie", "all")
    with pytest.raises(PfbuildError, match=r"not listed in any \.changes"):
        inputs.checked_debs(build_dir)


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_checked_debs_needs_a_changes_file(ctx: Context) -> None:
    build_dir = make_build(ctx, TRIXIE, "1.0")
    for changes in build_dir.glob("*.changes"):
        changes.unlink()
    with pytest.raises(PfbuildError, match=r"no \.changes file"):
        inputs.checked_debs(build_dir)


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_a_deb_without_the_target_suffix_is_refused(ctx: Context) -> None:
    build_dir = make_build(ctx, TRIXIE, "1.0")
    info = inputs.deb_info(next(build_dir.glob("pfbuild-hello_*.deb")))
    assert (info.package, info.version, info.architecture) == (
        "pfbuild-hello",
        "1.0-1+pf1~trixie",
        "amd64",
    )
    inputs.check_deb_for_target(info, TRIXIE)
    with pytest.raises(PfbuildError, match="not ending in ~resolute"):
        inputs.check_deb_for_target(info, RESOLUTE)


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_an_unchecked_or_failed_build_is_refused(ctx: Context) -> None:
    make_build(ctx, TRIXIE, "1.0")
    write_verdict(ctx, TRIXIE, "1.0", "hello", "fail")
    with pytest.raises(PfbuildError, match="failed its check"):
        inputs.collect_debs(ctx, TRIXIE, "hello", "1.0")
    (ctx.report_dir("hello", "1.0", "trixie") / "hardening.json").unlink()
    with pytest.raises(PfbuildError, match="has not been checked"):
        inputs.collect_debs(ctx, TRIXIE, None, None)
    assert len(inputs.collect_debs(ctx, TRIXIE, None, None, allow_unchecked=True)) == 2


def test_a_missing_named_build_is_a_clear_error(ctx: Context) -> None:
    with pytest.raises(PfbuildError, match=r"no resolute build of hello 9\.9"):
        inputs.collect_debs(ctx, RESOLUTE, "hello", "9.9")


# ---- dates ------------------------------------------------------------------------------------


def test_inrelease_date_is_read(tmp_path: Path) -> None:
    release = tmp_path / "InRelease"
    release.write_text("Origin: pfbuild\nDate: Wed, 25 Nov 2026 11:31:30 UTC\nSuite: trixie\n")
    assert tree.inrelease_date(release) == 1795606290.0
    assert tree.inrelease_date(tmp_path / "missing") is None


class FakeClock:
    """A clock that only moves when slept on."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.naps = 0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.naps += 1


def test_wait_for_later_second_moves_past_the_previous_date() -> None:
    clock = FakeClock(100.2)
    publish.wait_for_later_second(100.0, clock=clock.time, sleep=clock.sleep)
    assert int(clock.now) == 101
    later = FakeClock(200.0)
    publish.wait_for_later_second(150.0, clock=later.time, sleep=later.sleep)
    publish.wait_for_later_second(None, clock=later.time, sleep=later.sleep)
    assert later.naps == 0


# ---- history ----------------------------------------------------------------------------------


def _keys(*versions: str) -> dict[str, str]:
    return {f"pkg_{v}_amd64": f"{n:064x}" for n, v in enumerate(versions)}


def test_retention_keeps_the_newest_versions_by_dpkg_order() -> None:
    packages = {**_keys("1.0-1+pf1", "1.0-1+pf10", "1.0-1+pf2", "1:0.1-1"), "doc_1.0_all": "0" * 64}
    kept = history.keep_newest(packages, 2)
    assert sorted(kept) == ["doc_1.0_all", "pkg_1.0-1+pf10_amd64", "pkg_1:0.1-1_amd64"]
    with pytest.raises(PfbuildError, match="would keep nothing"):
        history.keep_newest(packages, 0)


def test_rollback_goes_back_through_replaced_states_and_never_forward() -> None:
    suite = history.SuiteHistory()
    suite.record(history.State("d1", "publish", _keys("1"), None))
    suite.record(history.State("d2", "publish", _keys("1", "2"), 0))
    index, state = suite.rollback_state("trixie")
    assert (index, state.date) == (0, "d1")
    suite.record(history.State("d3", "rollback", dict(state.packages), state.previous))
    with pytest.raises(PfbuildError, match="no earlier state to roll back to"):
        suite.rollback_state("trixie")
    # Every file ever published stays known, with its hash: version 2 may not come back changed.
    assert history.conflicts(suite, {"pkg_2_amd64": "f" * 64}) == ["pkg_2_amd64"]
    assert history.conflicts(suite, _keys("1", "2")) == []


def test_history_round_trips_and_a_malformed_one_is_refused() -> None:
    h = history.History()
    h.suite("trixie").record(history.State("d1", "publish", _keys("1"), None))
    history.record_builds(h.suite("trixie"), [("pkg", "1", {"templates": "abc"})])
    data = json.loads(h.payload())
    assert history.History.from_json(data, "h").as_json() == data
    data["suites"]["trixie"]["states"][0]["previous"] = 0
    with pytest.raises(PfbuildError, match="replaces a later state"):
        history.History.from_json(data, "h")
    data["suites"]["trixie"]["files"]["x_1_all"] = "not a hash"
    with pytest.raises(PfbuildError, match="h is malformed"):
        history.History.from_json(data, "h")


# ---- the served tree --------------------------------------------------------------------------


def _fake_public(root: Path, index_text: str) -> Path:
    """A tree shaped like aptly's: pool file, index, absolute by-hash link."""
    public = root / "public"
    pool = public / "pool" / "main" / "p" / "pkg"
    pool.mkdir(parents=True)
    (pool / "pkg_1_all.deb").write_bytes(b"deb")
    by_hash = public / "dists" / "trixie" / "main" / "binary-all" / "by-hash" / "SHA256"
    by_hash.mkdir(parents=True)
    (by_hash.parent.parent / "Packages").write_text(index_text)
    digest = f"{abs(hash(index_text)):x}"
    (by_hash / digest).write_text(index_text)
    (by_hash / "Packages").symlink_to(by_hash / digest)
    (public / "dists" / "trixie" / "InRelease").write_text(f"Date: {index_text}\n")
    return public


def test_copy_published_tree_links_pool_copies_indexes_and_relativises_links(
    tmp_path: Path,
) -> None:
    public = _fake_public(tmp_path, "one")
    dest = tmp_path / "copy"
    tree.copy_published_tree(public, dest)
    pool_file = Path("pool/main/p/pkg/pkg_1_all.deb")
    assert (dest / pool_file).stat().st_ino == (public / pool_file).stat().st_ino
    index = Path("dists/trixie/main/binary-all/Packages")
    assert (dest / index).stat().st_ino != (public / index).stat().st_ino
    link = dest / "dists/trixie/main/binary-all/by-hash/SHA256/Packages"
    assert not link.readlink().is_absolute()
    assert link.read_text() == "one"


def test_copy_published_tree_refuses_links_leaving_the_tree(tmp_path: Path) -> None:
    public = _fake_public(tmp_path, "one")
    (public / "dists" / "escape").symlink_to("/etc/passwd")
    with pytest.raises(PfbuildError, match="links outside the published tree"):
        tree.copy_published_tree(public, tmp_path / "copy")


def test_carry_over_keeps_the_previous_indexes_by_hash(tmp_path: Path) -> None:
    old = tmp_path / "old"
    tree.copy_published_tree(_fake_public(tmp_path / "a", "one"), old)
    new = tmp_path / "new"
    tree.copy_published_tree(_fake_public(tmp_path / "b", "two"), new)
    tree.carry_over_by_hash(old, new)
    by_hash = new / "dists/trixie/main/binary-all/by-hash/SHA256"
    assert sorted(p.read_text() for p in by_hash.iterdir() if not p.is_symlink()) == [
        "one",
        "two",
    ]
    assert (by_hash / "Packages").read_text() == "two"


@pytest.mark.integration  # gpg makes the signing key
def test_refresh_tree_flips_generations_and_keeps_two(ctx: Context) -> None:
    key = ensure_signing_key(ctx, SigningConfig())
    try:
        public = aptly.aptly_public_dir(ctx)
        seen = []
        for n in range(1, 5):
            remove_path(public)
            _fake_public(public.parent, f"gen{n}")
            live, changed = tree.refresh_tree(
                ctx, key, "http://127.0.0.1:1/", {"trixie": f"s{n}"}, history.History()
            )
            assert changed
            seen.append(live.name)
            link = ctx.apt_tree
            assert link.is_symlink() and link.readlink() == Path(live.name)
            assert (link / "dists/trixie/InRelease").read_text() == f"Date: gen{n}\n"
            assert "PUBLIC KEY" in (link / "pfbuild.asc").read_text()
            assert "Suites: trixie" in (link / "pfbuild-trixie.sources").read_text()
        assert seen == ["apt.1", "apt.2", "apt.3", "apt.4"]
        assert sorted(p.name for p in ctx.dist_dir.iterdir()) == ["apt", "apt.3", "apt.4"]
        again, changed = tree.refresh_tree(
            ctx, key, "http://127.0.0.1:1/", {"trixie": "s4"}, history.History()
        )
        assert (again.name, changed) == ("apt.4", False)
    finally:
        stop_agent(ctx, key)


def test_a_real_directory_in_place_of_the_link_is_refused(ctx: Context) -> None:
    ctx.apt_tree.mkdir(parents=True)
    with pytest.raises(PfbuildError, match="is not a symlink"):
        tree.live_generation(ctx)


# ---- command line -----------------------------------------------------------------------------


def test_cli_wants_recipe_and_version_together(
    ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--workspace", str(ctx.workspace), "publish", "hello"]) == 3
    assert "RECIPE and a VERSION, or neither" in capsys.readouterr().err
    assert not ctx.dist_dir.exists()


@pytest.mark.integration  # dpkg-deb makes and reads the .debs
def test_cli_fails_clearly_while_another_publisher_holds_the_lock(
    ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    make_build(ctx, TRIXIE, "1.0")
    with workspace_lock(ctx.publish_lock, "publish"):
        argv = ["--workspace", str(ctx.workspace), "publish", "--lock-timeout", "0.2"]
        assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"another publish is running on this workspace: lock {ctx.publish_lock}" in err
    assert f"held by pid {os.getpid()} on " in err
    assert "waited 0.2 s (fix: wait for it to finish, or raise --lock-timeout)" in err
    assert not ctx.apt_tree.exists()


def test_cli_rollback_of_an_unpublished_suite_is_refused(
    ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--workspace", str(ctx.workspace), "publish", "--rollback", "resolute"]) == 3
    assert "suite resolute was never published" in capsys.readouterr().err


@pytest.mark.integration  # gpg makes the signing key
def test_cli_with_nothing_built_says_so(ctx: Context, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workspace", str(ctx.workspace), "publish"]) == 3
    assert "nothing to publish" in capsys.readouterr().err
    assert not ctx.apt_tree.exists()


def test_export_tree_replaces_the_folder_in_one_step(tmp_path: Path) -> None:
    first, second, dest = tmp_path / "one", tmp_path / "two", tmp_path / "site"
    for tree_dir, text in ((first, "1"), (second, "2")):
        (tree_dir / "dists").mkdir(parents=True)
        (tree_dir / "dists" / "file").write_text(text)
        (tree_dir / "link").symlink_to("dists/file")
    tree.export_tree(first, dest)
    assert (dest / "link").read_text() == "1" and (dest / "link").is_symlink()
    inode = dest.stat().st_ino
    tree.export_tree(second, dest)
    assert (dest / "dists" / "file").read_text() == "2"
    assert dest.stat().st_ino != inode, "a new folder took the old one's name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "site", "two"]
    (tmp_path / "plain").write_text("x")
    with pytest.raises(PfbuildError, match="is not a folder"):
        tree.export_tree(first, tmp_path / "plain")
