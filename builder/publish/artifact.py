"""Build results that travel between machines: self-describing folders, verified on arrival.

`pfbuild build` and `pfbuild check` leave `artifacts/<recipe>_<version>_<target>/` in the
workspace: the .debs, .changes, .buildinfo, build log and hardening report of one build, with
`artifact.json` naming each file's SHA-256 and where it came from. CI uploads that folder from the
build runner; `pfbuild publish --from DIR` on another machine verifies every folder it finds
(format, recipe definition, every file's hash, no stray file, the check verdict) before any of it
enters that workspace's builds, so a build made elsewhere is published exactly as a local one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import __version__
from builder.core.atomic import atomic_dir, link_or_copy
from builder.core.checkout import git_revision
from builder.core.context import Context
from builder.core.digest import data_digest, sha256_file
from builder.core.errors import PfbuildError
from builder.model.distro import TARGETS
from builder.model.recipe import load_recipe

log = logging.getLogger("pfbuild")

FORMAT = "pfbuild-artifact/1"
MANIFEST = "artifact.json"
REPORT_FILES = ("hardening.json", "hardening.txt")
# Where a build's log sits in the build directory, and under which name it travels.
BUILD_LOG = "build.log"


def artifact_name(recipe: str, version: str, target: str) -> str:
    """The folder name of one build's artifact."""
    return f"{recipe}_{version}_{target}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _file_entry(path: Path) -> dict[str, Any]:
    return {"name": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}


def has_result(build_dir: Path) -> bool:
    """Whether `build_dir` holds a finished pfbuild build (one `pfbuild build` recorded)."""
    return (build_dir / "result.json").is_file()


# ---- export -----------------------------------------------------------------------------------


