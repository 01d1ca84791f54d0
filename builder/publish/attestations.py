"""The attestations folder of the published tree: names, the index, and putting a release's in.

`dist/apt/attestations/<recipe>-<version>/` holds a release's signed provenance, its SBOMs, the
signed image statements and the repository's public key. `attestations/index.json` names the
releases it holds and the one attested last; it is a hint for `pfbuild verify` which folder to
read, never trusted for anything else (every file it leads to is checked against a signature).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cyclonedx.model.component import ComponentType
from debian import deb822

from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError
from builder.core.lock import workspace_lock
from builder.publish.aptly import COMPONENT
from builder.publish.debfacts import package_records
from builder.publish.dsse import envelope_json, sign_envelope
from builder.publish.repo import DEFAULT_LOCK_TIMEOUT
from builder.publish.sbom import PackageRecord, bom_json
from builder.publish.signing import SigningKey, export_public_key
from builder.publish.tree import ATTESTATIONS_DIR, extend_tree, live_generation

log = logging.getLogger("pfbuild")

INDEX_NAME = "index.json"
PROVENANCE_NAME = "provenance.dsse.json"
KEY_NAME = "pfbuild.asc"
# The public half of the key that signs the images with cosign; a subject of the provenance.
COSIGN_KEY_NAME = "cosign.pub"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# Ours: what a pfbuild release is and how its parameters read (README, "Verify what you install").
BUILD_TYPE = "https://pfbuild.invalid/release/v1"
# The predicate type cosign gives a CycloneDX attestation: the image statement carries its SBOM.
IMAGE_PREDICATE_TYPE = "https://cyclonedx.org/bom"


def release_name(recipe: str, version: str) -> str:
    """`postfix-3.11.6`: the folder of one release's attestations."""
    return f"{recipe}-{version}"


def release_folder(release: str) -> str:
    """The release's folder, relative to the tree."""
    return f"{ATTESTATIONS_DIR}/{release}"


def target_sbom_name(target: str) -> str:
    """The SBOM of one target's published packages."""
    return f"sbom-{target}.cdx.json"


def image_sbom_name(variant: str) -> str:
    """The SBOM of one image variant's installed packages."""
    return f"sbom-image-{variant}.cdx.json"


def image_statement_name(variant: str) -> str:
    """The signed in-toto statement about one image (subject: its config digest)."""
    return f"image-{variant}.dsse.json"


def image_cosign_name(variant: str) -> str:
    """cosign's signature (base64) of one image's ID, made with the key in cosign.pub."""
    return f"image-{variant}.cosign.sig"


def inrelease_path(suite: str) -> str:
    """A suite's InRelease, relative to the tree."""
    return f"dists/{suite}/InRelease"


# ---- what the live tree publishes ---------------------------------------------------------------


def packages_index(tree: Path, suite: str, arch: str) -> list[deb822.Packages]:
    """The Packages paragraphs of one suite and architecture in a (trusted, local) tree."""
    base = tree / "dists" / suite / COMPONENT / f"binary-{arch}"
    if (base / "Packages").is_file():
        text = (base / "Packages").read_text()
    elif (base / "Packages.gz").is_file():
        text = gzip.decompress((base / "Packages.gz").read_bytes()).decode()
    else:
        raise PfbuildError(f"suite {suite} is not published in {tree}", fix="run pfbuild publish")
    return list(deb822.Packages.iter_paragraphs(text, use_apt_pkg=False))


def pool_paths(tree: Path, suite: str, arch: str, debs: Sequence[Path]) -> dict[Path, str]:
    """Each built .deb -> its pool path in the tree; refused unless the pool file is the same."""
    by_name = {Path(p["Filename"]).name: p for p in packages_index(tree, suite, arch)}
    found: dict[Path, str] = {}
    for deb in debs:
        entry = by_name.get(deb.name)
        if entry is None:
            raise PfbuildError(
                f"{deb.name} is not published in suite {suite}",
                "an attestation names only what clients can install",
                "run `pfbuild publish` for this release first",
            )
        digest = sha256_file(deb)
        if entry["SHA256"] != digest or sha256_file(tree / entry["Filename"]) != digest:
            raise PfbuildError(
                f"the published {deb.name} differs from the build's",
                f"suite {suite} has sha256 {entry['SHA256'][:16]}..., the build {digest[:16]}...",
                "publish the build again, or bump the revision",
            )
        found[deb] = str(entry["Filename"])
    return found


# ---- making a release's attestations --------------------------------------------------------


@dataclass(frozen=True)
class TargetPackages:
    """One target's built .debs, as the release published them."""

    suite: str
    vendor: str
    arch: str
    debs: tuple[Path, ...]


@dataclass(frozen=True)
class ImageFacts:
    """One image the release built: its tag, ID and what dpkg says is installed in it."""

    variant: str
    name: str
    version: str
    image_id: str
    vendor: str
    records: tuple[PackageRecord, ...]

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def digest(self) -> str:
        """The config digest: the image ID without its `sha256:`."""
        return self.image_id.removeprefix("sha256:")


@dataclass(frozen=True)
class CosignSignatures:
    """cosign's public key and, per image variant, its signature of the image's ID."""

    public_key: bytes
    signatures: Mapping[str, bytes]


def subject(name: str, sha256: str) -> dict[str, Any]:
    """An in-toto resource descriptor naming one artifact by its sha256."""
    return {"name": name, "digest": {"sha256": sha256}}


