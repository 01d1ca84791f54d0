"""Build results that travel between machines: self-describing folders, verified on arrival.

`pfbuild build` and `pfbuild check` leave `artifacts/<recipe>_<version>_<target>/` in the
workspace: the .debs, .changes, .buildinfo, build log and hardening report of one build, with
`artifact.json` naming each file's SHA-256 and where it came from. CI uploads that folder from the
build runner; `pfbuild publish --from DIR` on another machine takes in every folder it finds.

Nothing in the folder is believed because the folder says so: artifact.json is unsigned and lives
beside the files it describes, so whoever can change one file can re-hash the rest. On arrival
every file is copied into a temporary place and checked there: the manifest against its schema
and the recipe, every package read whole by dpkg-deb and proven to be one of the recipe's binary
packages at the version and architecture pfbuild gives it, the .changes and .buildinfo against
the files and each other, and the hardening check run again. That check's verdict decides; the
artifact's own report is kept beside it, and a different verdict is an error. Only when every
artifact passed does any of them replace a build of the workspace.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from builder import __version__
from builder.core.atomic import atomic_dir, link_or_copy
from builder.core.checkout import git_revision
from builder.core.context import Context
from builder.core.digest import data_digest, sha256_file
from builder.core.errors import PfbuildError
from builder.core.schema import NON_EMPTY, SHA256, validate
from builder.model.distro import TARGETS
from builder.model.loader import load_recipe
from builder.publish.inputs import PACKAGE_SUFFIXES

log = logging.getLogger("pfbuild")

FORMAT = "pfbuild-artifact/1"
MANIFEST = "artifact.json"
REPORT_FILES = ("hardening.json", "hardening.txt")
# Debian's autopkgtest verdict on the build runner, when the check ran it. It travels as a claim:
# the publisher keeps it beside the build (prefixed) and does not run the tests again.
QA_FILES = ("autopkgtest.json", "autopkgtest.log")
# Where a build's log sits in the build directory, and under which name it travels.
BUILD_LOG = "build.log"
# What a build leaves (sbuild's result files and its log) and the check adds: nothing else travels.
BUILD_SUFFIXES = (*PACKAGE_SUFFIXES, ".changes", ".buildinfo")
# The artifact's own report keeps its names with this prefix, beside the report made on import.
CLAIMED_PREFIX = "artifact-"
CHECK_FIX = "do not use this artifact: build and check that target again on the build runner"

_FILE_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "sha256", "size"],
    "properties": {"name": NON_EMPTY, "sha256": SHA256, "size": {"type": "integer", "minimum": 0}},
}
_CHECK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["verdict", "report"],
    "properties": {"verdict": {"enum": ["pass", "fail"]}, "report": {"const": "hardening.json"}},
}
ARTIFACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "format", "recipe", "version", "target", "arch", "recipe_digest", "build_key", "check",
        "files",
    ],
    "properties": {
        "format": {"const": FORMAT},
        "recipe": NON_EMPTY,
        "version": NON_EMPTY,
        "target": NON_EMPTY,
        "arch": NON_EMPTY,
        "recipe_digest": NON_EMPTY,
        "build_key": {"type": "string"},
        "pfbuild": {"type": "string"},
        "revision": {"type": "string"},
        "created": {"type": "string"},
        "check": {"oneOf": [{"type": "null"}, _CHECK]},
        "files": {"type": "array", "minItems": 1, "items": _FILE_ENTRY},
    },
}  # fmt: skip


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
        sources.update({n: report_dir / n for n in QA_FILES if (report_dir / n).is_file()})
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


# ---- import: the manifest --------------------------------------------------------------------


class FileEntry(NamedTuple):
    """One file an artifact lists: its name, SHA-256 and size."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Artifact:
    """One artifact folder whose manifest, names and hashes agree (its contents not yet proven)."""

    path: Path
    recipe: str
    version: str
    target: str
    build_key: str
    files: tuple[FileEntry, ...]
    # The verdict the artifact's report gives, or None: kept to compare, never believed.
    claimed: str | None

    @property
    def checked(self) -> bool:
        """Whether the artifact claims a passed check (believed only once it passes here too)."""
        return self.claimed == "pass"


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


