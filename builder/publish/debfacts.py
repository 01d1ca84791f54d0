"""What a .deb says about itself: control fields, and the license its debian/copyright declares.

The license is read from /usr/share/doc/<package>/copyright inside the package, and only when
that file is in the machine-readable format (DEP-5): its `License` header, else the license of
its `Files: *` paragraph. A package whose doc folder links to another's (dh_installdocs
--link-doc) takes that package's license when it is in the same set.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from debian import copyright, deb822

from builder.core import run
from builder.core.digest import sha256_file
from builder.core.errors import PfbuildError
from builder.publish.sbom import PackageRecord

# A copyright file is a few hundred kB at most; a larger member is not read into memory.
MAX_COPYRIGHT_BYTES = 4 << 20


@dataclass(frozen=True)
class DebFacts:
    """One .deb: its record (license filled in when it has its own copyright) and doc link."""

    record: PackageRecord
    doc_link: str


def control_cmdline(deb: Path) -> list[str]:
    """dpkg-deb call that prints the package's control paragraph."""
    return ["dpkg-deb", "--field", str(deb)]


def fsys_cmdline(deb: Path) -> list[str]:
    """dpkg-deb call that writes the package's file system tree as an uncompressed tar."""
    return ["dpkg-deb", "--fsys-tarfile", str(deb)]


def source_of(control: deb822.Deb822) -> tuple[str, str]:
    """Source package and version from a control paragraph (`Source: name (version)`)."""
    version = control["Version"]
    source = control.get("Source", "").strip()
    if not source:
        return control["Package"], version
    match = re.fullmatch(r"(\S+)\s*\((\S+)\)", source)
    return (match.group(1), match.group(2)) if match else (source, version)


def copyright_license(text: str) -> str:
    """The license a machine-readable copyright file declares for the package, else ""."""
    try:
        parsed = copyright.Copyright(sequence=text.splitlines(keepends=True), strict=False)
    except (copyright.Error, ValueError):
        return ""
    if _synopsis(parsed.header.license):
        return _synopsis(parsed.header.license)
    for paragraph in parsed.all_files_paragraphs():
        if "*" in paragraph.files:
            return _synopsis(paragraph.license)
    return ""


def _synopsis(license_: object) -> str:
    # python-debian types these fields loosely; a copyright.License or None in practice.
    return str(getattr(license_, "synopsis", "") or "")


def _doc_facts(tar_bytes: bytes, package: str) -> tuple[str, str]:
    """(license from the package's own copyright, name its doc folder links to)."""
    doc = f"./usr/share/doc/{package}"
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        folder = members.get(doc)
        if folder is not None and folder.issym():
            return "", posixpath.basename(folder.linkname.rstrip("/"))
        member = members.get(f"{doc}/copyright")
        if member is None or not member.isfile() or member.size > MAX_COPYRIGHT_BYTES:
            return "", ""
        handle = tar.extractfile(member)
        text = handle.read().decode(errors="replace") if handle else ""
    return copyright_license(text), ""


def read_deb(deb: Path) -> DebFacts:
    """Control fields, sha256 and declared license of one .deb."""
    try:
        control = deb822.Deb822(run.output(control_cmdline(deb)))
        name, version, arch = control["Package"], control["Version"], control["Architecture"]
    except KeyError as exc:
        raise PfbuildError(f"{deb.name} has no {exc.args[0]} field", fix="rebuild it") from None
    source, source_version = source_of(control)
    license_, link = _doc_facts(run.run(fsys_cmdline(deb)).stdout, name)
    record = PackageRecord(name, version, arch, source, source_version, sha256_file(deb), license_)
    return DebFacts(record, link)


def package_records(debs: Sequence[Path]) -> list[PackageRecord]:
    """Records of a set of .debs; a linked doc folder takes its target's license."""
    facts = [read_deb(deb) for deb in debs]
    licenses = {f.record.name: f.record.license for f in facts}
    return [
        replace(f.record, license=licenses.get(f.doc_link, "")) if f.doc_link else f.record
        for f in facts
    ]