def in_toto_statement(
    subjects: Sequence[Mapping[str, Any]], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": sorted(subjects, key=lambda s: str(s["name"])),
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """The payload a statement is signed as."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def public_key_bytes(key: SigningKey) -> bytes:
    """The armored public key of the repository key."""
    with tempfile.TemporaryDirectory(prefix="pfbuild-key-") as tmp:
        path = Path(tmp) / KEY_NAME
        export_public_key(key, path)
        return path.read_bytes()


def make_attestations(
    tree: Path,
    key: SigningKey,
    *,
    recipe: str,
    version: str,
    targets: Sequence[TargetPackages],
    images: Sequence[ImageFacts],
    predicate: Mapping[str, Any],
    created: datetime,
    cosign: CosignSignatures | None = None,
) -> dict[str, bytes]:
    """Every file of a release's attestation folder, by name: SBOMs, signed statements, keys.

    The provenance names as subjects every published .deb (by pool path), each suite's
    InRelease, each image (tag and config digest) and every other file of the folder but the
    repository key: with `cosign`, cosign.pub and each image's cosign signature too, so a
    consumer believes cosign.pub because the repository key signed its sha256.
    """
    folder = release_folder(release_name(recipe, version))
    files: dict[str, bytes] = {}
    subjects: list[dict[str, Any]] = []
    for target in targets:
        pool = pool_paths(tree, target.suite, target.arch, target.debs)
        subjects += [subject(pool[deb], sha256_file(deb)) for deb in target.debs]
        inrelease = inrelease_path(target.suite)
        subjects.append(subject(inrelease, sha256_file(tree / inrelease)))
        files[target_sbom_name(target.suite)] = bom_json(
            name=recipe, version=version, kind=ComponentType.APPLICATION, vendor=target.vendor,
            records=package_records(target.debs), created=created,
            properties={"pfbuild:suite": target.suite},
        )  # fmt: skip
    for image in images:
        sbom = bom_json(
            name=image.name, version=image.version, kind=ComponentType.CONTAINER,
            vendor=image.vendor, records=image.records, created=created,
            subject_sha256=image.digest, properties={"pfbuild:variant": image.variant},
        )  # fmt: skip
        files[image_sbom_name(image.variant)] = sbom
        about = in_toto_statement(
            [subject(image.tag, image.digest)], IMAGE_PREDICATE_TYPE, json.loads(sbom)
        )
        files[image_statement_name(image.variant)] = envelope_json(
            sign_envelope(key, statement_bytes(about))
        )
        subjects.append(subject(image.tag, image.digest))
        if cosign is not None:
            if image.variant not in cosign.signatures:
                raise PfbuildError(f"the {image.variant} image has no cosign signature")
            files[image_cosign_name(image.variant)] = cosign.signatures[image.variant]
    if cosign is not None and images:
        files[COSIGN_KEY_NAME] = cosign.public_key
    for name, data in sorted(files.items()):
        subjects.append(subject(f"{folder}/{name}", hashlib.sha256(data).hexdigest()))
    provenance = in_toto_statement(_unique(subjects), SLSA_PREDICATE_TYPE, predicate)
    files[PROVENANCE_NAME] = envelope_json(sign_envelope(key, statement_bytes(provenance)))
    files[KEY_NAME] = public_key_bytes(key)
    return files


def _unique(subjects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    # A pool file two suites share is one subject.
    seen: dict[str, dict[str, Any]] = {}
    for entry in subjects:
        if entry["name"] in seen and seen[entry["name"]] != entry:
            raise PfbuildError(f"two artifacts named {entry['name']} with different content")
        seen[entry["name"]] = entry
    return list(seen.values())


# ---- the index and publishing -----------------------------------------------------------------


def read_index(data: bytes | None) -> dict[str, Any]:
    """The attestations index (empty when there is none or it is unreadable)."""
    try:
        index = json.loads(data) if data else {}
    except ValueError:
        return {"releases": []}
    releases = index.get("releases") if isinstance(index, dict) else None
    if not isinstance(releases, list) or not all(isinstance(r, str) for r in releases):
        return {"releases": []}
    latest = index.get("latest")
    return {"releases": releases, **({"latest": latest} if isinstance(latest, str) else {})}


def index_with(previous: Mapping[str, Any], release: str) -> bytes:
    """The index with `release` added and named the latest."""
    releases = sorted({*previous.get("releases", []), release})
    return (json.dumps({"latest": release, "releases": releases}, indent=2) + "\n").encode()


def publish_attestations(
    ctx: Context,
    release: str,
    files: Mapping[str, bytes],
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> Path:
    """Put a release's attestation files into a new generation of the tree; return its folder.

    The folder replaces an earlier one of the same release whole; other releases' folders are
    carried over. The publish lock is held: no publisher flips the tree meanwhile.
    """
    fix = "wait for it to finish, or raise --lock-timeout"
    folder = release_folder(release)
    with workspace_lock(ctx.publish_lock, "publish", timeout=lock_timeout, fix=fix):
        live = live_generation(ctx)
        index_path = live / ATTESTATIONS_DIR / INDEX_NAME if live else None
        previous = read_index(
            index_path.read_bytes() if index_path is not None and index_path.is_file() else None
        )
        added = {f"{folder}/{name}": data for name, data in files.items()}
        added[f"{ATTESTATIONS_DIR}/{INDEX_NAME}"] = index_with(previous, release)
        extend_tree(ctx, added, replacing=[folder])
    log.info("attestations of %s published in %s", release, ctx.apt_tree / folder)
    return ctx.apt_tree / folder
