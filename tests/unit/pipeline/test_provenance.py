"""The SLSA provenance statement: its shape, who built it, what it was built from."""

from __future__ import annotations

import pytest

from builder.model.loader import load_recipe
from builder.pipeline.provenance import (
    builder_identity,
    fetched_resources,
    pfbuild_resource,
    provenance_predicate,
    templates_sha256,
)
from builder.pipeline.revisions import templates_digest
from builder.publish.attestations import (
    BUILD_TYPE,
    SLSA_PREDICATE_TYPE,
    STATEMENT_TYPE,
    in_toto_statement,
    subject,
)

pytestmark = pytest.mark.unit

FPR = "622C7C012254C186677469C50C0B590E80CA15A7"


def predicate() -> dict[str, object]:
    return provenance_predicate(
        external={"recipe": "postfix", "version": "3.11.6", "targets": ["trixie", "resolute"]},
        internal={"jobs": 0, "signingKey": "F" * 40},
        dependencies=[{"name": "recipe postfix", "digest": {"sha256": "a" * 64}}],
        builder=("https://pfbuild.invalid/builder/host/h", "urn:uuid:1"),
        started=1_790_000_000,
        finished=1_790_000_900,
        versions={"pfbuild": "0.1.0", "pfbuild-revision": "c" * 40},
    )


def test_statement_is_in_toto_v1_with_slsa_v1_provenance() -> None:
    statement = in_toto_statement(
        [subject("pool/main/p/postfix/postfix_3.11.6-1+pf1~trixie_amd64.deb", "b" * 64),
         subject("dists/trixie/InRelease", "c" * 64)],
        SLSA_PREDICATE_TYPE, predicate(),
    )  # fmt: skip
    assert statement["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert [s["name"] for s in statement["subject"]] == [
        "dists/trixie/InRelease",
        "pool/main/p/postfix/postfix_3.11.6-1+pf1~trixie_amd64.deb",
    ]
    assert statement["subject"][0]["digest"] == {"sha256": "c" * 64}
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == BUILD_TYPE == "https://pfbuild.invalid/release/v1"
    assert build["externalParameters"]["targets"] == ["trixie", "resolute"]
    assert set(build) == {
        "buildType", "externalParameters", "internalParameters", "resolvedDependencies",
    }  # fmt: skip
    run = statement["predicate"]["runDetails"]
    assert run["builder"] == {
        "id": "https://pfbuild.invalid/builder/host/h",
        "version": {"pfbuild": "0.1.0", "pfbuild-revision": "c" * 40},
    }
    assert run["metadata"] == {
        "invocationId": "urn:uuid:1",
        "startedOn": "2026-09-21T14:13:20Z",
        "finishedOn": "2026-09-21T14:28:20Z",
    }


def test_builder_is_the_github_run_when_there_is_one() -> None:
    env = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "pfbuild/pfbuild",
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "2",
    }
    assert builder_identity(env) == (
        "https://github.com/pfbuild/pfbuild/actions/runs/42",
        "https://github.com/pfbuild/pfbuild/actions/runs/42/attempts/2",
    )
    builder, invocation = builder_identity({"GITHUB_RUN_ID": "42"}, hostname="build1")
    assert builder == "https://pfbuild.invalid/builder/host/build1"
    assert invocation.startswith("urn:uuid:")
    assert invocation != builder_identity({}, hostname="build1")[1]


def test_fetched_sources_say_how_they_were_verified_and_against_what() -> None:
    anchor = {
        "upstream_fingerprint": FPR,
        "packaging": "postfix 3.11.6-1",
        "dsc_sha256": "d" * 64,
    }
    files = [
        {"role": "upstream-tarball", "name": "postfix-3.11.6.tar.gz", "sha256": "1" * 64,
         "url": "https://mirror/postfix-3.11.6.tar.gz", "verified_by": f"OpenPGP {FPR}"},
        {"role": "dsc", "name": "postfix_3.11.6-1.dsc", "sha256": "2" * 64,
         "url": "http://deb.debian.org/x.dsc", "verified_by": "pinned sha256"},
    ]  # fmt: skip
    tarball, dsc = fetched_resources("postfix", "3.11.6", files, anchor)
    assert tarball == {
        "name": "postfix-3.11.6.tar.gz",
        "uri": "https://mirror/postfix-3.11.6.tar.gz",
        "digest": {"sha256": "1" * 64},
        "annotations": {
            "recipe": "postfix 3.11.6",
            "role": "upstream-tarball",
            "verifiedBy": f"OpenPGP {FPR}",
            "signingKeyFingerprint": FPR,
        },
    }
    assert dsc["annotations"]["trustAnchor"] == {
        "packaging": "postfix 3.11.6-1",
        "dsc_sha256": "d" * 64,
    }
    assert dsc["annotations"]["verifiedBy"] == "pinned sha256"


def test_pfbuild_is_named_by_its_commit() -> None:
    assert pfbuild_resource("e" * 40)["digest"] == {"gitCommit": "e" * 40}
    assert "digest" not in pfbuild_resource("unknown")


def test_the_templates_digest_of_the_release_key_is_the_provenance_digest_cut_short() -> None:
    recipe = load_recipe("postfix")
    assert len(templates_sha256(recipe)) == 64
    assert templates_digest(recipe) == templates_sha256(recipe)[:20]