def export_build(ctx: Context, recipe: str, version: str, target: str) -> Path:
    """Write (or refresh) the artifact folder of one build; return it."""
    build_dir = ctx.build_dir(recipe, version, target)
    result = _read_json(build_dir / "result.json")
    if not isinstance(result, dict) or not isinstance(result.get("files"), list):
        raise PfbuildError(
            f"no finished {target} build of {recipe} {version} in {build_dir}",
            "an artifact describes a build result, and there is none",
            f"run `pfbuild build {recipe} {version} --target {target}` first",
        )
    sources = {str(name): build_dir / str(name) for name in result["files"]}
    if (build_dir / BUILD_LOG).is_file():
        sources[BUILD_LOG] = build_dir / BUILD_LOG
    report_dir = ctx.report_dir(recipe, version, target)
    report = _read_json(report_dir / "hardening.json")
    check = None
    if isinstance(report, dict) and all((report_dir / n).is_file() for n in REPORT_FILES):
        sources.update({name: report_dir / name for name in REPORT_FILES})
        check = {"verdict": report.get("verdict"), "report": "hardening.json"}
    dest = ctx.artifacts_dir / artifact_name(recipe, version, target)
    with atomic_dir(dest) as tmp:
        for name, src in sorted(sources.items()):
            link_or_copy(src, tmp / name)
        manifest = {
            "format": FORMAT,
            "recipe": recipe,
            "version": version,
            "target": target,
            "arch": TARGETS[target].arch,
            "recipe_digest": data_digest(load_recipe(recipe)),
            "build_key": result.get("key", ""),
            "pfbuild": __version__,
            "revision": git_revision(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "check": check,
            "files": [_file_entry(tmp / name) for name in sorted(sources)],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("%s: artifact of %s %s in %s", target, recipe, version, dest)
    return dest


# ---- import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """One verified artifact folder."""

    path: Path
    recipe: str
    version: str
    target: str
    build_key: str
    files: tuple[str, ...]
    checked: bool


def find_artifacts(roots: Iterable[Path]) -> list[Path]:
    """Artifact folders in `roots`: each root itself, or folders up to two levels below it.

    A root is what a CI download step leaves: one artifact, or many side by side (merged), or
    one folder per downloaded artifact.
    """
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise PfbuildError(
                f"{root} is not a folder",
                "--from takes folders that `pfbuild build` left (its artifacts/ folder)",
                "pass the folder the artifacts were downloaded to",
            )
        for pattern in (MANIFEST, f"*/{MANIFEST}", f"*/*/{MANIFEST}"):
            found.extend(p.parent for p in sorted(root.glob(pattern)))
    if not found:
        raise PfbuildError(
            f"no pfbuild artifact in {', '.join(str(r) for r in roots)}",
            f"an artifact is a folder with an {MANIFEST}",
            "pass the artifacts/ folder of the workspace that ran `pfbuild build`",
        )
    return list(dict.fromkeys(p.resolve() for p in found))


def _field(data: Mapping[str, Any], name: str, folder: Path) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise PfbuildError(
            f"{folder / MANIFEST} has no valid {name!r}",
            "the artifact's manifest is damaged or was not written by pfbuild",
            "upload the artifact folder again from the build that made it",
        )
    return value


def _safe_name(name: object, folder: Path) -> str:
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise PfbuildError(
            f"{folder / MANIFEST} lists an unsafe file name {name!r}",
            "artifact files are plain names inside the folder",
            "do not use this artifact",
        )
    return name


def verify_artifact(folder: Path) -> Artifact:
    """Check one artifact folder against its manifest; raise on the first problem."""
    data = _read_json(folder / MANIFEST)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PfbuildError(
            f"{folder / MANIFEST} is not a {FORMAT} manifest",
            "the folder was not written by this pfbuild, or the file is damaged",
            "rebuild with the same pfbuild checkout as the publisher",
        )
    recipe_name = _field(data, "recipe", folder)
    version = _field(data, "version", folder)
    target = _field(data, "target", folder)
    recipe = load_recipe(recipe_name)
    recipe.validate_version(version)
    if target not in TARGETS:
        raise PfbuildError(
            f"{folder}: unknown target {target!r}",
            f"pfbuild knows {', '.join(TARGETS)}",
            "publish it with the pfbuild that built it",
        )
    if data.get("recipe_digest") != data_digest(recipe):
        raise PfbuildError(
            f"{folder}: {recipe_name} {version} was built from another definition of the recipe",
            "the build runner's recipe differs from this checkout's",
            "build and publish from the same pfbuild commit",
        )
    entries = data.get("files")
    if not isinstance(entries, list) or not entries:
        raise PfbuildError(f"{folder / MANIFEST} lists no files", fix="do not use this artifact")
    listed: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise PfbuildError(f"{folder / MANIFEST} has a malformed file entry {entry!r}")
        listed[_safe_name(entry.get("name"), folder)] = entry
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    strays = sorted(present - set(listed))
    if strays:
        raise PfbuildError(
            f"{folder} holds file(s) its manifest does not list: {', '.join(strays[:5])}",
            "a stray file must not reach the repository",
            "remove them, or take the artifact as the build uploaded it",
        )
    for name, entry in sorted(listed.items()):
        path = folder / name
        if not path.is_file() or path.is_symlink():
            raise PfbuildError(
                f"{folder} lacks {name}, which its manifest lists",
                "the artifact is incomplete",
                "download the whole artifact folder again",
            )
        if sha256_file(path) != entry.get("sha256") or path.stat().st_size != entry.get("size"):
            raise PfbuildError(
                f"{path} does not match the SHA-256 in {MANIFEST}",
                "the file changed after the build runner described it",
                "download the artifact again, or rebuild that target",
            )
    if not any(name.endswith(".deb") for name in listed):
        raise PfbuildError(f"{folder} holds no .deb", fix="upload the build's whole folder")
    checked = _verify_check(data.get("check"), folder, target)
    return Artifact(
        folder, recipe_name, version, target, str(data.get("build_key", "")),
        tuple(sorted(listed)), checked,
    )  # fmt: skip


def _verify_check(check: object, folder: Path, target: str) -> bool:
    """The recorded verdict must be the report's own; True when the build passed its check."""
    if check is None:
        return False
    report = _read_json(folder / "hardening.json") if isinstance(check, dict) else None
    if not isinstance(check, dict) or not isinstance(report, dict):
        raise PfbuildError(
            f"{folder / MANIFEST} records a check without a readable hardening.json",
            "the verdict cannot be traced to its report",
            "run `pfbuild check` on the build runner again and upload the folder it refreshes",
        )
    if report.get("verdict") != check.get("verdict") or report.get("target") != target:
        raise PfbuildError(
            f"{folder}: the manifest's check verdict {check.get('verdict')!r} is not its "
            f"report's {report.get('verdict')!r} for {report.get('target')!r}",
            "the artifact's parts do not belong together",
            "take the artifact as the build runner uploaded it",
        )
    return report.get("verdict") == "pass"


def verify_artifacts(folders: Sequence[Path]) -> list[Artifact]:
    """Verify every folder; refuse two artifacts of the same build."""
    artifacts = [verify_artifact(f) for f in folders]
    seen: dict[tuple[str, str, str], Path] = {}
    for artifact in artifacts:
        ident = (artifact.recipe, artifact.version, artifact.target)
        if ident in seen:
            raise PfbuildError(
                f"two artifacts of {' '.join(ident)}: {seen[ident]} and {artifact.path}",
                "pfbuild cannot tell which one to publish",
                "pass only one of them",
            )
        seen[ident] = artifact.path
    return artifacts


def install_artifact(ctx: Context, artifact: Artifact) -> None:
    """Make a verified artifact this workspace's build (and report) of its recipe and target."""
    report_names = [n for n in artifact.files if n in REPORT_FILES]
    build_names = [n for n in artifact.files if n not in REPORT_FILES]
    with atomic_dir(ctx.build_dir(artifact.recipe, artifact.version, artifact.target)) as tmp:
        for name in build_names:
            link_or_copy(artifact.path / name, tmp / name)
        result = {
            "key": f"artifact:{artifact.build_key}",
            "files": [n for n in build_names if n != BUILD_LOG],
            "target": artifact.target,
            "imported_from": str(artifact.path),
        }
        (tmp / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    with atomic_dir(ctx.report_dir(artifact.recipe, artifact.version, artifact.target)) as tmp:
        for name in report_names:
            link_or_copy(artifact.path / name, tmp / name)
    state = "checked" if artifact.checked else "NOT checked"
    log.info(
        "%s: imported %s %s from %s (%s)",
        artifact.target, artifact.recipe, artifact.version, artifact.path, state,
    )  # fmt: skip


def import_artifacts(ctx: Context, roots: Sequence[Path]) -> list[Artifact]:
    """Verify every artifact under `roots`, then install them all (none when one is bad)."""
    artifacts = verify_artifacts(find_artifacts(roots))
    for artifact in artifacts:
        install_artifact(ctx, artifact)
    return artifacts
