"""builder/image/ without Docker: tags, labels, the build context, published-repo checks, stages."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import build_parser, main
from builder.core.checkout import DOCKER_DIR
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.image import build as image
from builder.image import stage
from builder.image.proofs import Proof
from builder.model.distro import RESOLUTE, TRIXIE
from builder.publish.tree import KEY_FILE_NAME

pytestmark = pytest.mark.unit

PACKAGES_INDEX = """\
Package: postfix
Version: 3.11.6-1+pf1~trixie
Architecture: amd64

Package: postfix
Version: 3.11.5-1+pf1~trixie
Architecture: amd64

Package: libmimalloc-secure
Version: 2.0.9+ds-2+pf1~trixie
Architecture: amd64
"""


def make_tree(
    root: Path, suite: str = "trixie", index: str = PACKAGES_INDEX, gz: bool = False
) -> Path:
    """A published tree as `pfbuild publish` leaves it, reduced to what image.py reads."""
    binary = root / "dists" / suite / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    if gz:
        (binary / "Packages.gz").write_bytes(gzip.compress(index.encode()))
    else:
        (binary / "Packages").write_text(index)
    (root / "dists" / suite / "InRelease").write_text(f"signed index of {suite}\n")
    (root / KEY_FILE_NAME).write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    return root


def test_variants_map_to_targets() -> None:
    assert image.variants() == ("debian", "ubuntu")
    assert image.variant_target("debian") is TRIXIE
    assert image.variant_target("ubuntu") is RESOLUTE


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(PfbuildError, match="unknown image variant 'alpine'"):
        image.variant_target("alpine")


def test_tags_without_and_with_registry() -> None:
    assert image.image_tags("pfbuild-postfix", "3.11.6", "debian") == [
        "pfbuild-postfix:debian",
        "pfbuild-postfix:3.11.6-debian",
    ]
    assert image.image_tags("postfix", "3.11.6", "ubuntu", "registry.example:5000/") == [
        "registry.example:5000/postfix:ubuntu",
        "registry.example:5000/postfix:3.11.6-ubuntu",
    ]
    # A scheduled image rebuild on a newer base gets a tag of its own.
    assert image.image_tags("postfix", "3.11.6", "debian", date="20261202")[2:] == [
        "postfix:3.11.6-debian-20261202"
    ]
    with pytest.raises(PfbuildError, match="is not YYYYMMDD"):
        image.ImageConfig(date_tag="2026-12-02")


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [("3.11.6-1+pf1~trixie", "3.11.6"), ("1:3.11.6-1", "3.11.6"), ("3.11.6", "3.11.6")],
)
def test_upstream_version(debian: str, upstream: str) -> None:
    assert image.upstream_version(debian) == upstream


def test_oci_labels_carry_version_source_revision_and_epoch() -> None:
    config = image.ImageConfig(revision="abc123", created_epoch=1_700_000_000)
    labels = image.oci_labels(config, "3.11.6", TRIXIE)
    assert labels["org.opencontainers.image.version"] == "3.11.6"
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert labels["org.opencontainers.image.source"] == image.DEFAULT_SOURCE
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("name", ["", "Postfix", "postfix:latest", "post fix", "a@b"])
def test_bad_image_names_are_refused(name: str) -> None:
    with pytest.raises(PfbuildError, match="not a valid repository name"):
        image.ImageConfig(name=name)


def test_base_image_for_unknown_variant_is_refused() -> None:
    with pytest.raises(PfbuildError, match="unknown image variant 'fedora'"):
        image.ImageConfig(base_images={"fedora": "fedora:41"})


def test_packages_include_maps_malloc_and_runtime() -> None:
    packages = image.image_packages(TRIXIE)
    assert packages[0] == "postfix"
    for name in (
        "postfix-cdb",
        "postfix-ldap",
        "postfix-lmdb",
        "postfix-mysql",
        "postfix-pcre",
        "postfix-pgsql",
        "postfix-sqlite",
        "libmimalloc-secure",
        "libjemalloc2",
        "ca-certificates",
        "tzdata",
        "openssl",
    ):
        assert name in packages


def test_pin_names_our_origin_above_the_distribution() -> None:
    text = image.apt_preferences()
    assert "Pin: release o=pfbuild\n" in text
    assert "Pin-Priority: 1001\n" in text


def test_build_args() -> None:
    assert image.build_args("pfbuild-base:trixie-20260101", ["postfix", "openssl"], "ab") == {
        "BASE_IMAGE": "pfbuild-base:trixie-20260101",
        "PACKAGES": "postfix openssl",
        "REPO_STATE": "ab",
    }
    packages = image.build_args("b", image.image_packages(RESOLUTE), "ab")["PACKAGES"].split()
    assert {"coreutils-from-gnu", "coreutils-from-uutils-", "rust-coreutils-"} <= set(packages)
    assert not any(p.endswith("-") for p in image.image_packages(TRIXIE))


@pytest.mark.parametrize("gz", [False, True])
def test_published_versions_take_the_highest(tmp_path: Path, gz: bool) -> None:
    tree = make_tree(tmp_path, gz=gz)
    versions = image.published_versions(tree, "trixie")
    assert versions["postfix"] == "3.11.6-1+pf1~trixie"
    assert versions["libmimalloc-secure"] == "2.0.9+ds-2+pf1~trixie"


def test_require_published_returns_the_upstream_version(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    assert image.require_published(tree, TRIXIE, image.image_packages(TRIXIE)) == "3.11.6"


def test_require_published_refuses_a_repo_without_our_malloc(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, index="Package: postfix\nVersion: 3.11.6-1\nArchitecture: amd64\n")
    with pytest.raises(PfbuildError, match="lacks libmimalloc-secure"):
        image.require_published(tree, TRIXIE, image.image_packages(TRIXIE))


def test_unpublished_suite_is_explained(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, suite="trixie")
    with pytest.raises(PfbuildError, match="suite resolute is not published"):
        image.published_versions(tree, "resolute")
    with pytest.raises(PfbuildError, match="suite resolute is not published"):
        image.repo_state(tree, "resolute")


def test_repo_state_is_the_inrelease_digest(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    expected = hashlib.sha256(b"signed index of trixie\n").hexdigest()
    assert image.repo_state(tree, "trixie") == expected


def test_assemble_context(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    context = tmp_path / "context"
    context.mkdir()
    image.assemble_context(context, tree, "http://127.0.0.1:18471/", "trixie")
    for name in image.TEMPLATE_FILES:
        assert (context / name).read_bytes() == (DOCKER_DIR / name).read_bytes()
    assert (context / "bootstrap.sh").stat().st_mode & 0o777 == 0o755
    sources = (context / "apt" / "pfbuild.sources").read_text()
    assert "URIs: http://127.0.0.1:18471/\n" in sources
    assert "Suites: trixie\n" in sources
    assert "Signed-By: /etc/apt/keyrings/pfbuild.asc\n" in sources
    assert (context / "apt" / "pfbuild.asc").read_text().startswith("-----BEGIN PGP")
    assert (context / "apt" / "pfbuild.pref").read_text() == image.apt_preferences()


def test_the_image_gate_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    context = tmp_path / "context"
    context.mkdir()
    image.assemble_context(context, tree, "http://127.0.0.1:18471/", "trixie")
    gate = context / image.GATE_DIR
    assert not (gate / "builder/check/config/packaged.py").exists()
    configs = Path(__file__).resolve().parents[2] / "data" / "postfix-configs"
    # -I -S: no user site, no site-packages, no PYTHONPATH; only the copied tree and the
    # standard library, as python3 in the image has them.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import runpy; sys.argv[1:2] = []; "
        "runpy.run_module('builder.check.config', run_name='__main__')"
    )
    for name, rc in (("clean-3.11", 0), ("open-relay", 3)):
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code, str(gate), str(configs / name)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == rc, proc.stderr
        assert proc.stdout.splitlines()[-1].startswith(f"{configs / name}: ")
    loaded = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import builder.check.config.__main__; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('builder', 'debian', "
         "'jsonschema', 'docker', 'jinja2')))", str(gate)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "debian" not in loaded and "jsonschema" not in loaded and "docker" not in loaded


def test_assemble_context_needs_the_public_key(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / KEY_FILE_NAME).unlink()
    context = tmp_path / "context"
    context.mkdir()
    with pytest.raises(PfbuildError, match=r"pfbuild\.asc is missing"):
        image.assemble_context(context, tree, "http://127.0.0.1:1/", "trixie")


def test_every_template_file_is_in_the_build_context_list() -> None:
    shipped = {p.name for p in DOCKER_DIR.iterdir() if p.is_file()}
    assert shipped - {"README.md", "compose.yaml"} == set(image.TEMPLATE_FILES)


def test_build_without_a_published_repo_fails_before_docker(ctx: Context) -> None:
    config = image.ImageConfig()
    with pytest.raises(PfbuildError, match="suite trixie is not published"):
        stage.build_variant_image(ctx, config, "debian")


def test_cli_parses_the_image_command() -> None:
    args = build_parser().parse_args(
        ["image", "--variant", "ubuntu", "--base-image", "ubuntu=ubuntu:26.04", "--test"]
    )
    assert args.variant == ["ubuntu"]
    assert args.base_image == [("ubuntu", "ubuntu:26.04")]
    assert args.test


def test_cli_refuses_an_unknown_variant(tmp_path: Path) -> None:
    assert main(["--workspace", str(tmp_path), "image", "--variant", "alpine"]) == 2


def test_cli_explains_a_missing_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--workspace", str(tmp_path), "image", "--variant", "debian"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pfbuild: error: suite trixie is not published")


class FakeAPI:
    """The slice of docker's low-level API that push_tags uses."""

    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.pushed: list[tuple[str, str]] = []

    def push(self, repo: str, tag: str, stream: bool, decode: bool) -> Iterator[dict[str, str]]:
        self.pushed.append((repo, tag))
        if self.refuse and self.refuse == f"{repo}:{tag}":
            yield {"error": "denied: requested access to the resource is denied"}
        else:
            yield {"status": "Pushed"}


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api


