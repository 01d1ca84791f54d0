"""What Postfix's documentation says, as data: deprecations, compatibility levels, DNSBL zones.

Every entry names where it comes from. The deprecation list is postconf's own table
(src/postconf/postconf_unused.c in 3.11.6) as DEPRECATION_README presents it; compatibility
changes are COMPATIBILITY_README's, with postconf(5) for the new default it words loosely.
"""

from __future__ import annotations

from dataclasses import dataclass

POSTFIX_DOCS = "https://www.postfix.org"
DEPRECATION_README = f"{POSTFIX_DOCS}/DEPRECATION_README.html"
COMPATIBILITY_README = f"{POSTFIX_DOCS}/COMPATIBILITY_README.html"
NON_BERKELEYDB_README = f"{POSTFIX_DOCS}/NON_BERKELEYDB_README.html"
POSTCONF_5 = f"{POSTFIX_DOCS}/postconf.5.html"
CURRENT_LEVEL = "3.11"


@dataclass(frozen=True)
class Deprecated:
    """A parameter postconf warns about: since which release, and what to do instead."""

    since: str
    replacement: str = ""  # the parameter to set instead; "" means just remove the setting
    # old value -> new value, where the replacement takes another vocabulary
    values: tuple[tuple[str, str], ...] = ()
    note: str = ""  # when no mechanical rewrite exists

    def new_value(self, old: str) -> str:
        """The replacement's value for `old`: mapped when a mapping exists, else unchanged."""
        return dict(self.values).get(old.strip().lower(), old)


_USE_TLS = (("yes", "may"), ("no", "none"))
_ENFORCE_TLS = (("yes", "encrypt"), ("no", "may"))
_PEERNAME = (("yes", "verify"), ("no", "may"))
_PER_SITE = "the table format changed too: rewrite it as a TLS policy table (TLS_README)"


def _renamed(since: str, new: str) -> Deprecated:
    return Deprecated(since, new)


DEPRECATED: dict[str, Deprecated] = {
    # Warned about since Postfix 3.9.
    "disable_dns_lookups": Deprecated("3.9", "smtp_dns_support_level", (("yes", "disabled"),)),
    **{f"{p}_use_tls": Deprecated("3.9", f"{p}_tls_security_level", _USE_TLS)
       for p in ("lmtp", "smtp", "smtpd", "postscreen", "tlsproxy")},
    **{f"{p}_enforce_tls": Deprecated("3.9", f"{p}_tls_security_level", _ENFORCE_TLS)
       for p in ("lmtp", "smtp", "smtpd", "postscreen", "tlsproxy")},
    "tlsproxy_client_use_tls": Deprecated("3.9", "tlsproxy_client_security_level", _USE_TLS),
    "tlsproxy_client_enforce_tls": Deprecated(
        "3.9", "tlsproxy_client_security_level", _ENFORCE_TLS
    ),
    "lmtp_tls_per_site": Deprecated("3.9", "lmtp_tls_policy_maps", note=_PER_SITE),
    "smtp_tls_per_site": Deprecated("3.9", "smtp_tls_policy_maps", note=_PER_SITE),
    "tlsproxy_client_per_site": Deprecated("3.9", "tlsproxy_client_policy_maps", note=_PER_SITE),
    "smtpd_tls_dh1024_param_file": Deprecated("3.9"),
    "smtpd_tls_eecdh_grade": Deprecated("3.9"),
    # Renamed for consistency in Postfix 3.11: the old value is the new name's default for now.
    "authorized_verp_clients": _renamed("3.11", "smtpd_authorized_verp_clients"),
    "fallback_relay": _renamed("3.11", "smtp_fallback_relay"),
    "lmtp_per_record_deadline": _renamed("3.11", "lmtp_per_request_deadline"),
    "postscreen_blacklist_action": _renamed("3.11", "postscreen_denylist_action"),
    "postscreen_dnsbl_ttl": _renamed("3.11", "postscreen_dnsbl_max_ttl"),
    "postscreen_dnsbl_whitelist_threshold": _renamed(
        "3.11", "postscreen_dnsbl_allowlist_threshold"
    ),
    "postscreen_whitelist_interfaces": _renamed("3.11", "postscreen_allowlist_interfaces"),
    "smtpd_client_connection_limit_exceptions": _renamed(
        "3.11", "smtpd_client_event_limit_exceptions"
    ),
    "smtpd_per_record_deadline": _renamed("3.11", "smtpd_per_request_deadline"),
    "smtp_per_record_deadline": _renamed("3.11", "smtp_per_request_deadline"),
    "tlsproxy_client_level": _renamed("3.11", "tlsproxy_client_security_level"),
    "tlsproxy_client_policy": _renamed("3.11", "tlsproxy_client_policy_maps"),
    "virtual_maps": _renamed("3.11", "virtual_alias_maps"),
    # Deprecated in 3.11 with another vocabulary or none at all.
    "lmtp_tls_enforce_peername": Deprecated("3.11", "lmtp_tls_security_level", _PEERNAME),
    "smtp_tls_enforce_peername": Deprecated("3.11", "smtp_tls_security_level", _PEERNAME),
    "lmtp_cname_overrides_servername": Deprecated("3.11"),
    "smtp_cname_overrides_servername": Deprecated("3.11"),
}  # fmt: skip

