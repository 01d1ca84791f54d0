"""Source packages with the real dpkg-source: overlays land, patches apply, output is stable."""

from __future__ import annotations

import dataclasses
import lzma
import tarfile
from pathlib import Path

import pytest

from builder import cli
from builder.core import run
from builder.core.context import Context, prepare_workspace
from builder.core.errors import PfbuildError
from builder.fetch.cache import ROLE_DEBIAN, FetchResult
from builder.fetch.sources import fetch
from builder.model.distro import TARGETS, Distribution
from builder.model.loader import load_recipe
from builder.model.recipe import Recipe
from builder.source.package import prepare_source, render_source
from tests.fixtures.sources import ORIG, file_mirror, make_test_key, offline_postfix

pytestmark = pytest.mark.integration

X86_BLOCK = (
    "export DEB_BUILD_MAINT_OPTIONS = hardening=+all optimize=+lto future=+lfs\n",
    "export DEB_CPPFLAGS_MAINT_APPEND = -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3\n",
    "export DEB_CFLAGS_MAINT_APPEND = -O3 -fno-plt -fstack-clash-protection -fcf-protection=full\n",
    "export DEB_LDFLAGS_MAINT_APPEND = -Wl,-z,now -Wl,-z,relro -Wl,-z,noexecstack -Wl,-O1 "
    "-Wl,--as-needed\n",
)


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    """The postfix recipe reading from the shared local mirror (dpkg-source is what we test)."""
    return offline_postfix((file_mirror(ORIG.parent),))


@pytest.fixture(scope="module")
def src_ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    """One workspace for the module: both targets are prepared once."""
    return Context(workspace=prepare_workspace(tmp_path_factory.mktemp("ws")))


@pytest.fixture(scope="module")
def dscs(src_ctx: Context, recipe: Recipe) -> dict[str, Path]:
    """The .dsc of every target."""
    return {name: prepare_source(src_ctx, recipe, "3.11.6", d) for name, d in TARGETS.items()}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_unpacked_result_has_our_changes(
    dscs: dict[str, Path], target: str, tmp_path: Path
) -> None:
    dsc = dscs[target]
    assert dsc.name == f"postfix_3.11.6-1+pf1~{target}.dsc"
    out = tmp_path / "x"
    # dpkg-source -x fails if any quilt patch does not apply; it also checks the upstream
    # signature (.orig.tar.gz.asc) against debian/upstream/signing-key.asc.
    log = run.output(["dpkg-source", "-x", dsc, out])
    assert "applying postfix-script-skip-symlinks.patch" in log
    applied = (out / ".pc" / "applied-patches").read_text().split()
    series = [
        p for p in (out / "debian/patches/series").read_text().split() if not p.startswith("#")
    ]
    assert applied == series
    rules = (out / "debian/rules").read_text()
    for line in X86_BLOCK:
        assert line in rules
    assert ("libmongoc-1.0" in rules) == (target == "trixie")
    top = run.output(["dpkg-parsechangelog", "-l", out / "debian/changelog", "-S", "Version"])
    assert top.strip() == f"3.11.6-1+pf1~{target}"
    assert "compatibility_level = 3.11" in (out / "debian/main.cf.in").read_text()
    report = (dsc.parent / "overlays.diff").read_text()
    assert "# debian/rules:" in report and "+export DEB_CFLAGS_MAINT_APPEND" in report


def test_second_run_is_byte_identical(
    src_ctx: Context, recipe: Recipe, dscs: dict[str, Path]
) -> None:
    target: Distribution = TARGETS["trixie"]
    folder = dscs["trixie"].parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = prepare_source(src_ctx, recipe, "3.11.6", target)
    after = {p.name: p.read_bytes() for p in again.parent.iterdir()}
    assert after == before
    assert any(name.endswith(".debian.tar.xz") for name in after)


def _broken_packaging(fetched: FetchResult, tmp: Path) -> FetchResult:
    """The same packaging with one patch that no longer fits upstream."""
    debian = fetched.get(ROLE_DEBIAN)
    tree = tmp / "deb"
    tree.mkdir()
    with tarfile.open(debian.path) as tar:
        tar.extractall(tree, filter="data")
    patch = tree / "debian/patches/50_LANG.diff"
    text = patch.read_text().splitlines(keepends=True)
    # Corrupt the context lines (not the +/- ones): the hunk cannot find its place.
    patch.write_text("".join(f" XX{line[1:]}" if line.startswith(" ") else line for line in text))
    broken = tmp / debian.name
    with lzma.open(broken, "wb") as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        tar.add(tree / "debian", arcname="debian")
    files = tuple(
        dataclasses.replace(f, path=broken) if f.role == ROLE_DEBIAN else f for f in fetched.files
    )
    return dataclasses.replace(fetched, files=files)


