"""Software bills of materials as CycloneDX 1.6 JSON (cyclonedx-python-lib), written and read.

One SBOM per target lists the .debs we publish for a release; one per image lists every package
installed in it. Each package is a component named by its purl (`pkg:deb/<vendor>/<name>@<version>
?arch=<arch>`), with its source package as properties and, for our .debs, its sha256 and the
license its machine-readable debian/copyright declares. What pfbuild writes is validated against
the CycloneDX schema before it is written; what it reads, before anything in it is believed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

from builder import __version__
from builder.core.errors import PfbuildError

with warnings.catch_warnings():
    # The factory moved to cyclonedx.contrib in 11.x; the old place warns on import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from cyclonedx.contrib.license.factories import LicenseFactory

SCHEMA_VERSION = SchemaVersion.V1_6
SOURCE_PACKAGE = "pfbuild:source-package"
SOURCE_VERSION = "pfbuild:source-version"
SUBJECT_PROPERTY = "pfbuild:subject"


@dataclass(frozen=True)
class PackageRecord:
    """One Debian binary package: what it is, where it comes from, what it is made of."""

    name: str
    version: str
    arch: str
    source: str
    source_version: str
    sha256: str = ""
    license: str = ""


@dataclass(frozen=True)
class BomComponent:
    """A component as read back from an SBOM."""

    name: str
    version: str
    arch: str
    purl: str
    sha256: str


@dataclass(frozen=True)
class BomSubject:
    """What an SBOM describes (its metadata component) and the components it lists."""

    name: str
    version: str
    sha256: str
    components: tuple[BomComponent, ...]


def package_purl(vendor: str, record: PackageRecord) -> str:
    """`pkg:deb/debian/postfix@3.11.6-1%2Bpf1~trixie?arch=amd64` (ubuntu for Ubuntu targets)."""
    purl = PackageURL(
        type="deb",
        namespace=vendor,
        name=record.name,
        version=record.version,
        qualifiers={"arch": record.arch},
    )
    return str(purl.to_string())


def spdx_expression(synopsis: str) -> str:
    """A debian/copyright license synopsis with its operators as SPDX spells them."""
    words = synopsis.replace(",", " ").split()
    return " ".join({"or": "OR", "and": "AND", "with": "WITH"}.get(w.lower(), w) for w in words)


def _component(vendor: str, record: PackageRecord) -> Component:
    purl = package_purl(vendor, record)
    return Component(
        name=record.name,
        version=record.version,
        type=ComponentType.LIBRARY if record.name.startswith("lib") else ComponentType.APPLICATION,
        purl=PackageURL.from_string(purl),
        bom_ref=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=record.sha256)]
        if record.sha256
        else [],
        licenses=[LicenseFactory().make_from_string(spdx_expression(record.license))]
        if record.license
        else [],
        properties=[
            Property(name=SOURCE_PACKAGE, value=record.source),
            Property(name=SOURCE_VERSION, value=record.source_version),
        ],
    )


def _serial(name: str, version: str, records: Iterable[PackageRecord]) -> uuid.UUID:
    # The same content gives the same serial number: an unchanged SBOM stays byte-identical.
    digest = hashlib.sha256(json.dumps([name, version, sorted(map(repr, records))]).encode())
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://pfbuild.invalid/sbom/{digest.hexdigest()}")


def bom_json(
    *,
    name: str,
    version: str,
    kind: ComponentType,
    vendor: str,
    records: Iterable[PackageRecord],
    created: datetime,
    subject_sha256: str = "",
    properties: Mapping[str, str] | None = None,
) -> bytes:
    """A CycloneDX 1.6 JSON SBOM of `records` describing `name` `version`, schema-checked."""
    ordered = sorted(records, key=lambda r: (r.name, r.arch, r.version))
    subject = Component(
        name=name,
        version=version,
        type=kind,
        bom_ref=f"{name}@{version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=subject_sha256)]
        if subject_sha256
        else [],
        properties=[Property(name=k, value=v) for k, v in sorted((properties or {}).items())],
    )
    components = [_component(vendor, r) for r in ordered]
    bom = Bom(
        serial_number=_serial(name, version, ordered),
        metadata=BomMetaData(
            component=subject,
            timestamp=created.astimezone(UTC).replace(microsecond=0),
            properties=[Property(name="pfbuild:version", value=__version__)],
        ),
        components=components,
    )
    # The subject is made of every package listed: the graph is complete, one level deep.
    bom.register_dependency(subject, components)
    text = str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"
    problem = _schema_problem(text)
    if problem is not None:  # pragma: no cover - a bug in how we fill the model
        raise PfbuildError(f"the SBOM of {name} {version} is not valid CycloneDX", str(problem))
    return text.encode()


def _schema_problem(text: str) -> object | None:
    # Imported on use: the validator pulls in jsonschema's format helpers, over a second of
    # start-up that every pfbuild process would pay otherwise.
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SCHEMA_VERSION).validate_str(text)


def _sha256(hashes: Any) -> str:
    for entry in hashes if isinstance(hashes, list) else []:
        if isinstance(entry, dict) and entry.get("alg") == "SHA-256":
            return str(entry.get("content", ""))
    return ""


def read_bom(data: bytes, what: str) -> BomSubject:
    """An SBOM pfbuild wrote, checked against the CycloneDX schema; its subject and packages."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise PfbuildError(f"{what} is not UTF-8 text") from None
    problem = _schema_problem(text)
    if problem is not None:
        raise PfbuildError(f"{what} is not valid CycloneDX {SCHEMA_VERSION.to_version()}")
    document = json.loads(text)
    subject = document.get("metadata", {}).get("component", {})
    components = []
    for entry in document.get("components", []):
        purl = str(entry.get("purl", ""))
        try:
            parsed = PackageURL.from_string(purl)
        except ValueError:
            raise PfbuildError(
                f"{what}: component {entry.get('name')!r} has no valid purl"
            ) from None
        if parsed.name != entry.get("name") or parsed.version != entry.get("version"):
            raise PfbuildError(
                f"{what}: {purl} does not name {entry.get('name')} {entry.get('version')}"
            )
        arch = (
            str((parsed.qualifiers or {}).get("arch", ""))
            if isinstance(parsed.qualifiers, dict)
            else ""
        )
        components.append(
            BomComponent(parsed.name, str(parsed.version), arch, purl, _sha256(entry.get("hashes")))
        )
    return BomSubject(
        str(subject.get("name", "")),
        str(subject.get("version", "")),
        _sha256(subject.get("hashes")),
        tuple(components),
    )
