"""Overlay rendering and application: pure text in, text out; no dpkg-source here."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from debian.changelog import Changelog

from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TRIXIE
from builder.model.loader import load_recipe
from builder.model.recipe import Overlay, Replacement
from builder.source.package import (
    apply_maint_flags,
    apply_overlays,
    apply_postconf,
    apply_replacement,
    arch_groups,
    changelog_entry,
    dpkg_source_build_cmdline,
    release_date,
    render_overlay,
    template_environment,
)

pytestmark = pytest.mark.unit

RULES = r"""#!/usr/bin/make -f
export SHELL = /bin/sh -e

export DEB_BUILD_MAINT_OPTIONS = hardening=+all
# a comment that stays
export DEB_CPPFLAGS_MAINT_APPEND = -D_FORTIFY_SOURCE=2 \\
	-DCONTINUED
DEB_LDFLAGS_MAINT_STRIP := -Wl,-Bsymbolic-functions

include /usr/share/dpkg/buildflags.mk
CCARGS += mongoc2

override_dh_auto_build-arch:
	sed -i 's@\s\+-ffile-prefix-map=\S\+=.\s\+@ @g' conf/makedefs.out
"""
CHANGELOG = """postfix (3.11.6-1) unstable; urgency=medium

  * new upstream release

 -- Someone <someone@example.org>  Mon, 10 Aug 2026 19:05:11 +0300