def test_patch_that_does_not_apply_is_named(recipe: Recipe, tmp_path: Path) -> None:
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    fetched = _broken_packaging(fetch(ctx, recipe, "3.11.6"), tmp_path)
    with pytest.raises(PfbuildError) as err:
        render_source(ctx, recipe, "3.11.6", TARGETS["trixie"], fetched)
    assert err.value.one_line().startswith("debian/patches/50_LANG.diff does not apply")
    assert not ctx.source_dir("postfix", "3.11.6", "trixie").exists()


def test_template_error_leaves_nothing(recipe: Recipe, tmp_path: Path) -> None:
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    broken = dataclasses.replace(recipe, template_options={})
    with pytest.raises(PfbuildError, match=r"debian-templates/postfix/main\.cf\.tls\.j2"):
        prepare_source(ctx, broken, "3.11.6", TARGETS["resolute"])
    assert not (ctx.workspace / "sources").exists()


def test_cli_source_one_target(
    recipe: Recipe,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("builder.commands.source.load_recipe", lambda name: recipe)
    ws = tmp_path / "ws"
    argv = ["-q", "--workspace", str(ws), "source", "postfix", "3.11.6", "--target", "resolute"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "resolute: " in out and "postfix_3.11.6-1+pf1~resolute.dsc" in out
    assert "changed debian/rules" in out
    assert sorted(p.name for p in (ws / "sources/postfix/3.11.6").iterdir()) == ["resolute"]


def test_mimalloc_secure_source(src_ctx: Context, tmp_path: Path) -> None:
    dsc = prepare_source(src_ctx, load_recipe("mimalloc-secure"), "2.0.9", TARGETS["trixie"])
    assert dsc.name == "mimalloc-secure_2.0.9+ds-2+pf1~trixie.dsc"
    out = tmp_path / "x"
    run.run(["dpkg-source", "-x", dsc, out])
    assert "\n\t-DMI_SECURE=ON \\\n" in (out / "debian/rules").read_text()
    control = (out / "debian/control").read_text()
    assert "Source: mimalloc-secure\n" in control
    assert "Package: libmimalloc-secure\n" in control
    assert "libmimalloc-secure.so" in (out / "debian/libmimalloc-secure.install").read_text()


def _relabelled(orig: Path, version: str, where: Path) -> Path:
    """`orig`'s files under postfix-`version`/: an upstream tarball of another point release."""
    where.mkdir(parents=True, exist_ok=True)
    out = where / f"postfix_{version}.orig.tar.gz"
    with tarfile.open(orig) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            _top, sep, rest = member.name.partition("/")
            member.name = f"postfix-{version}{sep}{rest}"
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out


def test_an_older_point_release_is_built_on_the_nearest_packaging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 3.11.3 is older than every pinned packaging: no network, a throwaway upstream key.
    key = make_test_key(tmp_path / "key")
    tarball = _relabelled(ORIG, "3.11.3", tmp_path / "mirror")
    key.sign(tarball, tarball.with_name(f"{tarball.name}.asc"))
    older = offline_postfix(
        (file_mirror(tarball.parent),), key=key.public, fingerprint=key.fingerprint
    )
    assert [n.split(":")[0] for n in older.release_notes("3.11.3")] == [
        "postfix 3.11.3",
        "postfix 3.11.3 is older than 3.11.6, the newest 3.11 release this recipe knows",
    ]
    ctx = Context(workspace=prepare_workspace(tmp_path / "ws"))
    dsc = prepare_source(ctx, older, "3.11.3", TARGETS["trixie"])
    # Revision 0: Debian never packaged 3.11.3 with this packaging (as for a newer upstream).
    assert dsc.name == "postfix_3.11.3-0+pf1~trixie.dsc"
    # dpkg-source, not ours, says the borrowed packaging's patches apply to 3.11.3.
    run.run(["dpkg-source", "-x", dsc, tmp_path / "x"], cwd=tmp_path)
    changelog = (tmp_path / "x" / "debian" / "changelog").read_text().splitlines()[0]
    assert changelog.startswith("postfix (3.11.3-0+pf1~trixie) trixie;"), changelog
    assert (tmp_path / "x" / "debian" / "patches" / "series").is_file()
