"""Shared fixtures: a fresh Context per test, and one bootstrapped workspace per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.core.context import Context, prepare_workspace
from builder.model.distro import TARGETS, Distribution

REPO = Path(__file__).resolve().parent.parent
# Archive files the tests need, kept in the repository (tests/data/mirror/README.md says why).
TEST_MIRROR = REPO / "tests" / "data" / "mirror"
UBUNTU_KEYRING_DEB = (
    TEST_MIRROR / "ubuntu/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1build1_all.deb"
)


# The tiers `./run-tests -m ...` selects by. A unit test needs only Python and the installed
# package (with the linters pip installs); one that starts gpg, dpkg-deb, make, perl, a shell
# script or docker is an integration test, even when it sits in a unit module.
TIERS = ("unit", "integration", "e2e")


def _tier_marks(item: pytest.Item) -> list[pytest.Mark]:
    """The tier marks of the closest node, from the test up to the session, that has any."""
    for node in item.iter_parents():
        marks = [m for m in node.own_markers if m.name in TIERS]
        if marks:
            return marks
    return []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each test in exactly one tier: its own tier mark, else its class's or module's.

    pytest adds marks up, so a test marked integration in a module marked unit would be in both;
    the tier marks of modules and classes are moved down onto the tests that name none.
    """
    tiers: dict[pytest.Item, pytest.Mark] = {}
    wrong: list[str] = []
    for item in items:
        marks = _tier_marks(item)
        names = sorted({m.name for m in marks})
        if len(names) == 1:
            tiers[item] = marks[0]
        else:
            wrong.append(f"{item.nodeid}: {', '.join(names) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"each test needs exactly one of the marks {', '.join(TIERS)}:\n" + "\n".join(wrong)
        )
    for item, tier in tiers.items():
        for node in item.iter_parents():
            node.own_markers[:] = [m for m in node.own_markers if m.name not in TIERS]
        item.own_markers.append(tier)


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    """A Context on an empty workspace of this test's own."""
    return Context(workspace=prepare_workspace(tmp_path / "ws"))


@pytest.fixture(scope="session")
def shared_workspace() -> Path:
    """One workspace for the integration tests of a session, kept between runs to reuse chroots.

    Base environments take a minute each to make; tests that only need one reuse this workspace
    (pfbuild's own caching is what makes that safe). PFBUILD_TEST_WORKSPACE moves it.
    """
    path = prepare_workspace(
        Path(os.environ.get("PFBUILD_TEST_WORKSPACE", "/var/tmp/pfbuild-test-work"))
    )
    forget_publication(path)
    return path


# What a release publishes: the aptly database, the served trees, the manifests and the state of
# the actions that made them. Caches (chroots, fetched sources, builds) stay.
PUBLISHED = ("aptly", "dist", "manifests")
PUBLISHED_STATE = ("publish.json", "image_*.json", "image-test_*.json", "attest.json")


def forget_publication(workspace: Path) -> None:
    """Start a test session with nothing published in the shared workspace.

    A published version is immutable, so a repository left by an earlier session, built by an
    older checkout with other templates, would refuse this session's packages of the same
    version. Each session publishes afresh; its builds are still reused when their inputs match.
    """
    for name in PUBLISHED:
        shutil.rmtree(workspace / name, ignore_errors=True)
    state = workspace / "state" / "release"
    for pattern in PUBLISHED_STATE:
        for record in state.glob(pattern):
            record.unlink()


@pytest.fixture(scope="session")
def shared_ctx(shared_workspace: Path) -> Context:
    """The Context of the shared integration workspace."""
    return Context(workspace=shared_workspace)


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> Iterator[Distribution]:
    """Each target distribution in turn."""
    yield TARGETS[request.param]


@pytest.fixture(scope="session", autouse=True)
def _stop_test_gpg_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """gpg starts an agent per GNUPGHOME a test makes; stop them so none outlives the run."""
    yield
    base = tmp_path_factory.getbasetemp()
    for home in {p.parent for p in base.rglob("pubring.kbx")}:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True, check=False,
        )  # fmt: skip
