"""A repository that lives across runs: each run a fresh workspace, the live tree served as Pages.

Every run starts from what clients see (`publish --base URL`), verified by the pinned key, and
writes the new tree back with `--to`. The oracles are apt in clean containers of each target,
gpgv and the Packages indexes, not pfbuild's own view.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian import deb822

from builder.cli import main
from builder.core import run
from builder.core.context import Context, prepare_workspace
from builder.model.distro import RESOLUTE, TRIXIE, Distribution
from builder.publish.signing import SigningConfig, ensure_signing_key, gpg_cmdline, stop_agent
from tests.fixtures.apt import AptContainer, apt_container, served_folder
from tests.fixtures.builds import make_build

pytestmark = pytest.mark.integration

__all__ = ["apt_container"]  # the fixture this module borrows


class Live:
    """The live repository: a folder served on 127.0.0.1 like a static site, and its key."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.site = root / "site"
        self.url = url
        self.key_file = root / "signing-key.gpg"
        self.runs = 0

    def run(self) -> Context:
        """The workspace of one more scheduled run: fresh, nothing of earlier runs in it."""
        self.runs += 1
        return Context(workspace=prepare_workspace(self.root / f"run{self.runs}"))

    def publish(self, ctx: Context, *args: str, base: bool = True) -> int:
        argv = ["--workspace", str(ctx.workspace), "publish", "--url", self.url]
        argv += ["--signing-key-file", str(self.key_file), "--to", str(self.site)]
        if base:
            argv += ["--base", self.url]
        return main([*argv, *args])

    def packages(self, suite: str) -> list[str]:
        """name=version of the live index of `suite` (read with python-debian)."""
        index = self.site / "dists" / suite / "main" / "binary-amd64" / "Packages"
        return sorted(
            f"{p['Package']}={p['Version']}"
            for p in deb822.Packages.iter_paragraphs(index.read_text(), use_apt_pkg=False)
        )


