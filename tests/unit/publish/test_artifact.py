"""Artifact folders: what `pfbuild build`/`check` leave for another machine, and their checks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from builder.cli import main
from builder.core.context import Context, prepare_workspace
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TRIXIE
from builder.publish.artifact import MANIFEST, export_build, find_artifacts, verify_artifact
from builder.publish.handoff import import_artifacts
from builder.publish.inputs import collect_debs
from tests.fixtures.artifacts import RECIPE, VERSION, exported

# Every artifact here holds real .debs: dpkg-deb makes them and reads them back.
pytestmark = pytest.mark.integration


def manifest(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / MANIFEST).read_text())
    return data


def rewrite(folder: Path, **changes: object) -> None:
    (folder / MANIFEST).write_text(json.dumps({**manifest(folder), **changes}))


def test_export_describes_every_file_with_its_hash(ctx: Context) -> None:
    folder = exported(ctx)
    data = manifest(folder)
    assert folder == ctx.artifacts_dir / f"{RECIPE}_{VERSION}_trixie"
    assert (data["recipe"], data["version"], data["target"]) == (RECIPE, VERSION, "trixie")
    assert data["check"] == {"verdict": "pass", "report": "hardening.json"}
    files = data["files"]
    assert isinstance(files, list)
    names = [e["name"] for e in files]
    assert names == sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
    assert {"build.log", "hardening.json", "hardening.txt"} <= set(names)
    assert sum(n.endswith(".deb") for n in names) == 1  # libmimalloc-secure
    artifact = verify_artifact(folder)
    assert artifact.checked and artifact.build_key == "0123abcd"


def test_an_unchecked_build_exports_without_a_verdict(ctx: Context) -> None:
    folder = exported(ctx, verdict=None)
    assert manifest(folder)["check"] is None
    assert not verify_artifact(folder).checked


@pytest.mark.unit
def test_export_without_a_build_is_a_clear_error(ctx: Context) -> None:
    with pytest.raises(
        PfbuildError, match=re.escape("no finished trixie build of mimalloc-secure 2.0.9")
    ):
        export_build(ctx, RECIPE, VERSION, "trixie")


def test_a_changed_file_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    deb = next(folder.glob("*.deb"))
    data = bytearray(deb.read_bytes())
    data[-1] ^= 1
    deb.unlink()  # a hard link to the build: replace it, do not write through it
    deb.write_bytes(bytes(data))
    with pytest.raises(PfbuildError, match=re.escape(f"{deb.name} does not match the SHA-256")):
        verify_artifact(folder)


def test_a_stray_file_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    (folder / "extra_1.0_amd64.deb").write_text("not listed")
    with pytest.raises(PfbuildError, match=re.escape("does not list: extra_1.0_amd64.deb")):
        verify_artifact(folder)


def test_a_missing_file_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    (folder / "build.log").unlink()
    with pytest.raises(PfbuildError, match=re.escape("lacks build.log")):
        verify_artifact(folder)


def test_an_unsafe_file_name_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    files = manifest(folder)["files"]
    assert isinstance(files, list)
    rewrite(folder, files=[*files, {"name": "../../etc/passwd", "sha256": "0", "size": 1}])
    with pytest.raises(PfbuildError, match=re.escape("unsafe file name")):
        verify_artifact(folder)


def test_another_recipe_definition_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    rewrite(folder, recipe_digest="0" * 20)
    with pytest.raises(PfbuildError, match=re.escape("another definition of the recipe")):
        verify_artifact(folder)


def test_a_verdict_its_report_does_not_give_is_refused(ctx: Context) -> None:
    folder = exported(ctx, verdict="fail")
    rewrite(folder, check={"verdict": "pass", "report": "hardening.json"})
    with pytest.raises(
        PfbuildError, match=re.escape("check verdict 'pass' is not its report's 'fail'")
    ):
        verify_artifact(folder)


def test_an_unknown_format_is_refused(ctx: Context) -> None:
    folder = exported(ctx)
    rewrite(folder, format="pfbuild-artifact/99")
    with pytest.raises(PfbuildError, match=re.escape("is not a pfbuild-artifact/1 manifest")):
        verify_artifact(folder)


def test_find_artifacts_looks_two_levels_down(ctx: Context, tmp_path: Path) -> None:
    folder = exported(ctx)
    nested = tmp_path / "download" / "build-mimalloc-trixie"
    shutil.copytree(folder.parent, nested)
    assert find_artifacts([folder]) == [folder.resolve()]
    assert find_artifacts([tmp_path / "download"]) == [(nested / folder.name).resolve()]
    with pytest.raises(PfbuildError, match=re.escape("no pfbuild artifact in")):
        find_artifacts([ctx.workspace / "builds"])


def test_import_makes_the_builds_this_workspaces_own(ctx: Context, tmp_path: Path) -> None:
    for dist in (TRIXIE, RESOLUTE):
        exported(ctx, dist)
    other = Context(workspace=prepare_workspace(tmp_path / "publisher"))
    artifacts = import_artifacts(other, [ctx.artifacts_dir])
    assert sorted(a.target for a in artifacts) == ["resolute", "trixie"]
    for dist in (TRIXIE, RESOLUTE):
        debs = collect_debs(other, dist, RECIPE, VERSION)
        assert len(debs) == 1  # libmimalloc-secure
        result = json.loads(
            (other.build_dir(RECIPE, VERSION, dist.name) / "result.json").read_text()
        )
        assert result["key"] == "artifact:0123abcd"


def test_one_bad_artifact_imports_nothing(ctx: Context, tmp_path: Path) -> None:
    exported(ctx, TRIXIE)
    bad = exported(ctx, RESOLUTE)
    (bad / "build.log").unlink()
    other = Context(workspace=prepare_workspace(tmp_path / "publisher"))
    with pytest.raises(PfbuildError, match=re.escape("lacks build.log")):
        import_artifacts(other, [ctx.artifacts_dir])
    assert not (other.workspace / "builds").exists()


def test_two_artifacts_of_one_build_are_refused(ctx: Context, tmp_path: Path) -> None:
    folder = exported(ctx)
    copy = tmp_path / "again" / folder.name
    shutil.copytree(folder, copy)
    other = Context(workspace=prepare_workspace(tmp_path / "publisher"))
    with pytest.raises(
        PfbuildError, match=re.escape("two artifacts of mimalloc-secure 2.0.9 trixie")
    ):
        import_artifacts(other, [folder.parent, copy.parent])


@pytest.mark.unit
def test_publish_from_takes_no_recipe(
    ctx: Context, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ws = str(ctx.workspace)
    assert main(["--workspace", ws, "publish", "--from", str(tmp_path), RECIPE, VERSION]) == 3
    assert "--from takes no RECIPE VERSION" in capsys.readouterr().err
    assert main(["--workspace", ws, "publish", "--from", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("pfbuild: error: no pfbuild artifact in") and "\n" not in err


def test_publish_from_with_another_target_writes_nothing(ctx: Context, tmp_path: Path) -> None:
    exported(ctx, TRIXIE)
    other = prepare_workspace(tmp_path / "publisher")
    args = ["--workspace", str(other), "publish", "--from", str(ctx.artifacts_dir)]
    assert main([*args, "--target", "resolute"]) == 3
    assert not (other / "builds").exists()