def test_push_sends_every_tag() -> None:
    api = FakeAPI()
    tags = image.image_tags("postfix", "3.11.6", "debian", "registry.example:5000")
    image.push_tags(FakeClient(api), tags)  # type: ignore[arg-type]  # a fake, not a DockerClient
    assert api.pushed == [
        ("registry.example:5000/postfix", "debian"),
        ("registry.example:5000/postfix", "3.11.6-debian"),
    ]


def test_push_refusal_is_explained() -> None:
    api = FakeAPI(refuse="registry.example:5000/postfix:debian")
    tags = image.image_tags("postfix", "3.11.6", "debian", "registry.example:5000")
    with pytest.raises(PfbuildError, match=r"push of registry\.example:5000/postfix:debian failed"):
        image.push_tags(FakeClient(api), tags)  # type: ignore[arg-type]  # a fake client
    assert len(api.pushed) == 1


PROOFS = [Proof("banner", True, "220 ok"), Proof("starttls", False, "EHLO advertises []")]


@pytest.fixture
def fake_proofs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bool, bool]]:
    """prove_variant's Docker side replaced: (tag, TLS client base, healthcheck, locked down)."""
    calls: list[tuple[str, str, bool, bool]] = []
    bases: list[str] = []

    def tls_client(_client: object, base: str) -> str:
        bases.append(base)
        return "pfbuild-tlsclient:test"

    def prove(
        _client: object, tag: str, _tls: str, *, scratch: Path, healthcheck: bool,
        locked_down: bool,
    ) -> list[Proof]:  # fmt: skip
        assert scratch.is_dir()
        calls.append((tag, bases[-1], healthcheck, locked_down))
        suffix = " (locked down)" if locked_down else ""
        return [Proof(p.name + suffix, p.ok, p.detail) for p in PROOFS]

    monkeypatch.setattr(stage, "docker_client", lambda _ctx: None)
    monkeypatch.setattr(stage, "ensure_base_image", lambda _ctx, dist: f"pfbuild-base:{dist.name}")
    monkeypatch.setattr(stage, "ensure_tls_client_image", tls_client)
    monkeypatch.setattr(stage, "prove_image", prove)
    return calls


