"""`publish --from` believes nothing an artifact says about itself (real dpkg-deb, gpg, aptly).

artifact.json is unsigned and sits beside the files it describes: whoever can change a file can
re-hash it there, in the .changes and in the .buildinfo. Each hostile artifact below is
consistent in that sense, so only reading the packages, comparing the build records and running
the hardening check again can refuse it; a refusal exits 3 with one line and leaves the
publishing workspace as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from debian import deb822

from builder.cli import main
from builder.core.context import Context, prepare_workspace
from builder.core.digest import sha256_file
from builder.model.distro import TRIXIE
from builder.publish.artifact import MANIFEST
from tests.fixtures.artifacts import (
    DEB_VERSION,
    LIBRARY_PATH,
    PACKAGE,
    RECIPE,
    SOURCE,
    VERSION,
    checksums,
    make_artifact,
    make_build,
    make_package,
    unhardened_library,
    write_records,
)

pytestmark = pytest.mark.integration

# The genuine artifacts come from tests/fixtures/artifacts.py; what a forger does to them is here.


# ---- forging ----------------------------------------------------------------------------------


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` as a new file (artifact files are hard links into the build)."""
    path.unlink()
    path.write_bytes(data)


def rehash_manifest(folder: Path) -> None:
    """What a forger does last: artifact.json re-hashed to match every file as it is now."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = [
        {"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.name != MANIFEST
    ]
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def forge_verdict(folder: Path, verdict: str) -> None:
    """Edit the report and the manifest to claim `verdict`, then re-hash."""
    report = json.loads((folder / "hardening.json").read_text())
    replace_file(folder / "hardening.json", json.dumps({**report, "verdict": verdict}).encode())
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["check"] = {"verdict": verdict, "report": "hardening.json"}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    rehash_manifest(folder)


# ---- the publishing side ----------------------------------------------------------------------


@pytest.fixture
def builder_ctx(tmp_path: Path) -> Context:
    """The build runner's workspace."""
    return Context(workspace=prepare_workspace(tmp_path / "runner"))


@pytest.fixture
def publisher(tmp_path: Path) -> Context:
    """The publishing machine's workspace."""
    return Context(workspace=prepare_workspace(tmp_path / "publisher"))


def publish_from(publisher: Context, folder: Path, *extra: str) -> int:
    return main(
        ["--quiet", "--workspace", str(publisher.workspace), "publish", "--from", str(folder),
         *extra]
    )  # fmt: skip


def snapshot(workspace: Path) -> dict[str, str]:
    """Every file a publish can change (builds, reports, the tree, aptly), with its content hash."""
    found: dict[str, str] = {}
    for top in ("builds", "reports", "dist", "aptly", "signing"):
        for root, _dirs, files in os.walk(workspace / top):
            for name in files:
                path = Path(root) / name
                data = path.read_bytes() if not path.is_symlink() else str(path.readlink()).encode()
                found[str(path.relative_to(workspace))] = hashlib.sha256(data).hexdigest()
    if (workspace / "dist" / "apt").is_symlink():
        found["dist/apt ->"] = str((workspace / "dist" / "apt").readlink())
    return found


def assert_refused(
    publisher: Context, folder: Path, capsys: pytest.CaptureFixture[str], message: str
) -> None:
    """exit 3, one line naming the problem, and nothing written or trusted by the publisher."""
    before = snapshot(publisher.workspace)
    capsys.readouterr()
    assert publish_from(publisher, folder) == 3
    assert snapshot(publisher.workspace) == before
    err = capsys.readouterr().err.strip()
    assert err.startswith("pfbuild: error: ") and "\n" not in err, err
    assert message in err, err
    assert not list((publisher.workspace / "tmp").iterdir())


# ---- a genuine artifact: the check made here decides, the artifact's report is kept -----------


def test_a_genuine_artifact_is_published_with_its_check_made_here(
    builder_ctx: Context, publisher: Context, tmp_path: Path
) -> None:
    folder = make_artifact(builder_ctx, tmp_path / "pkgs")
    assert publish_from(publisher, folder) == 0
    reports = publisher.report_dir(RECIPE, VERSION, TRIXIE.name)
    ours = json.loads((reports / "hardening.json").read_text())
    assert ours["verdict"] == "pass" and ours["debs"] == [f"{PACKAGE}_{DEB_VERSION}_amd64.deb"]
    # The artifact's own report is kept beside the one made here, for comparison.
    assert (reports / "artifact-hardening.json").read_bytes() == (
        folder / "hardening.json"
    ).read_bytes()
    packages = publisher.apt_tree / "dists" / "trixie" / "main" / "binary-amd64" / "Packages"
    assert f"Package: {PACKAGE}\n" in packages.read_text()


# ---- hostile artifacts, each consistent with its own artifact.json ----------------------------


