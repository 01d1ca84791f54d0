"""`pfbuild verify`: a consumer's check of a published release, link by link, with no workspace.

The chain, each link checked with what the links before it established:

  key          the tree's pfbuild.asc holds the pinned key; only that key is used from here on
  InRelease    each suite's InRelease is signed by the pinned key (builder.publish.treecheck)
  Packages     each Packages index matches its hash in the signed InRelease
  deb          each .deb of the release matches its Packages entry (sha256 and size)
  provenance   the DSSE envelope is signed by the pinned key and is a SLSA v1 provenance of the
               release asked for; every .deb subject has its Packages sha256, every InRelease
               subject the live InRelease's
  sbom         each SBOM's sha256 is a subject; each package it lists is in Packages and a
               subject, with the same sha256, and each .deb subject of the suite is in it
  image        the signed image statement names the image the provenance names; with --image,
               the local image's ID is that subject's digest
  cosign       with --image: cosign.pub and the image's cosign signature are subjects of the
               provenance (so the repository key vouches for them), and `cosign verify-blob`
               with that key accepts the signature over the local image's ID

The tree is a folder (a copy of `dist/apt` from anywhere) or a URL, whose files are downloaded
into a temporary folder as they are needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from debian import deb822

from builder.core import gpg
from builder.core.aptindex import release_hashes
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError
from builder.publish.attestations import (
    BUILD_TYPE,
    COSIGN_KEY_NAME,
    IMAGE_PREDICATE_TYPE,
    INDEX_NAME,
    PROVENANCE_NAME,
    SLSA_PREDICATE_TYPE,
    STATEMENT_TYPE,
    image_cosign_name,
    image_sbom_name,
    image_statement_name,
    inrelease_path,
    read_index,
    release_folder,
    target_sbom_name,
)
from builder.publish.cosign import Cosign, image_id_blob, verify_blob
from builder.publish.dsse import verify_envelope
from builder.publish.sbom import BomSubject, read_bom
from builder.publish.tree import ATTESTATIONS_DIR, KEY_FILE_NAME, MANIFEST_NAME
from builder.publish.treecheck import PACKAGES_NAMES, index_text, verified_release
from builder.publish.treefiles import TreeFiles

RELEASE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
T = TypeVar("T")


@dataclass(frozen=True)
class Link:
    """One link of the chain and whether it holds."""

    name: str
    ok: bool
    why: str = ""

    def line(self) -> str:
        """`ok  <link>` or `FAIL <link>: why`."""
        return f"ok  {self.name}" if self.ok else f"FAIL {self.name}: {self.why}"


# ---- the chain --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexEntry:
    """One package of a verified Packages index."""

    filename: str
    sha256: str
    size: int
    name: str
    version: str
    arch: str


@dataclass
class _State:
    links: list[Link] = field(default_factory=list)
    packages: dict[str, dict[str, IndexEntry]] = field(default_factory=dict)
    inreleases: dict[str, str] = field(default_factory=dict)
    claimed: dict[str, Any] = field(default_factory=dict)
    statement: dict[str, Any] | None = None
    # variant -> (tag, config digest) of each image whose SBOM link held.
    attested_images: dict[str, tuple[str, str]] = field(default_factory=dict)
    # variant -> the image SBOM whose link held.
    image_boms: dict[str, BomSubject] = field(default_factory=dict)

    @contextmanager
    def link(self, name: str) -> Iterator[None]:
        """Record the link as ok unless the block raises a PfbuildError (its reason)."""
        try:
            yield
        except PfbuildError as exc:
            why = f"{exc.what}: {exc.why}" if exc.why else exc.what
            self.links.append(Link(name, False, why))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # What the tree holds may be hostile: a malformed document fails its link, no crash.
            self.links.append(Link(name, False, f"malformed: {type(exc).__name__}: {exc}"))
        else:
            self.links.append(Link(name, True))

    def subjects(self, trusted: bool = True) -> dict[str, str]:
        statement = self.statement if trusted else self.claimed
        entries = statement.get("subject", []) if isinstance(statement, dict) else []
        return {
            str(s.get("name")): str(s.get("digest", {}).get("sha256", ""))
            for s in entries
            if isinstance(s, dict) and isinstance(s.get("digest"), dict)
        }


def _payload_unverified(data: bytes | None) -> dict[str, Any]:
    """The statement an envelope claims, before its signature is checked: names only."""
    try:
        envelope = json.loads(data or b"")
        statement = json.loads(base64.b64decode(envelope["payload"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return {}
    return statement if isinstance(statement, dict) else {}


def _require(condition: bool, what: str, why: str = "") -> None:
    if not condition:
        raise PfbuildError(what, why)


def _need(value: T | None, what: str) -> T:
    """`value`, or the link fails with `what`."""
    if value is None:
        raise PfbuildError(what)
    return value


def _key_link(state: _State, files: TreeFiles, fingerprint: str, scratch: Path) -> Path | None:
    """A keyring of the pinned key alone, taken from the tree's key file."""
    keyring = scratch / "pinned.gpg"
    with state.link("key"):
        armored = _need(files.get(KEY_FILE_NAME), f"the tree has no {KEY_FILE_NAME}")
        gpg.export_pinned_keys(armored, [fingerprint], keyring, f"the tree's {KEY_FILE_NAME}")
    return keyring if state.links[-1].ok else None