def test_prove_variant_names_the_failed_proofs(
    ctx: Context, fake_proofs: list[tuple[str, str, bool, bool]]
) -> None:
    with pytest.raises(PfbuildError) as caught:
        stage.prove_variant(ctx, "ubuntu", "pfbuild-postfix:ubuntu")
    assert str(caught.value) == (
        "2 proof(s) failed for the ubuntu image: starttls, starttls (locked down): starttls: "
        "EHLO advertises [] (fix: run `pfbuild image --variant ubuntu --test` to see every proof)"
    )
    assert fake_proofs == [
        ("pfbuild-postfix:ubuntu", "pfbuild-base:trixie", True, False),
        ("pfbuild-postfix:ubuntu", "pfbuild-base:trixie", True, True),
    ]


def test_prove_variant_without_check_returns_every_proof_on_the_configured_base(
    ctx: Context, fake_proofs: list[tuple[str, str, bool, bool]]
) -> None:
    proofs = stage.prove_variant(
        ctx,
        "debian",
        "pfbuild-postfix:debian",
        base_images={"debian": "debian:trixie-slim"},
        healthcheck=False,
        check=False,
    )
    assert [p.name for p in proofs] == [p.name for p in PROOFS] + [
        f"{p.name} (locked down)" for p in PROOFS
    ]
    assert [call[:3] for call in fake_proofs] == [
        ("pfbuild-postfix:debian", "debian:trixie-slim", False)
    ] * 2


