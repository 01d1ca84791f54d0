"""The recipe model: loading by name, validation naming the field, versions, hardening data."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from builder.core.errors import PfbuildError
from builder.model.loader import available_recipes, load_recipe
from builder.model.recipe import HARDENING_PROPERTIES, Deviation

pytestmark = pytest.mark.unit


def test_both_recipes_load() -> None:
    assert {"postfix", "mimalloc-secure"} <= set(available_recipes())
    postfix = load_recipe("postfix")
    assert postfix.name == "postfix"
    assert postfix.series == "3.11"
    assert postfix.upstream is not None
    assert postfix.upstream.fingerprint == "622C7C012254C186677469C50C0B590E80CA15A7"
    assert postfix.upstream.key_path.is_file()
    assert load_recipe("mimalloc-secure").packaging["2.0.9"].suites == ("bookworm",)


def test_postfix_mirrors_list_official_before_debian() -> None:
    upstream = load_recipe("postfix").upstream
    assert upstream is not None
    first, *_, last = [m.urls("3.11.6") for m in upstream.mirrors]
    assert first == (
        "https://de.postfix.org/ftpmirror/official/postfix-3.11.6.tar.gz",
        "https://de.postfix.org/ftpmirror/official/postfix-3.11.6.tar.gz.gpg2",
    )
    assert last[0].endswith("/pool/main/p/postfix/postfix_3.11.6.orig.tar.gz")
    assert last[1].endswith(".orig.tar.gz.asc")


@pytest.mark.parametrize("version", ["3.11.0", "3.11.6", "3.11.17"])
def test_versions_in_series_pass(version: str) -> None:
    load_recipe("postfix").validate_version(version)


@pytest.mark.parametrize(
    ("version", "words"),
    [
        ("3.10.13", "outside"),
        ("3.12.0", "outside"),
        ("3.11", "malformed"),
        ("3.11.6;rm -rf /", "malformed"),
        ("../3.11.6", "malformed"),
        ("3.11.06", "malformed"),
        ("3.11.6\n", "malformed"),
    ],
)
def test_bad_versions_are_refused(version: str, words: str) -> None:
    with pytest.raises(PfbuildError) as err:
        load_recipe("postfix").validate_version(version)
    assert words in err.value.one_line()
    assert "\n" not in err.value.one_line()


def test_unknown_recipe_lists_the_known_ones() -> None:
    with pytest.raises(PfbuildError, match=r"available: .*postfix"):
        load_recipe("../postfix")
    with pytest.raises(PfbuildError, match="unknown recipe 'exim'"):
        load_recipe("exim")


def test_cet_expected_on_resolute_only() -> None:
    for name in ("postfix", "mimalloc-secure"):
        recipe = load_recipe(name)
        assert "cet" in recipe.expected_hardening["resolute"]["amd64"]
        assert "cet" not in recipe.expected_hardening["trixie"]["amd64"]
        for per_arch in recipe.expected_hardening.values():
            for props in per_arch.values():
                assert props <= set(HARDENING_PROPERTIES)


def test_x86_only_flags_apply_only_on_x86() -> None:
    flags = load_recipe("postfix").hardening
    assert "-fcf-protection=full" in flags.cflags_for("amd64")
    assert "-fcf-protection=full" not in flags.cflags_for("arm64")
    assert flags.cflags_for("arm64") == ("-O3", "-fno-plt", "-fstack-clash-protection")


def test_mongodb_package_listed_per_target() -> None:
    recipe = load_recipe("postfix")
    for target in ("trixie", "resolute"):
        assert "postfix-mongodb" in recipe.binary_packages[target]
    trixie_fix = recipe.adjustments["trixie"][0]
    assert (trixie_fix.old, trixie_fix.new) == ("mongoc2", "libmongoc-1.0")


def test_packaging_pin_for_version() -> None:
    recipe = load_recipe("postfix")
    assert recipe.packaging_for("3.11.6").version == "3.11.6-1"
    # A newer upstream of the series reuses the newest packaging not above it.
    assert recipe.packaging_for("3.11.9").version == "3.11.6-1"
    # An older point release borrows the nearest pin, and says so.
    assert recipe.packaging_for("3.11.3").version == "3.11.6-1"


def test_release_notes_say_what_is_borrowed_and_what_is_newer() -> None:
    recipe = load_recipe("postfix")
    assert recipe.release_notes("3.11.6") == ()
    assert recipe.release_notes("3.11.9") == ()
    borrowed, older = recipe.release_notes("3.11.3")
    assert "no pinned Debian packaging at or below it" in borrowed and "3.11.6-1" in borrowed
    assert "older than 3.11.6" in older and "security" in older
    # A recipe without an upstream of its own builds only what it pins, refused at once.
    companion = load_recipe("mimalloc-secure")
    with pytest.raises(PfbuildError, match="no pinned Debian source package"):
        companion.release_notes("2.0.8")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"series": "3"}, "series"),
        ({"maintainer": "nobody"}, "maintainer"),
        ({"rebuild": 0}, "rebuild"),
        ({"binary_packages": {"trixie": ("postfix",)}}, "binary_packages"),
        (
            {
                "expected_hardening": {
                    "trixie": {"amd64": frozenset({"pie", "magic"})},
                    "resolute": {},
                }
            },
            "expected_hardening",
        ),
        ({"templates": "no-such-dir"}, "templates"),
        ({"adjustments": {"bookworm": ()}}, "adjustments"),
        (
            {"autopkgtest_deviations": (Deviation("postfix", "fail", "x", "y"),)},
            "autopkgtest_deviations",
        ),
        (
            {"autopkgtest_deviations": (Deviation("postfix/test_a", "crash", "x", "y"),)},
            "autopkgtest_deviations",
        ),
        (
            {"autopkgtest_deviations": (Deviation("postfix/test_a", "fail", "(", "y"),)},
            "autopkgtest_deviations",
        ),
        (
            {"autopkgtest_deviations": (Deviation("postfix/test_a", "fail", "x", " "),)},
            "autopkgtest_deviations",
        ),
        (
            {"autopkgtest_deviations": (Deviation("postfix/test_a", "fail", "x", "y"),) * 2},
            "autopkgtest_deviations",
        ),
    ],
)
def test_bad_recipe_names_the_field(change: dict[str, object], field: str) -> None:
    recipe = load_recipe("postfix")
    with pytest.raises(PfbuildError) as err:
        dataclasses.replace(recipe, **change)  # type: ignore[arg-type]  # deliberately bad data
    assert f"field {field!r}" in err.value.one_line()


def test_bad_upstream_fingerprint_and_flags_are_refused() -> None:
    recipe = load_recipe("postfix")
    assert recipe.upstream is not None
    with pytest.raises(PfbuildError, match=r"upstream\.fingerprint"):
        dataclasses.replace(
            recipe, upstream=dataclasses.replace(recipe.upstream, fingerprint="0C0B590E80CA15A7")
        )
    bad_flags = dataclasses.replace(recipe.hardening, cflags_append=("-O2 $(shell id)",))
    with pytest.raises(PfbuildError, match="'hardening'"):
        dataclasses.replace(recipe, hardening=bad_flags)


def test_recipe_mappings_are_read_only() -> None:
    recipe = load_recipe("postfix")
    with pytest.raises(TypeError):
        recipe.binary_packages["trixie"] = ()  # type: ignore[index]  # must not be writable


@pytest.mark.integration  # make runs the rules line
def test_postfix_makedefs_scrub_removes_a_path_map_at_the_end_of_a_line(tmp_path: Path) -> None:
    from recipes.postfix import MAKEDEFS_SCRUB

    # The command runs as debian/rules runs it: a make recipe line, in the source tree.
    (tmp_path / "rules").write_text(f"all:\n\t{MAKEDEFS_SCRUB.new}\n")
    makedefs = tmp_path / "conf" / "makedefs.out"
    makedefs.parent.mkdir()
    makedefs.write_text(
        "OPT\t= -O3 -ffile-prefix-map=/build/a/postfix=. -Wl,-z,now -ffile-prefix-map=/build/a=.\n"
        "PLUGIN_LD = gcc -shared -Wl,--as-needed -ffile-prefix-map=/build/a/postfix-3.11.6=.\n"
        "EXPORT\t= CCARGS='-I.' OPT='-O3 -Wl,-O1 -ffile-prefix-map=/build/a/postfix=.' DEBUG=''\n"
        "SHLIB_CFLAGS = -fPIC -fdebug-prefix-map=/build/a/postfix-3.11.6=/usr/src/postfix -g\n"
    )
    subprocess.run(["make", "-s", "-f", "rules"], cwd=tmp_path, check=True)
    out = makedefs.read_text()
    assert "/build/" not in out
    assert "-Wl,-z,now" in out and "PLUGIN_LD = gcc -shared -Wl,--as-needed" in out
    assert "OPT='-O3 -Wl,-O1' DEBUG=''" in out
    assert "SHLIB_CFLAGS = -fPIC -g" in out