def test_a_truncated_deb_rehashed_everywhere_is_refused(
    builder_ctx: Context, publisher: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_artifact(builder_ctx, tmp_path / "pkgs", {"usr/lib/blob": os.urandom(200_000)})
    deb = folder / f"{PACKAGE}_{DEB_VERSION}_amd64.deb"
    replace_file(deb, deb.read_bytes()[:2000])
    write_records(folder)
    rehash_manifest(folder)
    assert_refused(publisher, folder, capsys, f"{deb.name} is not a readable Debian package")


def test_a_forged_verdict_is_refused(
    builder_ctx: Context, publisher: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = {LIBRARY_PATH: unhardened_library(tmp_path)}
    folder = make_artifact(builder_ctx, tmp_path / "pkgs", library)
    assert json.loads((folder / "hardening.json").read_text())["verdict"] == "fail"
    forge_verdict(folder, "pass")
    assert_refused(
        publisher, folder, capsys,
        "its report says 'pass', the hardening check of its packages here says 'fail'",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("package", "version", "message"),
    [
        ("openssh-server", DEB_VERSION, "holds the package 'openssh-server', which "
         "mimalloc-secure does not build for trixie"),
        (PACKAGE, "2.0.9+ds-2+pf9~trixie", f"is {PACKAGE} 2.0.9+ds-2+pf9~trixie for amd64, "
         f"not {DEB_VERSION} for amd64 or all"),
    ],
    ids=["foreign-name", "other-version"],
)  # fmt: skip
def test_a_package_the_recipe_does_not_build_is_refused(
    builder_ctx: Context,
    publisher: Context,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    package: str,
    version: str,
    message: str,
) -> None:
    folder = make_artifact(builder_ctx, tmp_path / "pkgs")
    foreign = make_package(tmp_path / "foreign", package, {}, version)
    (folder / foreign.name).write_bytes(foreign.read_bytes())
    write_records(folder)
    rehash_manifest(folder)
    assert_refused(publisher, folder, capsys, message)


def _buildinfo_with_another_hash(folder: Path) -> None:
    buildinfo = next(folder.glob("*.buildinfo"))
    text = buildinfo.read_text()
    deb = next(folder.glob("*.deb"))
    replace_file(buildinfo, text.replace(sha256_file(deb), "0" * 64).encode())
    write_changes_only(folder)


def _buildinfo_without_a_package(folder: Path) -> None:
    buildinfo = next(folder.glob("*.buildinfo"))
    para = deb822.Deb822(buildinfo.read_text())
    para["Checksums-Sha256"] = ""
    replace_file(buildinfo, para.dump().encode())
    write_changes_only(folder)


def write_changes_only(folder: Path) -> None:
    """Re-hash the .buildinfo in the .changes, as a forger who edited the .buildinfo would."""
    changes = next(folder.glob("*.changes"))
    para = deb822.Deb822(changes.read_text())
    files = [p for p in sorted(folder.iterdir()) if p.suffix in (".deb", ".buildinfo")]
    para["Checksums-Sha256"] = checksums(files)
    replace_file(changes, para.dump().encode())


CHANGES_NAME = f"{SOURCE}_{DEB_VERSION}_amd64.changes"
BUILDINFO_NAME = f"{SOURCE}_{DEB_VERSION}_amd64.buildinfo"
RECORD_FORGERIES: dict[str, tuple[Callable[[Path], None], str]] = {
    "buildinfo-hash": (
        _buildinfo_with_another_hash,
        f"{PACKAGE}_{DEB_VERSION}_amd64.deb does not match the SHA-256 and size {BUILDINFO_NAME}",
    ),
    "buildinfo-unlisted": (
        _buildinfo_without_a_package,
        f"{BUILDINFO_NAME} does not list the build's files: {PACKAGE}_{DEB_VERSION}_amd64.deb "
        "missing",
    ),
    "versions-differ": (
        lambda folder: write_records(
            folder, version="2.0.9+ds-3+pf1~trixie", buildinfo_version=DEB_VERSION
        ),
        f"{CHANGES_NAME} and {BUILDINFO_NAME} describe different builds",
    ),
    "another-source": (
        lambda folder: write_records(folder, source="openssh"),
        f"{CHANGES_NAME} is for openssh {DEB_VERSION} (amd64), not mimalloc-secure",
    ),
}


@pytest.mark.parametrize("forgery", sorted(RECORD_FORGERIES))
def test_build_records_that_disagree_are_refused(
    builder_ctx: Context,
    publisher: Context,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    forgery: str,
) -> None:
    folder = make_artifact(builder_ctx, tmp_path / "pkgs")
    forge, message = RECORD_FORGERIES[forgery]
    forge(folder)
    rehash_manifest(folder)
    assert_refused(publisher, folder, capsys, message)


# ---- a refusal leaves the publisher's own build and tree as they were -------------------------


@pytest.mark.parametrize("forged", [False, True], ids=["failing", "forged"])
def test_a_refused_artifact_leaves_the_local_build_untouched(
    builder_ctx: Context,
    publisher: Context,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    forged: bool,
) -> None:
    # The publisher has its own passing build of the same recipe, version and target, published.
    make_build(publisher, [make_package(tmp_path / "local", PACKAGE, {})])
    args = ["--quiet", "--workspace", str(publisher.workspace), "publish", RECIPE, VERSION]
    assert main([*args, "--target", "trixie"]) == 0
    library = {LIBRARY_PATH: unhardened_library(tmp_path)}
    folder = make_artifact(builder_ctx, tmp_path / "remote", library)
    if forged:
        forge_verdict(folder, "pass")
        message = "the hardening check of its packages here says 'fail'"
    else:
        message = "mimalloc-secure 2.0.9 for trixie fails its hardening check"
    assert_refused(publisher, folder, capsys, message)
    report = json.loads(
        (publisher.report_dir(RECIPE, VERSION, "trixie") / "hardening.json").read_text()
    )
    assert report["verdict"] == "pass"