class FakeImages:
    """The slice of docker's image API that pushed_digests reads."""

    def __init__(self, digests: list[str]) -> None:
        self.digests = digests

    def get(self, _ref: str) -> FakeImages:
        return self

    @property
    def attrs(self) -> dict[str, list[str]]:
        return {"RepoDigests": self.digests}


class FakeImageClient:
    def __init__(self, digests: list[str]) -> None:
        self.images = FakeImages(digests)


def test_the_pushed_digest_is_what_cosign_signs() -> None:
    tags = image.image_tags("postfix", "3.11.6", "debian", "127.0.0.1:5000")
    digest = "sha256:" + "cd" * 32
    client = FakeImageClient([f"127.0.0.1:5000/postfix@{digest}", f"postfix@{digest}"])
    found = image.pushed_digests(client, "sha256:" + "ab" * 32, tags)  # type: ignore[arg-type]
    assert found == [f"127.0.0.1:5000/postfix@{digest}"]
    client = FakeImageClient([f"other.example/postfix@{digest}"])
    with pytest.raises(PfbuildError, match="no registry digest"):
        image.pushed_digests(client, "sha256:" + "ab" * 32, tags)  # type: ignore[arg-type]


def test_a_pushed_image_is_signed_with_the_configured_key(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed: list[tuple[object, str]] = []
    keys: list[Path | None] = []

    def ensure_key(_ctx: Context, _cosign: object, key_file: Path | None) -> str:
        keys.append(key_file)
        return "the key"

    monkeypatch.setattr(stage, "cosign_for_signing", lambda _ctx: "the cosign")
    monkeypatch.setattr(stage, "ensure_cosign_key", ensure_key)
    monkeypatch.setattr(stage, "sign_image", lambda _c, key, ref: signed.append((key, ref)))
    refs = ["127.0.0.1:5000/postfix@sha256:" + "cd" * 32]
    assert stage.sign_pushed_image(ctx, refs, tmp_path / "ci.key") == refs
    assert signed == [("the key", refs[0])] and keys == [tmp_path / "ci.key"]


def test_cli_takes_the_cosign_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PFBUILD_COSIGN_KEY_FILE", str(tmp_path / "ci.key"))
    args = build_parser().parse_args(["image", "--registry", "127.0.0.1:5000"])
    assert args.cosign_key == tmp_path / "ci.key"
    args = build_parser().parse_args(["image", "--cosign-key", "other.key"])
    assert args.cosign_key == Path("other.key")