def _refuse_unsafe_names(data: Mapping[str, Any], folder: Path) -> None:
    """The most dangerous malformation first: a file name that leaves the folder."""
    entries = data.get("files")
    for entry in entries if isinstance(entries, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise PfbuildError(
                f"{folder / MANIFEST} lists an unsafe file name {name!r}",
                "artifact files are plain names inside the folder",
                "do not use this artifact",
            )


def _is_build_file(name: str) -> bool:
    return name in (BUILD_LOG, *REPORT_FILES, *QA_FILES) or name.endswith(BUILD_SUFFIXES)


def read_artifact_manifest(folder: Path) -> dict[str, Any]:
    """An artifact's manifest, read and checked against its schema."""
    data = _read_json(folder / MANIFEST)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PfbuildError(
            f"{folder / MANIFEST} is not a {FORMAT} manifest",
            "the folder was not written by this pfbuild, or the file is damaged",
            "rebuild with the same pfbuild checkout as the publisher",
        )
    _refuse_unsafe_names(data, folder)
    validate(data, ARTIFACT_SCHEMA, str(folder / MANIFEST), "upload the artifact folder again")
    return data


def check_file(path: Path, entry: FileEntry) -> None:
    if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
        raise PfbuildError(
            f"{path} does not match the SHA-256 in {MANIFEST}",
            "the file changed after the build runner described it",
            "download the artifact again, or rebuild that target",
        )


def verify_artifact(folder: Path) -> Artifact:
    """Check one artifact folder against its manifest; raise on the first problem."""
    data = read_artifact_manifest(folder)
    recipe_name, version, target = data["recipe"], data["version"], data["target"]
    recipe = load_recipe(recipe_name)
    recipe.validate_version(version)
    if target not in TARGETS or target not in recipe.binary_packages:
        raise PfbuildError(
            f"{folder}: unknown target {target!r} for {recipe_name}",
            f"it builds for {', '.join(recipe.binary_packages)}",
            "publish it with the pfbuild that built it",
        )
    if data["arch"] != TARGETS[target].arch:
        raise PfbuildError(
            f"{folder}: built for {data['arch']!r}, not {target}'s {TARGETS[target].arch}",
            fix="do not use this artifact",
        )
    if data["recipe_digest"] != data_digest(recipe):
        raise PfbuildError(
            f"{folder}: {recipe_name} {version} was built from another definition of the recipe",
            "the build runner's recipe differs from this checkout's",
            "build and publish from the same pfbuild commit",
        )
    listed = {e["name"]: FileEntry(e["name"], e["sha256"], e["size"]) for e in data["files"]}
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
        if not _is_build_file(name):
            raise PfbuildError(
                f"{folder / MANIFEST} lists {name}, which no build leaves",
                f"an artifact carries packages, .changes, .buildinfo, {BUILD_LOG} and its report",
                "do not use this artifact",
            )
        if not path.is_file() or path.is_symlink():
            raise PfbuildError(
                f"{folder} lacks {name}, which its manifest lists",
                "the artifact is incomplete",
                "download the whole artifact folder again",
            )
        check_file(path, entry)
    if not any(name.endswith(".deb") for name in listed):
        raise PfbuildError(f"{folder} holds no .deb", fix="upload the build's whole folder")
    claimed = _verify_check(data["check"], folder, target)
    return Artifact(
        folder, recipe_name, version, target, data["build_key"],
        tuple(listed[name] for name in sorted(listed)), claimed,
    )  # fmt: skip


def _verify_check(check: Mapping[str, Any] | None, folder: Path, target: str) -> str | None:
    """The recorded verdict must be its report's own; return it (None when there is no check)."""
    if check is None:
        return None
    report = _read_json(folder / "hardening.json")
    if not isinstance(report, dict):
        raise PfbuildError(
            f"{folder / MANIFEST} records a check without a readable hardening.json",
            "the verdict cannot be traced to its report",
            "run `pfbuild check` on the build runner again and upload the folder it refreshes",
        )
    if report.get("verdict") != check["verdict"] or report.get("target") != target:
        raise PfbuildError(
            f"{folder}: the manifest's check verdict {check['verdict']!r} is not its "
            f"report's {report.get('verdict')!r} for {report.get('target')!r}",
            "the artifact's parts do not belong together",
            "take the artifact as the build runner uploaded it",
        )
    return str(check["verdict"])


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
