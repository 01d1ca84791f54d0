"""The configuration gate's rules on the fixture configurations: which fire, with which fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.check.config.configdir import load_config, parse_postconf_d
from builder.check.config.facts import DEAD_ZONES, DEPRECATED, compat_tuple
from builder.check.config.lint import ConfigReport, lint_config
from builder.check.config.relay import is_too_wide
from builder.check.config.rules import RULES, SEVERITIES
from builder.check.config.security import weak_protocols

pytestmark = pytest.mark.unit

CONFIGS = Path(__file__).resolve().parents[2] / "data" / "postfix-configs"
POSTCONF_D = (CONFIGS / "postconf-d-3.11.txt").read_text()


def lint(name: str, postconf_d: str | None = POSTCONF_D) -> ConfigReport:
    return lint_config(CONFIGS / name, postconf_d)


def rule_ids(report: ConfigReport) -> set[str]:
    return {f.rule for f in report.findings}


def write_config(root: Path, main: str, master: str | None = None) -> Path:
    root.mkdir(exist_ok=True)
    (root / "main.cf").write_text(main)
    if master is not None:
        (root / "master.cf").write_text(master)
    return root


# For every rule: a fixture where it fires, and one where it does not.
FIRES_IN = {
    "config-syntax": ("old-3.6", "clean-3.11"),
    "deprecated-parameter": ("old-3.6", "clean-3.11"),
    "unknown-parameter": ("old-3.6", "master-overrides"),
    "removed-restriction": ("old-3.6", "clean-3.11"),
    "deprecated-restriction": ("old-3.6", "open-relay"),
    "bdb-lookup": ("master-overrides", "clean-3.11"),
    "bdb-default-type": ("old-3.6", "clean-3.11"),
    "non-bdb-migration": ("master-overrides", "open-relay"),
    "dnsbl-dead": ("old-3.6", "clean-3.11"),
    "dnsbl-unfiltered": ("old-3.6", "clean-3.11"),
    "milter-fail-open": ("old-3.6", "clean-3.11"),
    "tls-protocol-floor": ("master-overrides", "clean-3.11"),
    "submission-without-tls": ("master-overrides", "clean-3.11"),
    "sasl-before-tls": ("master-overrides", "clean-3.11"),
    "open-relay-mynetworks": ("open-relay", "clean-3.11"),
    "open-relay-restrictions": ("open-relay", "master-overrides"),
    "compatibility-level": ("old-3.6", "open-relay"),
}


def test_the_rule_table_is_complete() -> None:
    assert set(FIRES_IN) == set(RULES)
    for rule in RULES.values():
        assert rule.severity in SEVERITIES
        assert rule.reference.startswith("https://"), rule.id


@pytest.mark.parametrize("rule", sorted(FIRES_IN))
def test_each_rule_fires_in_one_fixture_and_not_in_another(rule: str) -> None:
    fires, quiet = FIRES_IN[rule]
    assert rule in rule_ids(lint(fires))
    assert rule not in rule_ids(lint(quiet))


def test_clean_configuration_has_no_finding() -> None:
    assert lint("clean-3.11").findings == ()
    assert lint("clean-3.11", postconf_d=None).findings == ()


def test_old_configuration_fires_every_rule() -> None:
    assert rule_ids(lint("old-3.6")) == set(RULES)


RECIPIENT_FIX = (
    "postmap cdb:/etc/postfix/access && postconf -e 'smtpd_recipient_restrictions = "
    "permit_mynetworks, permit_sasl_authenticated, check_client_access cdb:/etc/postfix/access, "
    "reject_unauth_destination, reject_rbl_client zen.spamhaus.org=127.0.0.[2..11]', then list "
    "the backup domains in relay_domains"
)
OLD_FIXES = {
    ("config-syntax", ""): "edit main.cf line 4: write `name = value` (master.cf: 8 fields, "
    "then `-o name=value`)",
    ("open-relay-mynetworks", "mynetworks"): "postconf -e 'mynetworks = 127.0.0.0/8'",
    ("removed-restriction", "smtpd_recipient_restrictions"): RECIPIENT_FIX,
    ("deprecated-restriction", "smtpd_recipient_restrictions"): RECIPIENT_FIX,
    ("dnsbl-dead", "smtpd_recipient_restrictions"): RECIPIENT_FIX,
    ("dnsbl-unfiltered", "smtpd_recipient_restrictions"): RECIPIENT_FIX,
    ("bdb-lookup", "smtpd_recipient_restrictions"): RECIPIENT_FIX,
    ("submission-without-tls", "smtpd_tls_security_level"):
        "postconf -P submission/inet/smtpd_tls_security_level=encrypt",
    ("open-relay-restrictions", "smtpd_relay_restrictions"): "postconf -P "
    "submission/inet/smtpd_relay_restrictions=permit_sasl_authenticated,reject_unauth_destination,"
    "permit",
    ("compatibility-level", "compatibility_level"): "postconf -e 'compatibility_level = 3.11' && "
    "postfix reload (to keep an old default, set it first: postconf -e "
    "'smtp_tls_security_level = ')",
    ("bdb-default-type", "default_database_type"): "postconf -e 'default_database_type = cdb'",
    ("bdb-lookup", "alias_maps"):
        "postalias cdb:/etc/aliases && postconf -e 'alias_maps = cdb:/etc/aliases'",
    ("bdb-lookup", "alias_database"):
        "postalias cdb:/etc/aliases && postconf -e 'alias_database = cdb:/etc/aliases'",
    ("bdb-lookup", "virtual_maps"): "postmap cdb:/etc/postfix/virtual && postconf -e "
    "'virtual_alias_maps = cdb:/etc/postfix/virtual' && postconf -X virtual_maps",
    ("deprecated-parameter", "virtual_maps"): "postmap cdb:/etc/postfix/virtual && postconf -e "
    "'virtual_alias_maps = cdb:/etc/postfix/virtual' && postconf -X virtual_maps",
    ("bdb-lookup", "smtp_tls_session_cache_database"):
        "postconf -e 'smtp_tls_session_cache_database = lmdb:${data_directory}/smtp_scache'",
    ("deprecated-parameter", "smtpd_use_tls"):
        "postconf -e 'smtpd_tls_security_level = may' && postconf -X smtpd_use_tls",
    ("deprecated-parameter", "smtpd_tls_eecdh_grade"): "postconf -X smtpd_tls_eecdh_grade",
    ("unknown-parameter", "smtpd_tls_cipherlist"): "postconf -X smtpd_tls_cipherlist",
    ("tls-protocol-floor", "smtpd_tls_protocols"): "postconf -e 'smtpd_tls_protocols = >=TLSv1.2'",
    ("tls-protocol-floor", "smtp_tls_protocols"): "postconf -e 'smtp_tls_protocols = >=TLSv1.2'",
    ("unknown-parameter", "smtpd_tls_securty_level"): "postconf -X smtpd_tls_securty_level",
    ("deprecated-parameter", "smtp_per_record_deadline"): "postconf -e "
    "'smtp_per_request_deadline = yes' && postconf -X smtp_per_record_deadline",
    ("deprecated-parameter", "fallback_relay"): "postconf -e "
    "'smtp_fallback_relay = [relay.example.net]' && postconf -X fallback_relay",
    ("dnsbl-dead", "postscreen_dnsbl_sites"): "postconf -e 'postscreen_dnsbl_sites = "
    "zen.spamhaus.org=127.0.0.[2..11]*3, b.barracudacentral.org*2'",
    ("dnsbl-unfiltered", "postscreen_dnsbl_sites"): "postconf -e 'postscreen_dnsbl_sites = "
    "zen.spamhaus.org=127.0.0.[2..11]*3, b.barracudacentral.org*2'",
    ("deprecated-parameter", "postscreen_dnsbl_ttl"):
        "postconf -e 'postscreen_dnsbl_max_ttl = 1h' && postconf -X postscreen_dnsbl_ttl",
    ("deprecated-parameter", "postscreen_blacklist_action"): "postconf -e "
    "'postscreen_denylist_action = drop' && postconf -X postscreen_blacklist_action",
    ("milter-fail-open", "milter_default_action"):
        "postconf -e 'milter_default_action = shutdown'",
    ("sasl-before-tls", "smtpd_tls_auth_only"): "postconf -P smtp/inet/smtpd_tls_auth_only=yes",
    ("non-bdb-migration", "non_bdb_migration_level"): "postfix non-bdb enable-redirect && "
    "postfix reload (an interim step; the bdb-lookup fixes are the lasting ones)",
}  # fmt: skip


def test_old_configuration_findings_carry_the_exact_fix() -> None:
    report = lint("old-3.6")
    assert {(f.rule, f.parameter): f.fix for f in report.findings} == OLD_FIXES
    assert len(report.findings) == len(OLD_FIXES)
    where = {(f.rule, f.parameter): f.where for f in report.findings}
    assert where[("submission-without-tls", "smtpd_tls_security_level")] == "master.cf:4"
    assert where[("deprecated-parameter", "fallback_relay")] == "main.cf:27"


def test_old_configuration_messages_say_why() -> None:
    by_key = {(f.rule, f.parameter): f for f in lint("old-3.6").findings}
    dead = by_key[("dnsbl-dead", "postscreen_dnsbl_sites")]
    assert "SORBS (dnsbl.sorbs.net)" in dead.message and "WPBL (db.wpbl.info)" in dead.message
    assert DEAD_ZONES["sorbs.net"].evidence in dead.reference
    bdb = by_key[("bdb-lookup", "smtpd_recipient_restrictions")]
    assert "only access.db is here" in bdb.message
    assert "postmap -s hash:/etc/postfix/access > /etc/postfix/access" in bdb.message
    compat = by_key[("compatibility-level", "compatibility_level")].message
    assert "smtp_tlsrpt_skip_reused_handshakes: yes -> no" in compat
    assert "smtp_tls_security_level: (empty) -> may" in compat
    assert "smtpd_relay_before_recipient_restrictions" not in compat  # a 3.6 change, in force
    typo = by_key[("unknown-parameter", "smtpd_tls_securty_level")].message
    assert "did you mean smtpd_tls_security_level?" in typo
    assert "did you mean" not in by_key[("unknown-parameter", "smtpd_tls_cipherlist")].message


def test_open_relay_findings() -> None:
    report = lint("open-relay")
    assert rule_ids(report) == {"open-relay-mynetworks", "open-relay-restrictions"}
    assert all(f.severity == "error" for f in report.findings)
    mynetworks, restrictions = report.findings
    assert "0.0.0.0/0" in mynetworks.message
    assert "80.0.0.0/12 (/etc/postfix/trusted_networks:3)" in mynetworks.message
    assert "192.168.0.0/16" not in mynetworks.message
    assert mynetworks.fix == (
        "postconf -e 'mynetworks = 127.0.0.0/8 /etc/postfix/trusted_networks' && remove "
        "80.0.0.0/12 from /etc/postfix/trusted_networks"
    )
    assert restrictions.parameter == "smtpd_recipient_restrictions"
    assert restrictions.fix == (
        "postconf -e 'smtpd_recipient_restrictions = permit_mynetworks, "
        "permit_sasl_authenticated, reject_unauth_destination, permit'"
    )


def test_master_overrides_findings() -> None:
    report = lint("master-overrides")
    found = {(f.rule, f.where): f.fix for f in report.findings}
    assert found == {
        ("submission-without-tls", "master.cf:4"):
            "postconf -P submission/inet/smtpd_tls_security_level=encrypt",
        ("sasl-before-tls", "master.cf:15"): "postconf -P 10587/inet/smtpd_tls_auth_only=yes",
        ("bdb-lookup", "master.cf:6"): "postmap cdb:/etc/postfix/mua_access && in master.cf, "
        "write submission/inet's -o smtpd_client_restrictions as: -o { smtpd_client_restrictions "
        "= check_client_access cdb:/etc/postfix/mua_access, permit_sasl_authenticated, reject }",
        ("bdb-lookup", "master.cf:17"): "postconf -P "
        "'relay/unix/smtp_tls_session_cache_database=lmdb:$data_directory/relay_scache'",
        ("tls-protocol-floor", "master.cf:18"):
            "postconf -P 'relay/unix/smtp_tls_protocols=>=TLSv1.2'",
        ("non-bdb-migration", "main.cf (default of non_bdb_migration_level)"):
            "postfix non-bdb enable-redirect && postfix reload (an interim step; the bdb-lookup "
            "fixes are the lasting ones)",
    }  # fmt: skip


def test_postconf_d_output_is_read_with_its_noise() -> None:
    known = parse_postconf_d("postconf: warning: x\nmyhostname = a.example\nbiff = no\n")
    assert known.defaults == {"myhostname": "a.example", "biff": "no"}
    assert known.is_known("biff") and not known.is_known("smtpd_tls_cipherlist")


def test_a_parameter_this_postfix_has_removed_is_an_unknown_parameter() -> None:
    lines = POSTCONF_D.splitlines()
    later = "\n".join(line for line in lines if not line.startswith("fallback_relay"))
    found = [f for f in lint("old-3.6", later).findings if f.parameter == "fallback_relay"]
    assert [f.rule for f in found] == ["unknown-parameter"]
    assert "this Postfix has removed fallback_relay" in found[0].message
    assert found[0].fix.endswith("postconf -X fallback_relay")


def test_unknown_names_need_postconf_d_and_spare_user_defined_ones(tmp_path: Path) -> None:
    assert "unknown-parameter" not in rule_ids(lint("old-3.6", postconf_d=None))
    root = write_config(
        tmp_path / "c",
        "compatibility_level = 3.11\nmy_nets = 10.0.0.0/8\nmynetworks = $my_nets\n"
        "smtpd_restriction_classes = mx_only\nmx_only = permit\n"
        "dovecot_destination_recipient_limit = 1\nrelay_domains = nothing_known\n",
        "dovecot unix - n n - - pipe\n  argv=/x ${helper_path}\n",
    )
    (tmp_path / "c" / "main.cf").write_text(
        (root / "main.cf").read_text() + "helper_path = /usr/bin/x\nstray_setting = 1\n"
    )
    report = lint_config(root, POSTCONF_D)
    assert [(f.rule, f.parameter) for f in report.findings] == [
        ("unknown-parameter", "stray_setting")
    ]


def test_deprecated_parameters_in_master_cf_move_with_postconf_p(tmp_path: Path) -> None:
    root = write_config(
        tmp_path / "c",
        "compatibility_level = 3.11\n",
        "relay unix - - n - - smtp\n  -o fallback_relay=[backup.example]\n"
        "  -o smtp_tls_enforce_peername=yes\n",
    )
    fixes = {f.parameter: f.fix for f in lint_config(root, POSTCONF_D).findings}
    assert fixes == {
        "fallback_relay": "postconf -P 'relay/unix/smtp_fallback_relay=[backup.example]' && "
        "postconf -PX relay/unix/fallback_relay",
        "smtp_tls_enforce_peername": "postconf -P relay/unix/smtp_tls_security_level=verify && "
        "postconf -PX relay/unix/smtp_tls_enforce_peername",
    }


def test_the_deprecation_table_matches_postconf() -> None:
    renamed_in_3_11 = {n for n, d in DEPRECATED.items() if d.since == "3.11" and d.replacement}
    assert len(renamed_in_3_11) == 15  # 13 renames, 2 *_tls_enforce_peername -> security level
    assert DEPRECATED["smtpd_tls_eecdh_grade"].replacement == ""
    assert DEPRECATED["tlsproxy_client_use_tls"].replacement == "tlsproxy_client_security_level"


@pytest.mark.parametrize(
    ("value", "weak"),
    [
        (">=TLSv1.2", []),
        (">=TLSv1.2, <=TLSv1.3", []),
        (">=0x0303", []),
        ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", []),
        ("TLSv1.2 TLSv1.3", []),
        (">=TLSv1", ["TLSv1", "TLSv1.1"]),
        (">=0301", ["TLSv1", "TLSv1.1"]),
        ("!SSLv2, !SSLv3", ["TLSv1", "TLSv1.1"]),
        ("!SSLv2:!SSLv3:!TLSv1", ["TLSv1.1"]),
        ("", ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"]),
        (">=TLSv1, <=TLSv1.1", ["TLSv1", "TLSv1.1"]),
    ],
)
def test_weak_protocols_in_both_syntaxes(value: str, weak: list[str]) -> None:
    assert weak_protocols(value) == weak


@pytest.mark.parametrize(
    ("entry", "wide"),
    [
        ("0.0.0.0/0", True),
        ("[::]/0", True),
        ("11.0.0.0/8", True),
        ("80.0.0.0/23", True),
        ("80.0.0.0/24", False),
        ("10.0.0.0/8", False),
        ("192.168.0.0/16", False),
        ("127.0.0.0/8", False),
        ("[::1]/128", False),
        ("[fe80::]/10", False),
        ("[2a00::]/16", True),
        ("[2a00:1450::]/48", False),
        ("!192.168.1.1", False),
        ("mail.example.com", False),
        ("198.51.100.7", False),
    ],
)
def test_too_wide_networks(entry: str, wide: bool) -> None:
    assert is_too_wide(entry) is wide


@pytest.mark.parametrize(
    ("main", "fires"),
    [
        # compatibility_level 0: smtpd_relay_restrictions defaults to empty
        ("smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n", False),
        ("smtpd_recipient_restrictions = permit_mynetworks, permit\n", True),
        ("smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n", False),
        ("compatibility_level = 3.11\n", False),  # the default relay list defers
        ("compatibility_level = 3.11\nsmtpd_relay_restrictions = permit_mynetworks\n", True),
    ],
)
def test_relay_restrictions(tmp_path: Path, main: str, fires: bool) -> None:
    report = lint_config(write_config(tmp_path / "c", main), None)
    assert ("open-relay-restrictions" in rule_ids(report)) is fires


def test_milter_accept_per_milter_and_without_milters(tmp_path: Path) -> None:
    main = "compatibility_level = 3.11\nmilter_default_action = accept\n"
    root = write_config(tmp_path / "c", main)
    assert lint_config(root, None).findings == ()  # no milter: nothing fails open
    root = write_config(
        tmp_path / "d",
        "compatibility_level = 3.11\n"
        "smtpd_milters = { inet:127.0.0.1:8891, default_action = accept }\n",
    )
    (found,) = lint_config(root, None).findings
    assert found.rule == "milter-fail-open"
    assert found.fix == (
        "postconf -e 'smtpd_milters = { inet:127.0.0.1:8891, default_action = shutdown }'"
    )


def test_a_directory_without_main_cf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"no main\.cf in"):
        load_config(tmp_path)


def test_compatibility_levels_compare_as_numbers() -> None:
    assert compat_tuple("3.11") > compat_tuple("3.9") > compat_tuple("2")  # type: ignore[operator]
    assert compat_tuple("9999") == (9999, 0, 0)
    assert compat_tuple("${x}") is None


def test_a_mynetworks_of_only_wide_entries_narrows_to_this_host(tmp_path: Path) -> None:
    root = write_config(tmp_path / "c", "compatibility_level = 3.11\nmynetworks = 0.0.0.0/0\n")
    found = [f for f in lint_config(root).findings if f.rule == "open-relay-mynetworks"]
    assert [f.fix for f in found] == ["postconf -e 'mynetworks = 127.0.0.0/8 [::1]/128'"]
