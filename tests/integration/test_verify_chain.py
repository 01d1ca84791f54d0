"""`pfbuild verify` on a small tree made here with real dpkg-deb and gpg, and on tampered copies.

The tree is published the way pfbuild does (a generation behind the `dist/apt` link) and attested
by the functions the release's attest action calls; no aptly, sbuild or docker is involved.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from securesystemslib.dsse import Envelope
from securesystemslib.signer import GPGSigner  # type: ignore[attr-defined]  # not re-exported

import docker
from builder.bootstrap.buildenv import ensure_base_image
from builder.cli import main
from builder.core.context import Context, prepare_workspace
from builder.core.engine import docker_client
from builder.model.distro import RESOLUTE, TRIXIE
from builder.publish import serve
from builder.publish.attestations import CosignSignatures, publish_attestations
from builder.publish.cosign import Cosign, ensure_cosign_key, image_id_blob, sign_blob
from builder.publish.history import History
from builder.publish.signing import SigningKey
from builder.publish.tree import refresh_tree
from builder.publish.verify import verify_release
from tests.fixtures.attest import (
    DEMO_DEBS,
    IMAGE_ID,
    IMAGE_NAME,
    IMAGE_VERSION,
    RELEASE,
    SUITE,
    DemoRelease,
    attest_demo,
    deb_version,
    demo_image,
    export_key,
    make_key,
    publish_demo,
    sign_release,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(ctx: Context, tmp_path: Path) -> DemoRelease:
    return publish_demo(ctx, make_key(tmp_path / "key"), tmp_path)


def verify(
    repo: Path | str, key: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[str], str]:
    code = main(["verify", "--repo", str(repo), "--key", key, *extra])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def copy_of(demo: DemoRelease, where: Path) -> Path:
    """The live tree copied elsewhere, as a consumer would hold it."""
    dest = where / "copied"
    shutil.copytree(demo.tree, dest, symlinks=True)
    return dest


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("ok  ")]


def test_a_genuine_tree_passes_every_link_without_a_workspace(
    demo: DemoRelease,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, lines, err = verify(copy_of(demo, tmp_path), demo.key.fingerprint, capsys)
    assert code == 0, [*lines, err]
    pool = "pool/main/p/pfdemo"
    assert lines == [
        "ok  key",
        f"ok  InRelease {SUITE}",
        f"ok  Packages {SUITE}",
        *sorted(f"ok  deb {pool}/{d.name}_{deb_version()}_amd64.deb" for d in DEMO_DEBS),
        "ok  provenance signature",
        "ok  provenance subjects",
        f"ok  sbom {SUITE}",
        "ok  sbom image-debian",
        "ok  image signature debian",
    ]
    assert not (tmp_path / "pfbuild-work").exists()


def test_the_published_folder_holds_valid_sboms_and_a_provenance_others_can_check(
    demo: DemoRelease,
) -> None:
    folder = demo.folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "image-debian.dsse.json", "pfbuild.asc", "provenance.dsse.json",
        "sbom-image-debian.cdx.json", f"sbom-{SUITE}.cdx.json",
    ]  # fmt: skip
    index = json.loads((folder.parent / "index.json").read_text())
    assert index == {"latest": RELEASE, "releases": [RELEASE]}
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    target = (folder / f"sbom-{SUITE}.cdx.json").read_text()
    assert validator.validate_str(target) is None
    components = {c["name"]: c for c in json.loads(target)["components"]}
    assert sorted(components) == sorted(d.name for d in DEMO_DEBS)
    for deb in demo.debs:
        name = deb.name.split("_")[0]
        assert (
            components[name]["hashes"][0]["content"] == hashlib.sha256(deb.read_bytes()).hexdigest()
        )
        assert components[name]["purl"] == (
            f"pkg:deb/debian/{name}@{deb_version().replace('+', '%2B')}?arch=amd64"
        )
    assert components["pfdemo"]["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    assert components["pfdemo-extra"]["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    assert "licenses" not in components["libpfdemo1"]
    image = (folder / "sbom-image-debian.cdx.json").read_text()
    assert validator.validate_str(image) is None
    assert sorted(c["name"] for c in json.loads(image)["components"]) == [
        "base-files", "libc6", "pfdemo",
    ]  # fmt: skip

    _uri, public = GPGSigner.import_(demo.key.fingerprint.lower(), str(demo.key.gnupghome))
    for name in ("provenance.dsse.json", "image-debian.dsse.json"):
        envelope = Envelope.from_dict(json.loads((folder / name).read_text()))
        assert envelope.verify([public], 1)
    provenance = json.loads(
        base64.b64decode(json.loads((folder / "provenance.dsse.json").read_text())["payload"])
    )
    subjects = {s["name"]: s["digest"]["sha256"] for s in provenance["subject"]}
    tree = demo.tree
    for deb in demo.debs:
        assert (
            subjects[f"pool/main/p/pfdemo/{deb.name}"]
            == hashlib.sha256(deb.read_bytes()).hexdigest()
        )
    inrelease = tree / "dists" / SUITE / "InRelease"
    assert (
        subjects[f"dists/{SUITE}/InRelease"] == hashlib.sha256(inrelease.read_bytes()).hexdigest()
    )
    assert subjects[f"{IMAGE_NAME}:{IMAGE_VERSION}"] == IMAGE_ID.removeprefix("sha256:")
    for name in ("sbom-trixie.cdx.json", "sbom-image-debian.cdx.json", "image-debian.dsse.json"):
        data = (folder / name).read_bytes()
        assert subjects[f"attestations/{RELEASE}/{name}"] == hashlib.sha256(data).hexdigest()
    assert len(subjects) == len(DEMO_DEBS) + 5


def test_a_url_is_fetched_into_a_temporary_folder(
    demo: DemoRelease, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve.running_server(demo.tree, port=0) as server:
        code, lines, err = verify(serve.server_url(server), demo.key.fingerprint, capsys)
    assert code == 0, [*lines, err]
    assert "ok  provenance subjects" in lines and not failures(lines)
    code, lines, _err = verify(f"file://{demo.tree}", demo.key.fingerprint, capsys)
    assert code == 0 and not failures(lines)


def test_the_local_image_must_be_the_attested_one(demo: DemoRelease) -> None:
    tag = f"{IMAGE_NAME}:{IMAGE_VERSION}"
    _name, links = verify_release(
        str(demo.tree), demo.key.fingerprint, images=[tag], image_id_of=lambda _t: IMAGE_ID
    )
    assert links[-2].line() == f"ok  image {tag}"
    # This release was attested without cosign: with --image, that link cannot hold.
    assert links[-1].line() == (
        f"FAIL cosign {tag}: the provenance names no cosign.pub: "
        "the images were not signed with cosign"
    )
    _name, links = verify_release(
        str(demo.tree), demo.key.fingerprint, images=[tag],
        image_id_of=lambda _t: "sha256:" + "cd" * 32,
    )  # fmt: skip
    assert links[-2].line().startswith(f"FAIL image {tag}: its ID sha256:cdcdcdcdcdcdcdcd...")


# ---- tampering: each names the broken link ------------------------------------------------------


def _first_deb(tree: Path) -> Path:
    return sorted((tree / "pool").rglob("*.deb"))[0]


def change_deb(tree: Path) -> None:
    deb = _first_deb(tree)
    data = deb.read_bytes()
    deb.unlink()  # pool files are hard links: never write through one
    deb.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


def change_packages(tree: Path) -> None:
    index = tree / "dists" / SUITE / "main" / "binary-amd64"
    for name in ("Packages", "Packages.gz"):
        (index / name).unlink()
    text = b"Package: pfdemo-evil\nVersion: 1\nArchitecture: amd64\nFilename: x.deb\n"
    (index / "Packages").write_bytes(text)
    (index / "Packages.gz").write_bytes(gzip.compress(text))


def change_provenance(tree: Path) -> None:
    path = tree / "attestations" / RELEASE / "provenance.dsse.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.unlink()
    path.write_text(json.dumps(envelope))


def change_sbom(tree: Path) -> None:
    path = tree / "attestations" / RELEASE / f"sbom-{SUITE}.cdx.json"
    document = json.loads(path.read_text())
    document["components"] = document["components"][1:]
    path.unlink()
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("tamper", "link"),
    [
        (change_deb, "FAIL deb pool/main/p/pfdemo/libpfdemo1_"),
        (change_packages, f"FAIL Packages {SUITE}: dists/{SUITE}/main/binary-amd64/Packages"),
        (change_provenance, "FAIL provenance signature: no good signature"),
        (change_sbom, f"FAIL sbom {SUITE}: its sha256 differs from the provenance subject"),
    ],
    ids=["deb", "packages", "provenance", "sbom"],
)
def test_a_tampered_copy_fails_at_the_link_it_broke(
    demo: DemoRelease,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: object,
    link: str,
) -> None:
    tree = copy_of(demo, tmp_path)
    assert callable(tamper)
    tamper(tree)
    code, lines, err = verify(tree, demo.key.fingerprint, capsys)
    assert code == 3, lines
    assert failures(lines) and failures(lines)[0].startswith(link), lines
    assert err.strip().splitlines()[-1].startswith("pfbuild: error: ")


def test_a_deb_change_breaks_only_its_own_link(
    demo: DemoRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = copy_of(demo, tmp_path)
    change_deb(tree)
    _code, lines, _err = verify(tree, demo.key.fingerprint, capsys)
    assert failures(lines) == [
        f"FAIL deb pool/main/p/pfdemo/{_first_deb(tree).name}: "
        "its sha256 differs from its Packages entry"
    ]


def test_a_key_that_is_not_the_pinned_one_fails_at_the_key(
    demo: DemoRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_key(tmp_path / "other")
    code, lines, _err = verify(copy_of(demo, tmp_path), other.fingerprint, capsys)
    assert code == 3
    assert lines == [
        f"FAIL key: the tree's pfbuild.asc does not hold the pinned key {other.fingerprint}: "
        f"{tmp_path / 'copied' / 'pfbuild.asc'} has 1 key(s), none of them the one pfbuild trusts"
    ]


def test_a_tree_signed_by_another_key_it_also_carries_fails_at_the_signatures(
    demo: DemoRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker re-signs everything with their key and adds ours to the key file."""
    tree = copy_of(demo, tmp_path)
    attacker = make_key(tmp_path / "attacker")
    suite = tree / "dists" / SUITE
    (suite / "InRelease").unlink()
    sign_release(attacker, suite / "Release", suite / "InRelease")
    export_key(attacker, tmp_path / "attacker.asc")
    keys = (tree / "pfbuild.asc").read_text() + (tmp_path / "attacker.asc").read_text()
    (tree / "pfbuild.asc").unlink()
    (tree / "pfbuild.asc").write_text(keys)
    code, lines, _err = verify(tree, demo.key.fingerprint, capsys)
    assert code == 3
    assert lines[0] == "ok  key"
    assert failures(lines)[0] == (
        f"FAIL InRelease {SUITE}: bad or unknown OpenPGP signature on InRelease: "
        "signed by a key that is not in the pinned keyring"
    )


