"""A recipe with `berkeley_db = False`: built, checked, published and proven as an image.

The recipe is a site recipe (tests/data/recipes/postfix_nobdb.py): the postfix recipe with the
option off. It is released (trixie only) into a workspace of its own, beside the shared one so
that its repository never mixes with the shared postfix; the base chroots are hard-linked from
the shared workspace instead of made again. What the test asserts comes from Debian's and
Postfix's own tools: dpkg-deb's control fields, readelf's NEEDED entries, hardening-check, and
`postmap` in the image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.bootstrap.buildenv import ensure_base_image
from builder.cli import main
from builder.core.context import Context, prepare_workspace
from builder.core.engine import docker_client
from builder.image import build as image
from builder.image.proofs import prove_image
from builder.image.stage import build_variant_image
from builder.image.tlsclient import ensure_tls_client_image
from builder.model.distro import TRIXIE
from tests.conftest import REPO, forget_publication
from tests.integration.conftest import POSTFIX_VERSION

pytestmark = pytest.mark.integration

RECIPE = "postfix-nobdb"
SITE_RECIPES = REPO / "tests" / "data" / "recipes"
IMAGE_NAME = "pfbuild-postfix-nobdb-test"


def seed_chroots(shared: Path, workspace: Path) -> None:
    """Hard-link the shared workspace's chroot tarballs, made by this session's pfbuild.

    pfbuild reuses a tarball whose record names the same inputs and is fresh enough, as in the
    shared workspace; nothing here comes from outside the test run.
    """
    (workspace / "chroots").mkdir(exist_ok=True)
    for path in (shared / "chroots").glob(f"{TRIXIE.name}-*"):
        target = workspace / "chroots" / path.name
        if path.is_file() and not target.exists():
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


@pytest.fixture(scope="module")
def released(shared_ctx: Context) -> Iterator[Context]:
    """postfix-nobdb 3.11.6 released for trixie (no image) in its own workspace."""
    shared = shared_ctx.workspace
    workspace = prepare_workspace(shared.with_name(f"{shared.name}-nobdb"))
    forget_publication(workspace)
    seed_chroots(shared, workspace)
    ctx = Context(workspace=workspace)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PFBUILD_RECIPES", str(SITE_RECIPES))
        args = ["release", POSTFIX_VERSION, "--recipe", RECIPE, "--target", TRIXIE.name]
        assert main(["--workspace", str(workspace), *args, "--no-image"]) == 0
        yield ctx


def postfix_debs(ctx: Context) -> list[Path]:
    debs = sorted(ctx.build_dir(RECIPE, POSTFIX_VERSION, TRIXIE.name).glob("*.deb"))
    assert any(d.name.startswith("postfix_") for d in debs), debs
    return debs


def tool(*cmd: str | Path) -> str:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=True).stdout


def test_no_package_depends_on_libdb(released: Context) -> None:
    for deb in postfix_debs(released):
        fields = tool("dpkg-deb", "-f", deb, "Depends", "Pre-Depends", "Recommends")
        assert "libdb" not in fields, (deb.name, fields)


def test_no_binary_links_libdb_and_hardening_holds(released: Context, tmp_path: Path) -> None:
    main_deb = next(d for d in postfix_debs(released) if d.name.startswith("postfix_"))
    root = tmp_path / "postfix"
    tool("dpkg-deb", "-x", main_deb, root)
    elves = [
        p
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.read_bytes()[:4] == b"\x7fELF"
    ]
    assert len(elves) > 20, elves
    for elf in elves:
        needed = re.findall(r"\(NEEDED\).*\[(.+)\]", tool("readelf", "-d", elf))
        assert needed and not any(n.startswith("libdb") for n in needed), (elf, needed)
    # devscripts' hardening-check on the daemon that faces the Internet.
    smtpd = root / "usr/lib/postfix/sbin/smtpd"
    report = subprocess.run(
        ["hardening-check", str(smtpd)], capture_output=True, text=True, check=False
    ).stdout
    for line in ("Position Independent Executable", "Stack protected", "Fortify Source",
                 "Read-only relocations", "Immediate binding"):  # fmt: skip
        assert re.search(rf"{line}[^:\n]*: yes", report), report


def test_image_has_no_berkeley_db_tables_and_passes_its_proofs(
    released: Context, tmp_path: Path
) -> None:
    config = image.ImageConfig(name=IMAGE_NAME, revision="test", created_epoch=1_764_000_000)
    built = build_variant_image(released, config, TRIXIE.variant)
    client = docker_client(released)
    # 3.11 keeps hash and btree in `postconf -m` as surrogates that only say why they fail.
    # No container started: the image's own defaults are in /etc/postfix.orig.
    probe = (
        "cd /etc/postfix.orig && printf 'k v\\n' > /tmp/t && postmap -c . cdb:/tmp/t"
        " && postmap -c . -q k cdb:/tmp/t && postmap -c . hash:/tmp/t"
    )
    box = client.containers.run(built.tags[0], ["sh", "-c", probe], detach=True)
    try:
        status = box.wait(timeout=60)["StatusCode"]
        out = box.logs().decode(errors="replace")
    finally:
        box.remove(force=True)
    assert status != 0, out
    assert out.startswith("v\n"), out
    assert "Berkeley DB support for 'hash:/tmp/t' is not available" in out, out
    tls_client = ensure_tls_client_image(client, ensure_base_image(released, TRIXIE))
    proofs = prove_image(client, built.tags[0], tls_client, scratch=tmp_path, healthcheck=False)
    failed = [f"{p.name}: {p.detail}" for p in proofs if not p.ok]
    assert not failed, failed
