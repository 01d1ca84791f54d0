"""Results handed between machines: artifacts into `publish --from`, trees into `image --from`.

Real aptly and gpg publish the tiny test builds; the tree is copied the way a CI artifact
travels (links resolved), then verified and tampered with.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.cli import main
from builder.core.context import Context, prepare_workspace
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TRIXIE
from builder.publish.tree import MANIFEST_NAME, install_tree
from builder.publish.treecheck import verify_tree
from tests.fixtures.artifacts import RECIPE, VERSION, exported

pytestmark = pytest.mark.integration


@pytest.fixture
def tree(ctx: Context, tmp_path: Path) -> Path:
    """Both targets' artifacts published by `publish --from` in another workspace, copied out."""
    for dist in (TRIXIE, RESOLUTE):
        exported(ctx, dist)
    incoming = tmp_path / "incoming"
    shutil.copytree(ctx.workspace / "artifacts", incoming)
    publisher = Context(workspace=prepare_workspace(tmp_path / "publisher"))
    ws = str(publisher.workspace)
    assert main(["--workspace", ws, "publish", "--from", str(incoming)]) == 0
    assert {p.name for p in publisher.build_dir(RECIPE, VERSION, "x").parent.iterdir()} == {
        "trixie",
        "resolute",
    }
    copy = tmp_path / "downloaded"
    # As upload-artifact stores it: every link replaced by the file it points to.
    subprocess.run(["cp", "-rL", str(publisher.apt_tree), str(copy)], check=True)
    return copy


def fingerprint(tree: Path) -> str:
    value: str = json.loads((tree / MANIFEST_NAME).read_text())["fingerprint"]
    return value


def test_a_published_tree_verifies_with_its_pinned_key(tree: Path) -> None:
    verified = verify_tree(tree, fingerprint(tree))
    assert verified.suites == ("resolute", "trixie")
    assert verified.debs == 2  # libmimalloc-secure per suite


def test_another_key_is_refused(tree: Path, tmp_path: Path) -> None:
    other = "0123456789ABCDEF0123456789ABCDEF01234567"
    with pytest.raises(PfbuildError, match=f"not the required {other}"):
        verify_tree(tree, other)
    # Through the CLI: one line, exit 3, and nothing installed in the workspace.
    ws = tmp_path / "imager"
    args = ["--workspace", str(ws), "image", "--from", str(tree), "--require-key", other]
    assert main(args) == 3
    assert not (ws / "dist").exists()


def test_a_changed_package_is_refused(tree: Path) -> None:
    deb = next(tree.glob("pool/**/*.deb"))
    data = bytearray(deb.read_bytes())
    data[-1] ^= 1
    deb.write_bytes(bytes(data))
    with pytest.raises(PfbuildError, match=re.escape(f"{deb} does not match its Packages entry")):
        verify_tree(tree)


def test_a_stray_package_is_refused(tree: Path) -> None:
    stray = tree / "pool" / "main" / "e" / "evil_1_amd64.deb"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"!<arch>\n")
    with pytest.raises(PfbuildError, match="is in no Packages index"):
        verify_tree(tree)


def test_an_edited_inrelease_is_refused(tree: Path) -> None:
    inrelease = tree / "dists" / "trixie" / "InRelease"
    inrelease.write_text(inrelease.read_text().replace("Label: pfbuild", "Label: other"))
    with pytest.raises(PfbuildError, match="bad or unknown OpenPGP signature on InRelease"):
        verify_tree(tree)


def test_an_index_that_differs_from_its_inrelease_is_refused(tree: Path) -> None:
    packages = tree / "dists" / "trixie" / "main" / "binary-amd64" / "Packages"
    packages.write_text(packages.read_text() + "\n")
    with pytest.raises(PfbuildError, match="does not match its signed InRelease"):
        verify_tree(tree)


def test_a_link_out_of_the_tree_is_refused(tree: Path) -> None:
    (tree / "dists" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(PfbuildError, match="links outside the tree"):
        verify_tree(tree)


def test_a_verified_tree_becomes_the_live_one(tree: Path, tmp_path: Path) -> None:
    imager = Context(workspace=prepare_workspace(tmp_path / "imager"))
    for _ in range(2):  # installing again makes a new generation and flips the link
        live = install_tree(imager, verify_tree(tree, fingerprint(tree)).path)
        assert imager.apt_tree.resolve() == live
        assert (live / "dists" / "trixie" / "InRelease").read_bytes() == (
            tree / "dists" / "trixie" / "InRelease"
        ).read_bytes()
    assert live.name == "apt.2"
