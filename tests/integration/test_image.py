"""The Postfix images for real: built from our published repo, proven against running containers.

Each variant is built once per session (Docker's layer cache makes a rebuild with an unchanged
repository take seconds) and one long-lived container per variant serves the read-only checks;
the checks that need their own settings start containers of their own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import docker
from builder.bootstrap.buildenv import ensure_base_image
from builder.cli import main
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.image import build as image
from builder.image.container import PostfixContainer
from builder.image.proofs import JEMALLOC_LIB, MIMALLOC_LIB, ImageProver
from builder.image.stage import build_variant_image
from builder.image.tlsclient import ensure_tls_client_image
from builder.model.distro import TARGETS, TRIXIE
from builder.model.recipe import load_recipe

pytestmark = pytest.mark.integration

TEST_IMAGE_NAME = "pfbuild-postfix-test"
POSTFIX_VERSION = "3.11.6"


def _has_packages(ctx: Context, suite: str) -> bool:
    try:
        versions = image.published_versions(ctx.apt_tree, suite)
    except Exception:
        return False
    malloc = load_recipe("mimalloc-secure").binary_packages[suite]
    return all(name in versions for name in ("postfix", *malloc))


def _cli(ctx: Context, *args: str) -> None:
    assert main(["--workspace", str(ctx.workspace), *args]) == 0, f"pfbuild {' '.join(args)}"


@pytest.fixture(scope="session")
def published(shared_ctx: Context) -> Context:
    """The shared workspace with postfix and mimalloc-secure published for every target."""
    missing = [t for t in TARGETS if not _has_packages(shared_ctx, t)]
    if missing:
        # Every stage is keyed by its inputs: only what the workspace lacks is done here.
        targets = [a for t in missing for a in ("--target", t)]
        _cli(shared_ctx, "release", POSTFIX_VERSION, "--no-image", *targets)
    return shared_ctx


@pytest.fixture(scope="session")
def client(shared_ctx: Context) -> docker.DockerClient:
    return docker_client(shared_ctx)


@pytest.fixture(scope="session")
def tls_client(shared_ctx: Context, client: docker.DockerClient) -> str:
    return ensure_tls_client_image(client, ensure_base_image(shared_ctx, TRIXIE))


@pytest.fixture(scope="session", params=image.variants())
def built(request: pytest.FixtureRequest, published: Context) -> image.BuiltImage:
    """One variant's image, built from the published repository."""
    config = image.ImageConfig(name=TEST_IMAGE_NAME, revision="test", created_epoch=1_764_000_000)
    return build_variant_image(published, config, str(request.param))


@pytest.fixture(scope="session")
def prover(
    built: image.BuiltImage, client: docker.DockerClient, tls_client: str
) -> Iterator[ImageProver]:
    with tempfile.TemporaryDirectory(prefix="pfbuild-imagetest-") as tmp:
        prover = ImageProver(client, built.tags[0], tls_client, Path(tmp))
        try:
            yield prover
        finally:
            prover.close()


@pytest.fixture(scope="session")
def main_container(prover: ImageProver) -> PostfixContainer:
    """The variant's long-lived container with the default settings."""
    return prover.start()


def test_tags_and_labels(built: image.BuiltImage, client: docker.DockerClient) -> None:
    assert built.version == "3.11.6"
    assert list(built.tags) == image.image_tags(TEST_IMAGE_NAME, "3.11.6", built.variant)
    attrs = client.images.get(built.tags[1]).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "3.11.6"
    assert labels["org.opencontainers.image.created"] == "2025-11-24T16:00:00Z"
    assert labels["org.opencontainers.image.revision"] == "test"
    assert attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"


def test_installed_from_our_repo_without_leftovers(prover: ImageProver) -> None:
    rc, out = prover.exec_default(
        ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "postfix", "libmimalloc-secure"]
    )
    assert rc == 0, out
    versions = dict(line.split(" ", 1) for line in out.splitlines())
    assert versions["postfix"].startswith("3.11.6-") and "+pf" in versions["postfix"]
    assert (
        versions["libmimalloc-secure"].startswith("2.0.9")
        and "+pf" in versions["libmimalloc-secure"]
    )
    leftovers = (
        "ls -A /var/lib/apt/lists /etc/apt/sources.list.d /etc/apt/keyrings /etc/apt/preferences.d"
        " | grep -v -x -e '' -e '.*:' -e lock -e partial; "
        "command -v gcc cc make dpkg-buildpackage gpg; "
        "find / -xdev \\( -name pfbuild.asc -o -name 'secring*' -o -name private-keys-v1.d \\)"
    )
    # The status is only the last command's: what they print is the finding.
    _, out = prover.exec_default(["bash", "-c", leftovers], check=False)
    assert out.split() == [], f"apt lists, sources, keys or build tools left: {out.split()}"


def test_banner(prover: ImageProver, main_container: PostfixContainer) -> None:
    detail = prover.check_banner(main_container)
    print(detail)
    assert main_container.banner_seconds < 10


def test_starttls(prover: ImageProver, main_container: PostfixContainer) -> None:
    prover.check_starttls(main_container)


def test_post_quantum_group(prover: ImageProver, main_container: PostfixContainer) -> None:
    assert prover.check_pq_group(main_container) == "Negotiated TLS1.3 group: X25519MLKEM768"


def test_tls11_refused(prover: ImageProver, main_container: PostfixContainer) -> None:
    prover.check_tls11_refused(main_container)


def test_no_open_relay(prover: ImageProver, main_container: PostfixContainer) -> None:
    prover.check_relay_denied(main_container)
    prover.check_local_accepted(main_container)


def test_no_config_warnings(prover: ImageProver, main_container: PostfixContainer) -> None:
    prover.check_no_config_warnings(main_container)


def test_mimalloc_is_preloaded_by_default(
    prover: ImageProver, main_container: PostfixContainer
) -> None:
    prover.check_preload(main_container, MIMALLOC_LIB)


@pytest.mark.parametrize(("malloc", "lib"), [("jemalloc", JEMALLOC_LIB), ("none", None)])
def test_malloc_choice(prover: ImageProver, malloc: str, lib: str | None) -> None:
    running = prover.start(env={"MALLOC": malloc})
    try:
        prover.check_preload(running, lib)
    finally:
        running.remove()


def test_bogus_malloc_stops_the_container(prover: ImageProver) -> None:
    prover.check_bogus_malloc()


def test_config_volume_edit_survives_and_broken_master_cf_is_not_reloaded(
    prover: ImageProver,
) -> None:
    prover.check_config_volume()


def test_read_only_main_cf(prover: ImageProver) -> None:
    prover.check_readonly_main_cf()


def test_queued_mail_survives_replacing_the_container(prover: ImageProver) -> None:
    prover.check_queue_survives()


def test_reload_interval(prover: ImageProver) -> None:
    prover.check_reload_logged()


def test_remote_syslog_and_stdout(prover: ImageProver) -> None:
    prover.check_syslog()


def test_mounted_certificate_and_its_renewal(prover: ImageProver) -> None:
    prover.check_mounted_certificate()


def test_healthcheck_turns_healthy(prover: ImageProver, main_container: PostfixContainer) -> None:
    # Last on purpose: the first probe runs a minute after start, which has mostly passed.
    prover.check_healthy(main_container)
