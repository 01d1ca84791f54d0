"""`pfbuild verify` without host tools: its lines, its choice of release, its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.cli import main
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.publish.attestations import index_with, read_index
from builder.publish.tree import extend_tree, flip_link, tree_path
from builder.publish.treefiles import TreeFiles
from builder.publish.verify import Link, choose_release, image_subjects

pytestmark = pytest.mark.unit

FPR = "A" * 40


def test_one_line_per_link() -> None:
    assert Link("InRelease trixie", True).line() == "ok  InRelease trixie"
    assert Link("sbom trixie", False, "changed").line() == "FAIL sbom trixie: changed"


def test_the_release_is_the_one_asked_for_else_the_one_attested_last(tmp_path: Path) -> None:
    files = TreeFiles(str(tmp_path), tmp_path / "scratch")
    assert choose_release(files, "postfix-3.11.6") == "postfix-3.11.6"
    with pytest.raises(PfbuildError, match=r"no attestations/index\.json"):
        choose_release(files, None)
    (tmp_path / "attestations").mkdir()
    (tmp_path / "attestations" / "index.json").write_bytes(
        index_with(read_index(index_with({}, "postfix-3.11.5")), "postfix-3.11.6")
    )
    assert choose_release(files, None) == "postfix-3.11.6"
    with pytest.raises(PfbuildError, match="not a release name"):
        choose_release(files, "../../etc")


def test_the_index_names_every_release_and_the_last_one() -> None:
    index = json.loads(index_with(read_index(index_with({}, "postfix-3.11.6")), "postfix-3.11.5"))
    assert index == {"latest": "postfix-3.11.5", "releases": ["postfix-3.11.5", "postfix-3.11.6"]}
    assert read_index(b"not json") == {"releases": []}
    assert read_index(b'{"releases": [1]}') == {"releases": []}


def test_images_are_the_subjects_that_are_not_files_of_the_tree() -> None:
    subjects = {
        "pool/main/p/postfix/postfix_3.11.6-1+pf1~trixie_amd64.deb": "1" * 64,
        "dists/trixie/InRelease": "2" * 64,
        "attestations/postfix-3.11.6/sbom-trixie.cdx.json": "3" * 64,
        "pfbuild-postfix:3.11.6-debian": "4" * 64,
        "registry.example:5000/pfbuild-postfix:3.11.6-ubuntu": "5" * 64,
    }
    assert image_subjects(subjects) == {
        "pfbuild-postfix:3.11.6-debian": "4" * 64,
        "registry.example:5000/pfbuild-postfix:3.11.6-ubuntu": "5" * 64,
    }


def test_paths_from_documents_stay_inside_the_tree(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(PfbuildError, match="not a plain path"):
            tree_path(tmp_path, bad)
    files = TreeFiles(str(tmp_path), tmp_path / "scratch")
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(PfbuildError, match="leads outside the tree"):
        files.get("link/passwd")


def test_verify_makes_no_workspace_and_refuses_what_is_not_a_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["verify", "--repo", str(tmp_path / "missing"), "--key", FPR])
    assert code == 3
    assert "is not a folder" in capsys.readouterr().err
    code = main(["verify", "--repo", "ftp://example.invalid/", "--key", FPR])
    assert code == 3
    code = main(["verify", "--repo", str(tmp_path), "--key", "ABCD"])
    assert code == 3
    assert "not a full fingerprint" in capsys.readouterr().err
    assert main(["verify", "--key", FPR]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_new_generation_adds_files_and_replaces_a_folder_whole(ctx: Context) -> None:
    first = ctx.apt_tree.with_name("apt.1")
    (first / "pool" / "main").mkdir(parents=True)
    (first / "pool" / "main" / "a.deb").write_bytes(b"deb")
    (first / "attestations" / "r-1" / "old.json").parent.mkdir(parents=True)
    (first / "attestations" / "r-1" / "old.json").write_text("{}")
    (first / "attestations" / "r-0").mkdir()
    flip_link(ctx.apt_tree, first.name)
    live = extend_tree(ctx, {"attestations/r-1/new.json": b"new"}, replacing=["attestations/r-1"])
    assert live.name == "apt.2" and ctx.apt_tree.resolve() == live.resolve()
    assert sorted(p.name for p in (live / "attestations").iterdir()) == ["r-0", "r-1"]
    assert [p.name for p in (live / "attestations" / "r-1").iterdir()] == ["new.json"]
    assert (live / "pool" / "main" / "a.deb").stat().st_ino == (
        first / "pool" / "main" / "a.deb"
    ).stat().st_ino


def test_cosign_is_looked_for_only_when_an_image_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, object]] = []

    def fake_verify(_repo: str, _key: str, **options: object) -> tuple[str, list[Link]]:
        seen.append(options)
        return "postfix-3.11.6", [Link("key", True)]

    monkeypatch.setattr("builder.commands.verify.verify_release", fake_verify)
    assert main(["verify", "--repo", str(tmp_path), "--key", FPR]) == 0
    assert main(["verify", "--repo", str(tmp_path), "--key", FPR, "--image", "x:y"]) == 0
    assert seen[0]["cosign"] is None and seen[0]["image_id_of"] is None
    assert callable(seen[1]["cosign"]) and callable(seen[1]["image_id_of"])
    assert capsys.readouterr().out == "ok  key\nok  key\n"