# ---- the tree carries attestations from generation to generation ------------------------------


def test_attestations_survive_a_new_publish_and_a_second_release(
    demo: DemoRelease, ctx: Context
) -> None:
    first = demo.tree
    # A publish makes the next generation from aptly's public tree: here, a copy of the live one.
    public = ctx.aptly_root / "public"
    shutil.copytree(first, public, ignore=shutil.ignore_patterns("attestations"))
    live, changed = refresh_tree(ctx, demo.key, "file:///x/", {SUITE: "snap-2"}, History())
    assert changed and live != first
    assert (live / "attestations" / RELEASE / "provenance.dsse.json").read_bytes() == (
        first / "attestations" / RELEASE / "provenance.dsse.json"
    ).read_bytes()
    files = attest_demo(ctx, demo.key, list(demo.debs), images=False)
    publish_attestations(ctx, "pfdemo-1.0.3", files)
    index = json.loads((ctx.apt_tree / "attestations" / "index.json").read_text())
    assert index == {"latest": "pfdemo-1.0.3", "releases": [RELEASE, "pfdemo-1.0.3"]}
    assert (ctx.apt_tree / "attestations" / RELEASE / "provenance.dsse.json").is_file()
    assert not (ctx.apt_tree / "attestations" / "pfdemo-1.0.3" / "image-debian.dsse.json").exists()