# smtpd restrictions: removed ones make smtpd answer "server configuration error" for every
# request that reaches them; the replacement is what DEPRECATION_README recommends.
REMOVED_RESTRICTIONS = {
    "check_relay_domains": ("3.9", "permit_mynetworks, reject_unauth_destination"),
    "reject_maps_rbl": ("3.9", ""),  # needs a DNSBL zone: reject_rbl_client ZONE
    "permit_naked_ip_address": ("3.9", "permit_mynetworks, permit_sasl_authenticated"),
}
DEPRECATED_RESTRICTIONS = {"permit_mx_backup": ("3.9", "list the backup domains in relay_domains")}

# Table types backed by Berkeley DB (hash, btree) or the older dbm.
BDB_TYPES = ("hash", "btree", "dbm")
# Read-write caches: Postfix fills them itself, so no postmap; cdb is read-only, so lmdb.
CACHE_PARAMETERS = ("address_verify_map", "postscreen_cache_map")
CACHE_SUFFIX = "_cache_database"
ALIAS_PARAMETERS = ("alias_maps", "alias_database")


@dataclass(frozen=True)
class CompatChange:
    """A default that changes when compatibility_level reaches `level`."""

    level: str
    parameter: str
    old: str
    new: str


COMPAT_CHANGES = (
    CompatChange("1", "append_dot_mydomain", "yes", "no"),
    CompatChange("1", "chroot (master.cf)", "y", "n"),
    CompatChange("1", "smtpd_relay_restrictions", "(empty)",
                 "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"),
    CompatChange("1", "smtputf8_enable", "no", "yes"),
    CompatChange("2", "mynetworks_style", "subnet", "host"),
    CompatChange("2", "relay_domains", "$mydestination", "(empty)"),
    CompatChange("3.6", "smtpd_tls_fingerprint_digest", "md5", "sha256"),
    CompatChange("3.6", "smtp_tls_fingerprint_digest", "md5", "sha256"),
    CompatChange("3.6", "lmtp_tls_fingerprint_digest", "md5", "sha256"),
    CompatChange("3.6", "smtpd_relay_before_recipient_restrictions", "no", "yes"),
    CompatChange("3.6", "respectful_logging", "no", "yes"),
    CompatChange("3.11", "smtp_tlsrpt_skip_reused_handshakes", "yes", "no"),
    # COMPATIBILITY_README says "yes"; postconf(5) and the source say the new default is "may".
    CompatChange("3.11", "smtp_tls_security_level", "(empty)", "may"),
)  # fmt: skip


def compat_tuple(level: str) -> tuple[int, ...] | None:
    """`3.11` -> (3, 11, 0): levels compare by number, so 3.11 is above 3.9; None if not a level."""
    parts = level.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


@dataclass(frozen=True)
class DeadZone:
    """A DNS list that no longer answers as a DNSBL should, and who says so."""

    provider: str
    why: str
    evidence: str


# Matched on the zone and every zone below it (dnsbl.sorbs.net, spam.dnsbl.sorbs.net, ...).
# Left out for want of a source in the stored material: Lashback's UBL (ubl.unsubscore.com) and
# wildcarding SpamRats zones.
DEAD_ZONES = {
    "sorbs.net": DeadZone(
        "SORBS",
        "decommissioned by Proofpoint on 5 June 2024; its servers no longer answer",
        "https://heise.de/en/news/Blocked-out-Antispam-blocklist-SORBS-is-switched-off-9752522.html",
    ),
    "wpbl.info": DeadZone(
        "WPBL",
        "shut down in 2024; since October 2025 its name servers point at TEST-NET addresses, "
        "so every lookup times out",
        "http://wpbl.info/",
    ),
}

# Spamhaus answers 127.255.255.x for queries through public resolvers or over the free limit;
# without a reply filter Postfix takes that as "listed" and rejects everyone.
SPAMHAUS_IP_ZONES = ("zen.spamhaus.org", "sbl.spamhaus.org", "xbl.spamhaus.org",
                     "pbl.spamhaus.org", "sbl-xbl.spamhaus.org")  # fmt: skip
SPAMHAUS_FILTER = "127.0.0.[2..11]"
SPAMHAUS_EVIDENCE = "https://www.spamhaus.org/resource-hub/dnsbl/using-our-public-mirrors-check-your-return-codes-now./"

# Defaults used when no `postconf -d` output is given (Postfix 3.11's own values).
BUILTIN_DEFAULTS = {
    "compatibility_level": "0",
    "config_directory": "/etc/postfix",
    "default_database_type": "cdb",
    "default_cache_db_type": "lmdb",
    "milter_default_action": "shutdown",
    "smtpd_tls_security_level": "",
    "smtpd_use_tls": "no",
    "smtpd_enforce_tls": "no",
    "smtpd_sasl_auth_enable": "no",
    "smtpd_tls_auth_only": "no",
    "smtpd_tls_wrappermode": "no",
}