"""
X86_CFLAGS = "DEB_CFLAGS_MAINT_APPEND = -O3 -fno-plt -fstack-clash-protection -fcf-protection=full"


def _render(name: str) -> str:
    recipe = load_recipe("postfix")
    overlay = next(o for o in recipe.overlays if o.template == name)
    variables = {
        "recipe": recipe,
        "target": TRIXIE,
        "hardening": recipe.hardening,
        "arch_groups": arch_groups(recipe.hardening),
        "options": recipe.template_options,
    }
    return render_overlay(template_environment(recipe), recipe, overlay, variables)


def test_cmdline() -> None:
    assert dpkg_source_build_cmdline("postfix-3.11.6") == [
        "dpkg-source",
        "--build",
        "postfix-3.11.6",
    ]


def test_arch_groups_merge_architectures_with_the_same_flags() -> None:
    groups = arch_groups(load_recipe("postfix").hardening)
    assert groups == [(("amd64", "i386"), ("-fcf-protection=full",))]


def test_hardening_block_replaces_every_maint_line() -> None:
    block = _render("rules-hardening.mk.j2")
    rules = apply_maint_flags(RULES, block, "debian/rules")
    assert rules.count("DEB_BUILD_MAINT_OPTIONS") == 1
    assert "-D_FORTIFY_SOURCE=2" not in rules
    assert "-DCONTINUED" not in rules
    assert "# a comment that stays" in rules
    for line in (
        "export DEB_BUILD_MAINT_OPTIONS = hardening=+all optimize=+lto future=+lfs",
        "export DEB_CPPFLAGS_MAINT_APPEND = -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3",
        f"export {X86_CFLAGS}",
        "export DEB_CFLAGS_MAINT_APPEND = -O3 -fno-plt -fstack-clash-protection",
        "export DEB_LDFLAGS_MAINT_APPEND = -Wl,-z,now -Wl,-z,relro -Wl,-z,noexecstack "
        "-Wl,-O1 -Wl,--as-needed",
        "ifneq (,$(filter amd64 i386,$(DEB_HOST_ARCH)))",
        "export DEB_LDFLAGS_MAINT_APPEND += -ffile-prefix-map=$(CURDIR)=.",
    ):
        assert f"\n{line}\n" in rules
    # The block sits where Debian's flags were: before buildflags.mk reads them.
    assert rules.index("DEB_BUILD_MAINT_OPTIONS") < rules.index("buildflags.mk")


@pytest.mark.integration  # make with dpkg's buildflags.mk
def test_dpkg_buildflags_gives_the_block_s_flags_with_the_build_path_mapped(
    tmp_path: Path,
) -> None:
    makefile = tmp_path / "rules"
    block = _render("rules-hardening.mk.j2")
    makefile.write_text(
        f"{block}include /usr/share/dpkg/buildflags.mk\nprint:\n\t@echo $(LDFLAGS)\n"
    )
    ldflags = subprocess.run(
        ["make", "-s", "-f", str(makefile), "print"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert f"-ffile-prefix-map={tmp_path}=." in ldflags
    assert "-Wl,-z,now" in ldflags and "-flto=auto" in ldflags


def test_rules_without_maint_lines_is_an_error() -> None:
    with pytest.raises(PfbuildError, match="no DEB_"):
        apply_maint_flags("#!/usr/bin/make -f\n%:\n\tdh $@\n", "X = 1\n", "debian/rules")


def test_postconf_sets_values_once() -> None:
    base = "# level\ncompatibility_level = 3.9\n\nbiff = no\nsmtp_x = a,\n    b\nkeep = 1\n"
    text = apply_postconf(base, "compatibility_level = 3.11\nsmtp_x = c\n")
    assert text.count("compatibility_level") == 1
    assert "compatibility_level = 3.11" in text
    assert "# level" not in text
    assert "    b" not in text
    assert "biff = no" in text
    assert "keep = 1" in text


def test_main_cf_defaults() -> None:
    main = _render("main.cf.in.j2")
    for line in (
        "compatibility_level = 3.11",
        "default_database_type = cdb",
        "default_cache_db_type = lmdb",
        "milter_default_action = shutdown",
        "disable_vrfy_command = yes",
        "strict_rfc821_envelopes = yes",
    ):
        assert f"\n{line}\n" in main
    for restriction in (
        "reject_invalid_helo_hostname",
        "reject_non_fqdn_helo_hostname",
        "reject_unknown_sender_domain",
        "reject_non_fqdn_sender",
        "reject_non_fqdn_recipient",
        "reject_unauth_destination",
        "reject_unauth_pipelining",
    ):
        assert restriction in main
    assert "hash:" not in main and "btree:" not in main
    assert "milter_default_action = accept" not in main


def test_tls_defaults_keep_the_builtin_curves_unless_asked() -> None:
    tls = _render("main.cf.tls.j2")
    for line in (
        "smtpd_tls_mandatory_protocols = >=TLSv1.2",
        "smtp_tls_mandatory_protocols = >=TLSv1.2",
        "tls_ffdhe_auto_groups = ffdhe3072 ffdhe4096",
        "tls_ssl_options = NO_COMPRESSION, NO_RENEGOTIATION, NO_TICKET",
    ):
        assert f"\n{line}\n" in tls
    assert "\ntls_eecdh_auto_curves" not in tls
    assert "X25519MLKEM768" in tls
    assert "btree:" not in tls


def test_pq_first_curve_list_is_an_option() -> None:
    recipe = load_recipe("postfix")
    eager = dataclasses.replace(
        recipe, template_options={**recipe.template_options, "send_pq_key_share_first": True}
    )
    overlay = next(o for o in eager.overlays if o.template == "main.cf.tls.j2")
    text = render_overlay(
        template_environment(eager),
        eager,
        overlay,
        {"options": eager.template_options, "recipe": eager},
    )
    assert "\ntls_eecdh_auto_curves = X25519MLKEM768 SecP256r1MLKEM768 X25519" in text


def test_undefined_template_variable_names_the_file() -> None:
    recipe = dataclasses.replace(load_recipe("postfix"), template_options={})
    overlay = next(o for o in recipe.overlays if o.template == "main.cf.tls.j2")
    with pytest.raises(PfbuildError) as err:
        render_overlay(
            template_environment(recipe), recipe, overlay, {"options": {}, "recipe": recipe}
        )
    assert "debian-templates/postfix/main.cf.tls.j2" in err.value.one_line()
    assert "UndefinedError" in err.value.one_line()


def test_replacement_must_find_its_text() -> None:
    fix = Replacement("debian/rules", "mongoc2", "libmongoc-1.0", "trixie has 1.30")
    assert "libmongoc-1.0" in apply_replacement(RULES, fix)
    with pytest.raises(PfbuildError, match="does not apply"):
        apply_replacement("nothing here", fix)


def test_changelog_entry_on_top() -> None:
    recipe = load_recipe("postfix")
    text = changelog_entry(CHANGELOG, recipe, "3.11.6-1+pf1~resolute", RESOLUTE, 1786307953)
    top = Changelog(text)[0]
    assert str(top.version) == "3.11.6-1+pf1~resolute"
    assert top.distributions == "resolute"
    assert top.author == recipe.maintainer
    assert top.date == "Sun, 09 Aug 2026 20:39:13 +0000"
    assert release_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000"
    assert [c.strip() for c in top.changes() if c.strip()] == [f"* {c}" for c in recipe.changes]
    assert str(Changelog(text)[1].version) == "3.11.6-1"


def test_apply_overlays_on_a_tree(tmp_path: Path) -> None:
    debian = tmp_path / "debian"
    debian.mkdir()
    (debian / "rules").write_text(RULES)
    (debian / "changelog").write_text(CHANGELOG)
    (debian / "main.cf.in").write_text("compatibility_level = 3.9\n")
    (debian / "main.cf.tls").write_text("smtp_tls_session_cache_database = btree:x\n")
    changes = apply_overlays(tmp_path, load_recipe("postfix"), TRIXIE, "3.11.6-1+pf1~trixie", 0)
    assert [c.path for c in changes] == [
        "debian/changelog",
        "debian/main.cf.in",
        "debian/main.cf.tls",
        "debian/rules",
    ]
    rules = (debian / "rules").read_text()
    assert "mongoc2" not in rules and "libmongoc-1.0" in rules
    assert "+CCARGS += libmongoc-1.0" in changes[-1].diff()
    assert "-f[a-z]*-prefix-map=[^[:space:]'\\'']*@@g' conf/makedefs.out" in rules


def test_overlay_outside_debian_is_refused() -> None:
    recipe = load_recipe("postfix")
    with pytest.raises(PfbuildError, match="'overlays'"):
        dataclasses.replace(recipe, overlays=(Overlay("main.cf.in.j2", "../etc/x", "replace"),))


def test_replace_overlay_may_add_a_file(tmp_path: Path) -> None:
    debian = tmp_path / "debian"
    debian.mkdir()
    (debian / "rules").write_text("#!/usr/bin/make -f\n")
    (debian / "control").write_text("Source: mimalloc\n")
    (debian / "changelog").write_text(CHANGELOG.replace("postfix", "mimalloc"))
    recipe = load_recipe("mimalloc-secure")
    changes = apply_overlays(tmp_path, recipe, RESOLUTE, "2.0.9+ds-2+pf1~resolute", 0)
    added = next(c for c in changes if c.path == "debian/libmimalloc-secure.install")
    assert added.before == ""
    assert "libmimalloc-secure.so" in (debian / "libmimalloc-secure.install").read_text()
    assert "Package: libmimalloc-secure\n" in (debian / "control").read_text()
    assert "-DMI_SECURE=ON" in (debian / "rules").read_text()
    assert Changelog((debian / "changelog").read_text()).package == "mimalloc-secure"