def _suite_links(
    state: _State, files: TreeFiles, keyring: Path, fingerprint: str, suite: str
) -> None:
    payload = b""
    with state.link(f"InRelease {suite}"):
        inrelease = _need(files.get(inrelease_path(suite)), f"suite {suite} has no InRelease")
        payload = verified_release(keyring, inrelease, fingerprint, suite)
        state.inreleases[suite] = sha256_file(inrelease)
    if suite not in state.inreleases:
        return
    with state.link(f"Packages {suite}"):
        entries: dict[str, IndexEntry] = {}
        checked = 0
        for name, (sha256, size) in sorted(release_hashes(payload).items()):
            if Path(name).name not in PACKAGES_NAMES:
                continue
            path = files.get(f"dists/{suite}/{name}")
            if path is None:
                continue  # apt fetches one of the compressions the InRelease lists
            if path.stat().st_size != size or sha256_file(path) != sha256:
                raise PfbuildError(f"dists/{suite}/{name} does not match the signed InRelease")
            checked += 1
            for para in deb822.Packages.iter_paragraphs(
                index_text(path).decode(), use_apt_pkg=False
            ):
                entry = IndexEntry(
                    para["Filename"], para["SHA256"], int(para["Size"]),
                    para["Package"], para["Version"], para["Architecture"],
                )  # fmt: skip
                entries[entry.filename] = entry
        _require(checked > 0, f"suite {suite} has no Packages index the InRelease lists")
        state.packages[suite] = entries


def _published(state: _State) -> dict[str, IndexEntry]:
    return {f: e for entries in state.packages.values() for f, e in entries.items()}


def _deb_links(state: _State, files: TreeFiles) -> None:
    debs = sorted(n for n in state.subjects(trusted=False) if n.endswith(".deb"))
    if not debs:
        state.links.append(Link("debs", False, "the provenance names no .deb"))
        return
    published = _published(state)
    for name in debs:
        with state.link(f"deb {name}"):
            entry = _need(published.get(name), "in no verified Packages index")
            path = _need(files.get(name), "the file is missing from the tree")
            _require(
                path.stat().st_size == entry.size and sha256_file(path) == entry.sha256,
                "its sha256 differs from its Packages entry",
            )


def _provenance_links(
    state: _State, envelope: bytes | None, keyring: Path, release: str, fpr: str
) -> None:
    with state.link("provenance signature"):
        where = f"{release_folder(release)}/{PROVENANCE_NAME}"
        payload = verify_envelope(_need(envelope, f"the tree has no {where}"), keyring, fpr, where)
        statement = json.loads(payload)
        _require(statement.get("_type") == STATEMENT_TYPE, "not an in-toto Statement v1")
        _require(statement.get("predicateType") == SLSA_PREDICATE_TYPE, "not SLSA provenance v1")
        build = statement.get("predicate", {}).get("buildDefinition", {})
        _require(build.get("buildType") == BUILD_TYPE, f"build type is not {BUILD_TYPE}")
        params = build.get("externalParameters", {})
        named = f"{params.get('recipe')}-{params.get('version')}"
        _require(named == release, f"it is the provenance of {named}, not of {release}")
        state.statement = statement
    with state.link("provenance subjects"):
        _require(state.statement is not None, "the provenance is not verified")
        subjects = state.subjects()
        published = _published(state)
        for name, digest in subjects.items():
            if name.endswith(".deb"):
                entry = _need(published.get(name), f"{name} is in no verified Packages index")
                _require(entry.sha256 == digest, f"{name}: Packages has another sha256")
            elif name.startswith("dists/") and name.endswith("/InRelease"):
                suite = name.split("/")[1]
                _require(suite in state.inreleases, f"suite {suite} is not verified")
                _require(
                    state.inreleases[suite] == digest,
                    f"{name} differs from the attested one (the suite was published again since)",
                )


