"""CycloneDX SBOMs: schema-valid, exactly the packages given, purls as the purl spec spells them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cyclonedx.model.component import ComponentType
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from builder.core.errors import PfbuildError
from builder.publish.debfacts import copyright_license, source_of
from builder.publish.sbom import (
    PackageRecord,
    bom_json,
    package_purl,
    read_bom,
    spdx_expression,
)

pytestmark = pytest.mark.unit

CREATED = datetime(2026, 12, 1, 5, 0, 0, tzinfo=UTC)
POSTFIX = PackageRecord(
    "postfix", "3.11.6-1+pf1~trixie", "amd64", "postfix", "3.11.6-1+pf1~trixie", "a" * 64,
    "IPL-1.0 or EPL-2.0",
)  # fmt: skip
LDAP = PackageRecord(
    "postfix-ldap", "3.11.6-1+pf1~trixie", "amd64", "postfix", "3.11.6-1+pf1~trixie", "b" * 64
)
MALLOC = PackageRecord(
    "libmimalloc-secure2", "2.0.9-1+pf1~trixie", "amd64", "mimalloc", "2.0.9-1+pf1~trixie",
    "c" * 64, "MIT",
)  # fmt: skip


def target_bom(records: list[PackageRecord], vendor: str = "debian") -> bytes:
    return bom_json(
        name="postfix", version="3.11.6", kind=ComponentType.APPLICATION, vendor=vendor,
        records=records, created=CREATED, properties={"pfbuild:suite": "trixie"},
    )  # fmt: skip


def test_purl_is_the_spec_spelling() -> None:
    assert (
        package_purl("debian", POSTFIX) == "pkg:deb/debian/postfix@3.11.6-1%2Bpf1~trixie?arch=amd64"
    )
    ubuntu = PackageRecord("postfix", "3.11.6-1+pf1~resolute", "amd64", "postfix", "x")
    assert package_purl("ubuntu", ubuntu) == (
        "pkg:deb/ubuntu/postfix@3.11.6-1%2Bpf1~resolute?arch=amd64"
    )


def test_target_sbom_is_valid_cyclonedx_with_exactly_the_packages() -> None:
    text = target_bom([LDAP, POSTFIX, MALLOC])
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text.decode()) is None
    document = json.loads(text)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    purls = sorted(c["purl"] for c in document["components"])
    assert purls == sorted(
        [
            "pkg:deb/debian/libmimalloc-secure2@2.0.9-1%2Bpf1~trixie?arch=amd64",
            "pkg:deb/debian/postfix@3.11.6-1%2Bpf1~trixie?arch=amd64",
            "pkg:deb/debian/postfix-ldap@3.11.6-1%2Bpf1~trixie?arch=amd64",
        ]
    )
    by_name = {c["name"]: c for c in document["components"]}
    postfix = by_name["postfix"]
    assert postfix["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    assert postfix["licenses"] == [{"expression": "IPL-1.0 OR EPL-2.0"}]
    properties = {p["name"]: p["value"] for p in by_name["libmimalloc-secure2"]["properties"]}
    assert properties == {
        "pfbuild:source-package": "mimalloc",
        "pfbuild:source-version": "2.0.9-1+pf1~trixie",
    }
    assert "licenses" not in by_name["postfix-ldap"]
    graph = {d["ref"]: sorted(d.get("dependsOn", [])) for d in document["dependencies"]}
    assert graph["postfix@3.11.6"] == purls
    assert document["metadata"]["component"]["name"] == "postfix"
    assert document["metadata"]["timestamp"] == "2026-12-01T05:00:00+00:00"


def test_same_packages_give_the_same_bytes_and_read_back() -> None:
    assert target_bom([POSTFIX, LDAP]) == target_bom([LDAP, POSTFIX])
    read = read_bom(target_bom([POSTFIX, LDAP]), "sbom")
    assert sorted((c.name, c.version, c.arch, c.sha256) for c in read.components) == [
        ("postfix", POSTFIX.version, "amd64", "a" * 64),
        ("postfix-ldap", LDAP.version, "amd64", "b" * 64),
    ]
    assert (read.name, read.version) == ("postfix", "3.11.6")


def test_image_sbom_names_the_image_by_its_config_digest() -> None:
    text = bom_json(
        name="pfbuild-postfix", version="3.11.6-debian", kind=ComponentType.CONTAINER,
        vendor="debian", records=[POSTFIX], created=CREATED, subject_sha256="d" * 64,
    )  # fmt: skip
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text.decode()) is None
    read = read_bom(text, "image sbom")
    assert (read.name, read.version, read.sha256) == ("pfbuild-postfix", "3.11.6-debian", "d" * 64)
    assert json.loads(text)["metadata"]["component"]["type"] == "container"


def test_reading_refuses_what_is_not_cyclonedx() -> None:
    document = json.loads(target_bom([POSTFIX]))
    document["components"][0]["hashes"] = [{"alg": "SHA-256", "content": "not hex"}]
    with pytest.raises(PfbuildError, match="not valid CycloneDX"):
        read_bom(json.dumps(document).encode(), "sbom-trixie.cdx.json")
    document = json.loads(target_bom([POSTFIX]))
    document["components"][0]["name"] = "postfix-evil"
    with pytest.raises(PfbuildError, match="does not name postfix-evil"):
        read_bom(json.dumps(document).encode(), "sbom-trixie.cdx.json")


def test_license_operators_become_spdx_ones() -> None:
    assert spdx_expression("IPL-1.0 or EPL-2.0") == "IPL-1.0 OR EPL-2.0"
    assert spdx_expression("GPL-2+ with OpenSSL-exception") == "GPL-2+ WITH OpenSSL-exception"


DEP5 = (
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
    "Files: *\nCopyright: 2018 Microsoft\nLicense: MIT\n\n"
    "Files: debian/*\nCopyright: 2020 someone\nLicense: GPL-2+\n"
)


def test_license_comes_from_machine_readable_copyright_only() -> None:
    assert copyright_license(DEP5) == "MIT"
    header = DEP5.replace("\n\nFiles: *", "\nLicense: Apache-2.0\n\nFiles: *", 1)
    assert copyright_license(header) == "Apache-2.0"
    assert copyright_license("This is the Debian prepackaged version of Postfix.\n") == ""


def test_source_package_of_a_control_paragraph() -> None:
    from debian import deb822

    plain = deb822.Deb822({"Package": "postfix", "Version": "3.11.6-1"})
    assert source_of(plain) == ("postfix", "3.11.6-1")
    named = deb822.Deb822({"Package": "postfix-ldap", "Version": "3.11.6-1", "Source": "postfix"})
    assert source_of(named) == ("postfix", "3.11.6-1")
    versioned = deb822.Deb822(
        {"Package": "libc6", "Version": "2.41-12+b1", "Source": "glibc (2.41-12)"}
    )
    assert source_of(versioned) == ("glibc", "2.41-12")