@pytest.fixture(scope="module")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's key, exported as a file (what the workflow's secret holds)."""
    root = tmp_path_factory.mktemp("owner")
    owner = Context(workspace=prepare_workspace(root / "owner"))
    key = ensure_signing_key(owner, SigningConfig())
    try:
        secret = run.run(gpg_cmdline(owner.signing_dir, "--export-secret-keys", key.fingerprint))
    finally:
        stop_agent(owner, key)
    path = root / "signing-key.gpg"
    path.write_bytes(secret.stdout)
    return path


@pytest.fixture
def live(tmp_path: Path, signing_key_file: Path) -> Iterator[Live]:
    """Run 1 has published hello 1.0 for both targets; the site is served while the test runs."""
    (tmp_path / "site").mkdir()
    with served_folder(tmp_path / "site") as url:
        live = Live(tmp_path, url)
        shutil.copy(signing_key_file, live.key_file)
        ctx = live.run()
        for dist in (TRIXIE, RESOLUTE):
            make_build(ctx, dist, "1.0")
        assert live.publish(ctx, "hello", "1.0", base=False) == 0
        yield live


def _ver(upstream: str, dist: Distribution) -> str:
    return f"{upstream}-1+pf1{dist.version_suffix}"


@pytest.mark.parametrize("target", [TRIXIE, RESOLUTE], ids=["trixie", "resolute"])
def test_runs_extend_the_live_repository_and_roll_back_across_runs(
    live: Live, apt_container: AptContainer, target: Distribution
) -> None:
    suite = target.name
    apt_container.configure_from(live.site, suite)
    code, out = apt_container.update()
    assert code == 0, out
    apt_container.ok("apt-get", "install", "-y", "--no-install-recommends", "pfbuild-hello")

    # Run 2, another fresh workspace: 2.0 joins 1.0 (carried over from the live tree).
    ctx = live.run()
    make_build(ctx, target, "2.0")
    assert live.publish(ctx, "hello", "2.0", "--target", suite) == 0
    assert live.packages(suite) == [
        f"pfbuild-data={_ver('1.0', target)}",
        f"pfbuild-data={_ver('2.0', target)}",
        f"pfbuild-hello={_ver('1.0', target)}",
        f"pfbuild-hello={_ver('2.0', target)}",
    ]
    other = RESOLUTE if target is TRIXIE else TRIXIE
    assert live.packages(other.name) == [
        f"pfbuild-data={_ver('1.0', other)}",
        f"pfbuild-hello={_ver('1.0', other)}",
    ], "a suite the run did not build stays as it was"
    code, out = apt_container.update()
    assert code == 0, out
    apt_container.ok("apt-get", "install", "-y", "--only-upgrade", "pfbuild-hello")
    installed = apt_container.ok("dpkg-query", "-W", "pfbuild-hello")
    assert installed.split() == ["pfbuild-hello", _ver("2.0", target)]

    # Run 3, fresh again: the rollback works from the repository's own history.
    ctx = live.run()
    assert live.publish(ctx, "--rollback", suite) == 0
    code, out = apt_container.update()
    assert code == 0, out
    # apt sees only 1.0 in the repository now (2.0 stays installed: a rollback never
    # downgrades by itself, but the admin can, from the repository).
    madison = apt_container.ok("apt-cache", "madison", "pfbuild-hello")
    assert [line.split("|")[1].strip() for line in madison.splitlines()] == [_ver("1.0", target)]
    old = _ver("1.0", target)
    apt_container.ok(
        "apt-get", "install", "-y", "--allow-downgrades",
        f"pfbuild-hello={old}", f"pfbuild-data={old}",
    )  # fmt: skip
    # Nothing to roll back to now: the state before 1.0 does not exist.
    ctx = live.run()
    assert live.publish(ctx, "--rollback", suite) == 3


def test_retention_keeps_n_versions_and_a_published_version_stays_immutable(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    for upstream in ("2.0", "3.0"):
        ctx = live.run()
        make_build(ctx, TRIXIE, upstream)
        assert live.publish(ctx, "hello", upstream, "--target", "trixie", "--keep", "2") == 0
    assert live.packages("trixie") == [
        f"pfbuild-data={_ver('2.0', TRIXIE)}",
        f"pfbuild-data={_ver('3.0', TRIXIE)}",
        f"pfbuild-hello={_ver('2.0', TRIXIE)}",
        f"pfbuild-hello={_ver('3.0', TRIXIE)}",
    ]
    assert not list(live.site.glob("pool/**/*_1.0-1+pf1~trixie_*.deb"))

    # 1.0 left the index, but the history remembers its files: a different 1.0 is refused.
    time.sleep(1.1)  # dpkg-deb stamps the time into the .deb: this build differs
    ctx = live.run()
    make_build(ctx, TRIXIE, "1.0")
    before = sorted(p.name for p in live.site.rglob("*"))
    assert live.publish(ctx, "hello", "1.0", "--target", "trixie") == 3
    err = capsys.readouterr().err
    assert "already in the repository with other content" in err
    assert sorted(p.name for p in live.site.rglob("*")) == before


def _tampered(live: Live, dest: Path) -> Path:
    shutil.copytree(live.site, dest, symlinks=True)
    return dest


def test_a_tampered_live_tree_is_refused_before_anything_is_published(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site_before = sorted(str(p) for p in live.site.rglob("*"))
    # A changed .deb.
    bad = _tampered(live, tmp_path / "bad-deb")
    deb = next(bad.glob("pool/**/pfbuild-hello_*~trixie_amd64.deb"))
    deb.write_bytes(deb.read_bytes() + b"\0")
    ctx = live.run()
    make_build(ctx, TRIXIE, "2.0")
    argv = ["--workspace", str(ctx.workspace), "publish", "--url", live.url]
    argv += ["--signing-key-file", str(live.key_file), "--to", str(live.site)]
    assert main([*argv, "--base", str(bad), "hello", "2.0", "--target", "trixie"]) == 3
    assert "does not match its Packages entry" in capsys.readouterr().err

    # An InRelease signed by another key (a whole tree published by someone else).
    stranger = live.run()
    make_build(stranger, TRIXIE, "1.0")
    cmd = ["--workspace", str(stranger.workspace), "publish", "hello", "1.0", "--target", "trixie"]
    assert main(cmd) == 0
    assert (
        main([*argv, "--base", str(stranger.apt_tree), "hello", "2.0", "--target", "trixie"]) == 3
    )
    err = capsys.readouterr().err
    assert "is signed by" in err and "not the required" in err

    # The history swapped for one signed by the other key.
    forged = _tampered(live, tmp_path / "forged-history")
    shutil.copy(stranger.apt_tree / "pfbuild-history.json", forged / "pfbuild-history.json")
    assert main([*argv, "--base", str(forged), "hello", "2.0", "--target", "trixie"]) == 3
    assert "no good signature" in capsys.readouterr().err

    assert sorted(str(p) for p in live.site.rglob("*")) == site_before
    assert not (ctx.dist_dir / "apt").exists()

    # A history signed by the right key, but an older one (a replayed file): it does not
    # describe what the signed indexes hold.
    old_history = (live.site / "pfbuild-history.json").read_bytes()
    newer = live.run()
    make_build(newer, RESOLUTE, "2.0")
    assert live.publish(newer, "hello", "2.0", "--target", "resolute") == 0
    replayed = _tampered(live, tmp_path / "replayed-history")
    (replayed / "pfbuild-history.json").write_bytes(old_history)
    assert main([*argv, "--base", str(replayed), "hello", "2.0", "--target", "trixie"]) == 3
    assert "does not describe suite resolute as published" in capsys.readouterr().err