def test_signing_key_type_is_the_repository_one(demo: DemoRelease) -> None:
    assert isinstance(demo.key, SigningKey)


# ---- cosign: the image's signature, anchored by the provenance ----------------------------------

TAG = f"{IMAGE_NAME}:{IMAGE_VERSION}"


@pytest.fixture
def real_images(shared_ctx: Context) -> Iterator[tuple[docker.DockerClient, str, str]]:
    """The engine and two real image IDs; the demo's tag is removed afterwards."""
    client = docker_client(shared_ctx)
    trixie = str(client.images.get(ensure_base_image(shared_ctx, TRIXIE)).id)
    resolute = str(client.images.get(ensure_base_image(shared_ctx, RESOLUTE)).id)
    yield client, trixie, resolute
    client.images.remove(TAG, noprune=True)


def cosign_demo(
    ctx: Context,
    tmp_path: Path,
    tool: Cosign,
    client: docker.DockerClient,
    image_id: str,
    *,
    signer: Path | None = None,
) -> DemoRelease:
    """The demo release with a real image under its tag, signed with cosign as attest does.

    With `signer`, the signature is made by the key pair of another workspace, while the
    provenance names this workspace's cosign.pub.
    """
    client.images.get(image_id).tag(*TAG.split(":"))
    key = ensure_cosign_key(ctx, tool)
    signing = (
        ensure_cosign_key(Context(workspace=prepare_workspace(signer)), tool) if signer else key
    )
    signature = sign_blob(tool, signing, image_id_blob(image_id), tmp_path)
    cosign = CosignSignatures(key.public.read_bytes(), {"debian": signature})
    return publish_demo(
        ctx, make_key(tmp_path / "key"), tmp_path, image=demo_image(image_id), cosign=cosign
    )