def _subject_file(state: _State, files: TreeFiles, rel: str, *, named: bool = False) -> bytes:
    """The bytes of a file of the tree that the verified provenance names with its sha256.

    `named`: a mismatch says which file (for a link that checks more than one).
    """
    _require(state.statement is not None, "the provenance is not verified")
    subjects = state.subjects()
    _require(rel in subjects, f"{rel} is not a subject of the provenance")
    data = _need(files.read(rel), f"the tree has no {rel}")
    _require(
        hashlib.sha256(data).hexdigest() == subjects[rel],
        f"{Path(rel).name + ': ' if named else ''}its sha256 differs from the provenance subject",
    )
    return data


def _bom(state: _State, files: TreeFiles, rel: str) -> BomSubject:
    return read_bom(_subject_file(state, files, rel), rel)


def _target_sbom_link(state: _State, files: TreeFiles, folder: str, target: str) -> None:
    with state.link(f"sbom {target}"):
        bom = _bom(state, files, f"{folder}/{target_sbom_name(target)}")
        entries = _need(state.packages.get(target), f"suite {target} is not verified")
        by_package = {(e.name, e.version, e.arch): e for e in entries.values()}
        subjects = state.subjects()
        listed = set()
        for component in bom.components:
            entry = _need(
                by_package.get((component.name, component.version, component.arch)),
                f"{component.purl} is not in Packages of {target}",
            )
            _require(
                entry.sha256 == component.sha256, f"{component.purl}: Packages has another sha256"
            )
            _require(
                subjects.get(entry.filename) == component.sha256,
                f"{component.purl} is not a subject with that sha256",
            )
            listed.add(entry.filename)
        unlisted = sorted(n for n in subjects if n in entries and n not in listed)
        _require(not unlisted, f"{unlisted[0] if unlisted else ''} is a subject the SBOM lacks")


def _image_links(
    state: _State, files: TreeFiles, keyring: Path, folder: str, variant: str, fpr: str
) -> None:
    with state.link(f"sbom image-{variant}"):
        bom = _bom(state, files, f"{folder}/{image_sbom_name(variant)}")
        tag = f"{bom.name}:{bom.version}"
        _require(
            state.subjects().get(tag) == bom.sha256,
            f"it describes {tag} {bom.sha256[:16]}..., not an image the provenance names",
        )
        state.attested_images[variant] = (tag, bom.sha256)
        state.image_boms[variant] = bom
    with state.link(f"image signature {variant}"):
        _require(state.statement is not None, "the provenance is not verified")
        rel = f"{folder}/{image_statement_name(variant)}"
        subjects = state.subjects()
        data = _need(files.read(rel), f"the tree has no {rel}")
        _require(
            hashlib.sha256(data).hexdigest() == subjects.get(rel),
            "its sha256 differs from the provenance subject",
        )
        statement = json.loads(verify_envelope(data, keyring, fpr, rel))
        _require(statement.get("predicateType") == IMAGE_PREDICATE_TYPE, "not an SBOM statement")
        for entry in statement.get("subject", []):
            name, digest = entry.get("name"), entry.get("digest", {}).get("sha256")
            _require(subjects.get(name) == digest, f"{name} {digest} is not the attested image")


def _local_image_link(state: _State, tag: str, image_id_of: Callable[[str], str] | None) -> None:
    with state.link(f"image {tag}"):
        _require(state.statement is not None, "the provenance is not verified")
        local = _need(image_id_of, "no Docker Engine to ask")(tag).removeprefix("sha256:")
        images = image_subjects(state.subjects())
        _require(
            images.get(tag, local) == local and local in images.values(),
            f"its ID sha256:{local[:16]}... is not the image the provenance names "
            f"({', '.join(f'{n} {d[:16]}...' for n, d in sorted(images.items())) or 'none'})",
        )


def _cosign_link(
    state: _State,
    files: TreeFiles,
    folder: str,
    tag: str,
    image_id_of: Callable[[str], str] | None,
    cosign: Callable[[], Cosign] | None,
    scratch: Path,
) -> None:
    with state.link(f"cosign {tag}"):
        _require(state.statement is not None, "the provenance is not verified")
        local = _need(image_id_of, "no Docker Engine to ask")(tag).removeprefix("sha256:")
        # The variant by the tag the provenance names, else by the image's ID.
        by_tag = [v for v, (name, _) in state.attested_images.items() if name == tag]
        by_id = [v for v, (_, digest) in state.attested_images.items() if digest == local]
        variant = _need(next(iter(by_tag or by_id), None), "it is no image whose SBOM link holds")
        _require(
            f"{folder}/{COSIGN_KEY_NAME}" in state.subjects(),
            f"the provenance names no {COSIGN_KEY_NAME}: the images were not signed with cosign",
        )
        public = _subject_file(state, files, f"{folder}/{COSIGN_KEY_NAME}", named=True)
        signature = _subject_file(
            state, files, f"{folder}/{image_cosign_name(variant)}", named=True
        )
        runner = _need(cosign, "no cosign to run")()
        blob = image_id_blob(local)
        try:
            verify_blob(runner, public, signature, blob, scratch)
        except PfbuildError as exc:
            raise PfbuildError(
                f"{exc.what} of {image_cosign_name(variant)} over the ID sha256:{local[:16]}...",
                exc.why,
            ) from None


