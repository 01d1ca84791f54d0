"""The release's attestations, checked from outside: SBOMs against the packages and images
themselves, the DSSE signatures with securesystemslib, and `pfbuild verify` over HTTP.

Uses the session's one release (tests/e2e/conftest.py); makes no build of its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from securesystemslib.dsse import Envelope
from securesystemslib.signer import GPGSigner  # type: ignore[attr-defined]  # not re-exported

from builder.publish import serve
from tests.e2e.conftest import TIMEOUT, VERSION
from tests.fixtures.cli import run_pfbuild

pytestmark = pytest.mark.e2e

TARGETS = ("trixie", "resolute")
VARIANTS = {"debian": "trixie", "ubuntu": "resolute"}
FORMAT = "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n"


def manifest(workspace: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (workspace / "manifests" / f"postfix-{VERSION}.json").read_text()
    )
    return data


def built_debs(data: dict[str, Any], target: str) -> set[tuple[str, str, str]]:
    """(name, version, sha256) of every .deb the release built for `target`."""
    found = set()
    for name, action in data["actions"].items():
        if name.startswith("build ") and name.endswith(f" {target}"):
            for entry in action["outputs"]["files"]:
                path = Path(entry["path"])
                if path.suffix == ".deb":
                    package, version, _arch = path.stem.split("_")
                    found.add((package, version, entry["sha256"]))
    return found


def installed_in(tag: str) -> set[tuple[str, str, str]]:
    """What dpkg in the image says is installed, asked with the docker CLI."""
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "dpkg-query", tag,
         "-W", "-f", FORMAT],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.strip()]
    return {(name, version, arch) for status, name, version, arch in rows if status[1] == "i"}


def components(sbom: Path) -> list[dict[str, Any]]:
    text = sbom.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None, sbom
    found: list[dict[str, Any]] = json.loads(text)["components"]
    return found


def test_the_release_is_attested_and_a_consumer_can_verify_it(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, tmp_path: Path
) -> None:
    assert release.returncode == 0, release.stderr[-3000:]
    data = manifest(shared_workspace)
    attest = data["actions"]["attest"]["outputs"]
    folder = Path(attest["folder"])
    fingerprint = data["actions"]["publish"]["outputs"]["key"]
    listed = {Path(e["path"]).name for e in data["artifacts"]}
    assert "provenance.dsse.json" in listed
    assert {f"sbom-{t}.cdx.json" for t in TARGETS} <= listed

    for target in TARGETS:
        sbom = components(folder / f"sbom-{target}.cdx.json")
        got = {(c["name"], c["version"], c["hashes"][0]["content"]) for c in sbom}
        assert got == built_debs(data, target)
        vendor = "debian" if target == "trixie" else "ubuntu"
        assert all(c["purl"].startswith(f"pkg:deb/{vendor}/") for c in sbom)

    for variant in VARIANTS:
        tag = f"pfbuild-postfix:{VERSION}-{variant}"
        sbom = components(folder / f"sbom-image-{variant}.cdx.json")
        got = {(c["name"], c["version"], c["purl"].rsplit("arch=", 1)[1]) for c in sbom}
        assert got == installed_in(tag)

    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--import", str(folder / "pfbuild.asc")],
        capture_output=True, check=True,
    )  # fmt: skip
    _uri, public = GPGSigner.import_(fingerprint.lower(), str(home))
    for name in ("provenance.dsse.json", *(f"image-{v}.dsse.json" for v in VARIANTS)):
        envelope = Envelope.from_dict(json.loads((folder / name).read_text()))
        assert envelope.verify([public], 1), name
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)

    tag = f"pfbuild-postfix:{VERSION}-debian"
    with serve.running_server(shared_workspace / "dist" / "apt", port=0) as server:
        proc = run_pfbuild(
            tmp_path / "no-workspace", "verify", "--repo", serve.server_url(server),
            "--key", fingerprint, "--image", tag, timeout=TIMEOUT,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(line.startswith("ok  ") for line in lines), lines
    assert f"ok  image {tag}" in lines and "ok  provenance subjects" in lines
    assert f"ok  cosign {tag}" in lines
    assert not (tmp_path / "no-workspace").exists()


def cosign_verify_blob(
    folder: Path, variant: str, image_id: Path
) -> subprocess.CompletedProcess[str]:
    """The README's check by hand: cosign verify-blob (in the tool image: Debian 12 has none)."""
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none",
         "-v", f"{folder.resolve()}:/attestations:ro", "-v", f"{image_id.parent}:/id:ro",
         "pfbuild-cosign:latest", "cosign", "verify-blob",
         "--key", "/attestations/cosign.pub",
         "--signature", f"/attestations/image-{variant}.cosign.sig",
         "--insecure-ignore-tlog=true", f"/id/{image_id.name}"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_each_image_is_cosign_signed_with_the_key_the_provenance_names(
    release: subprocess.CompletedProcess[str], shared_workspace: Path, tmp_path: Path
) -> None:
    assert release.returncode == 0, release.stderr[-3000:]
    data = manifest(shared_workspace)
    folder = Path(data["actions"]["attest"]["outputs"]["folder"])
    envelope = json.loads((folder / "provenance.dsse.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    attested = f"attestations/postfix-{VERSION}"
    for name in ("cosign.pub", *(f"image-{v}.cosign.sig" for v in VARIANTS)):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert subjects[f"{attested}/{name}"] == digest, name
    assert data["attestations"]["cosign_key"]["path"] == str(folder / "cosign.pub")
    for variant in VARIANTS:
        # What a consumer writes: `docker image inspect --format '{{.Id}}' TAG > image-id`.
        image_id = tmp_path / variant / "image-id"
        image_id.parent.mkdir()
        inspect = ["docker", "image", "inspect", "--format", "{{.Id}}"]
        tag = f"pfbuild-postfix:{VERSION}-{variant}"
        found = subprocess.run([*inspect, tag], capture_output=True, check=True, timeout=60)
        image_id.write_bytes(found.stdout)
        proc = cosign_verify_blob(folder, variant, image_id)
        assert proc.returncode == 0 and "Verified OK" in proc.stderr + proc.stdout, proc.stderr
    # The debian image's signature does not fit the ubuntu image.
    proc = cosign_verify_blob(folder, "debian", tmp_path / "ubuntu" / "image-id")
    assert proc.returncode != 0, proc.stdout + proc.stderr