def test_the_image_cosign_signed_verifies_from_the_cli(
    ctx: Context,
    tmp_path: Path,
    cosign_tool: Cosign,
    real_images: tuple[docker.DockerClient, str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, trixie, _resolute = real_images
    demo = cosign_demo(ctx, tmp_path, cosign_tool, client, trixie)
    names = sorted(p.name for p in demo.folder.iterdir())
    assert "cosign.pub" in names and "image-debian.cosign.sig" in names
    code, lines, err = verify(copy_of(demo, tmp_path), demo.key.fingerprint, capsys, "--image", TAG)
    assert code == 0, [*lines, err]
    assert lines[-3:] == ["ok  image signature debian", f"ok  image {TAG}", f"ok  cosign {TAG}"]


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()  # published files may be hard links: never write through one
    path.write_bytes(data)


def other_cosign_key(tree: Path, tmp_path: Path, tool: Cosign) -> None:
    other = ensure_cosign_key(Context(workspace=prepare_workspace(tmp_path / "other")), tool)
    replace_file(tree / "attestations" / RELEASE / "cosign.pub", other.public.read_bytes())


def flipped_signature(tree: Path, _tmp_path: Path, _tool: Cosign) -> None:
    path = tree / "attestations" / RELEASE / "image-debian.cosign.sig"
    raw = bytearray(base64.b64decode(path.read_bytes()))
    raw[-1] ^= 1
    replace_file(path, base64.b64encode(bytes(raw)))


@pytest.mark.parametrize(
    ("tamper", "link"),
    [
        (
            other_cosign_key,
            f"FAIL cosign {TAG}: cosign.pub: its sha256 differs from the provenance",
        ),
        (flipped_signature, f"FAIL cosign {TAG}: image-debian.cosign.sig: its sha256 differs"),
    ],
    ids=["key", "signature"],
)
def test_a_tampered_cosign_key_or_signature_fails_the_cosign_link(
    ctx: Context,
    tmp_path: Path,
    cosign_tool: Cosign,
    real_images: tuple[docker.DockerClient, str, str],
    capsys: pytest.CaptureFixture[str],
    tamper: object,
    link: str,
) -> None:
    client, trixie, _resolute = real_images
    demo = cosign_demo(ctx, tmp_path, cosign_tool, client, trixie)
    tree = copy_of(demo, tmp_path)
    assert callable(tamper)
    tamper(tree, tmp_path, cosign_tool)
    code, lines, err = verify(tree, demo.key.fingerprint, capsys, "--image", TAG)
    assert code == 3
    assert failures(lines) == [lines[-1]] and lines[-1].startswith(link), lines
    assert err.strip().splitlines()[-1].startswith("pfbuild: error: ")
    assert f"first: cosign {TAG}" in err


def test_another_image_under_the_tag_fails_cosign_too(
    ctx: Context,
    tmp_path: Path,
    cosign_tool: Cosign,
    real_images: tuple[docker.DockerClient, str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, trixie, resolute = real_images
    demo = cosign_demo(ctx, tmp_path, cosign_tool, client, trixie)
    client.images.get(resolute).tag(*TAG.split(":"))
    code, lines, _err = verify(demo.tree, demo.key.fingerprint, capsys, "--image", TAG)
    assert code == 3
    local = resolute.removeprefix("sha256:")
    assert failures(lines)[0].startswith(f"FAIL image {TAG}: its ID sha256:{local[:16]}...")
    assert failures(lines)[1].startswith(
        f"FAIL cosign {TAG}: cosign verify-blob refuses the signature of image-debian.cosign.sig "
        f"over the ID sha256:{local[:16]}...: "
    )


def test_a_signature_by_another_cosign_key_fails_though_the_provenance_names_it(
    ctx: Context,
    tmp_path: Path,
    cosign_tool: Cosign,
    real_images: tuple[docker.DockerClient, str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every file is a subject with its sha256: only cosign itself can tell the key is wrong."""
    client, trixie, _resolute = real_images
    demo = cosign_demo(ctx, tmp_path, cosign_tool, client, trixie, signer=tmp_path / "signer")
    code, lines, _err = verify(demo.tree, demo.key.fingerprint, capsys, "--image", TAG)
    assert code == 3
    assert failures(lines) == [lines[-1]]
    assert lines[-1].startswith(
        f"FAIL cosign {TAG}: cosign verify-blob refuses the signature of image-debian.cosign.sig"
    )