def image_subjects(subjects: Mapping[str, str]) -> dict[str, str]:
    """The subjects that are images (tag -> config digest), not files of the tree."""
    files = ("pool/", "dists/", f"{ATTESTATIONS_DIR}/")
    return {name: digest for name, digest in subjects.items() if not name.startswith(files)}


def choose_release(files: TreeFiles, release: str | None) -> str:
    """The release to verify: the one asked for, else the one the tree attested last."""
    if release is None:
        index = read_index(files.read(f"{ATTESTATIONS_DIR}/{INDEX_NAME}"))
        release = index.get("latest")
        if not release:
            raise PfbuildError(
                f"the tree has no {ATTESTATIONS_DIR}/{INDEX_NAME} naming a release",
                fix="pass --release RECIPE-VERSION, e.g. postfix-3.11.6",
            )
    if not RELEASE_RE.fullmatch(release):
        raise PfbuildError(
            f"{release!r} is not a release name", fix="pass e.g. --release postfix-3.11.6"
        )
    return release


def _suites(files: TreeFiles, claimed: Mapping[str, Any]) -> list[str]:
    suites: set[str] = set()
    # The tree's own list of suites is a hint of what to check, like the subjects' names.
    with suppress(ValueError, AttributeError, TypeError):
        suites.update(json.loads(files.read(MANIFEST_NAME) or b"{}").get("suites", {}))
    for entry in claimed.get("subject", []) if isinstance(claimed.get("subject"), list) else []:
        name = str(entry.get("name", "")) if isinstance(entry, dict) else ""
        match = re.fullmatch(r"dists/([a-z0-9.-]+)/InRelease", name)
        if match:
            suites.add(match.group(1))
    return sorted(s for s in suites if re.fullmatch(r"[a-z0-9.-]+", s))


def _external_parameters(statement: Mapping[str, Any]) -> Mapping[str, Any]:
    step: Any = statement
    for key in ("predicate", "buildDefinition", "externalParameters"):
        step = step.get(key) if isinstance(step, Mapping) else None
    return step if isinstance(step, Mapping) else {}


def _names(value: Any) -> list[str]:
    """Target or variant names from a statement: plain names only."""
    items = value if isinstance(value, list) else []
    return [str(v) for v in items if re.fullmatch(r"[a-z0-9][a-z0-9.-]*", str(v))]


def verify_release(
    location: str,
    fingerprint: str,
    *,
    release: str | None = None,
    images: Sequence[str] = (),
    image_id_of: Callable[[str], str] | None = None,
    cosign: Callable[[], Cosign] | None = None,
    boms: dict[str, BomSubject] | None = None,
    cache: Path | None = None,
) -> tuple[str, list[Link]]:
    """Check every link from the pinned key to the release's packages, SBOMs and images.

    `image_id_of` gives a local image's ID, `cosign` the cosign to verify its signature with;
    both are asked only for `images`. `boms`, when given, receives the image SBOMs whose links
    held, by variant. `cache` is where a remote tree's files go (and files already downloaded
    there, by `fetch_tree`, are not fetched again); they are checked all the same.
    """
    fpr = fingerprint.upper()
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", fpr):
        raise PfbuildError(
            f"--key {fingerprint!r} is not a full fingerprint", fix="pass its 40 hex digits"
        )
    with tempfile.TemporaryDirectory(prefix="pfbuild-verify-") as tmp:
        scratch = Path(tmp)
        files = TreeFiles(location, cache or scratch / "tree")
        name = choose_release(files, release)
        folder = release_folder(name)
        envelope = files.read(f"{folder}/{PROVENANCE_NAME}")
        state = _State(claimed=_payload_unverified(envelope))
        keyring = _key_link(state, files, fpr, scratch)
        if keyring is None:
            return name, state.links
        for suite in _suites(files, state.claimed):
            _suite_links(state, files, keyring, fpr, suite)
        _deb_links(state, files)
        _provenance_links(state, envelope, keyring, name, fpr)
        params = _external_parameters(state.statement or state.claimed)
        for target in _names(params.get("targets")):
            _target_sbom_link(state, files, folder, target)
        for variant in _names(params.get("variants")):
            _image_links(state, files, keyring, folder, variant, fpr)
        for tag in images:
            _local_image_link(state, tag, image_id_of)
            _cosign_link(state, files, folder, tag, image_id_of, cosign, scratch)
        if boms is not None:
            boms.update(state.image_boms)
        return name, state.links
