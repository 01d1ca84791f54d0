"""Checks on what the configuration lets through: restrictions, DNSBLs, milters, TLS, SASL."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from builder.check.config.configdir import PostfixConfig, where_default
from builder.check.config.facts import (
    DEAD_ZONES,
    DEPRECATED_RESTRICTIONS,
    REMOVED_RESTRICTIONS,
    SPAMHAUS_FILTER,
    SPAMHAUS_IP_ZONES,
    DeadZone,
)
from builder.check.config.parse import (
    ARGUMENT_RESTRICTIONS,
    Service,
    Setting,
    expand,
    split_list,
    unbrace,
)
from builder.check.config.rules import Edit, Finding, finding, list_edit, set_command

RBL_ACTIONS = frozenset(a for a in ARGUMENT_RESTRICTIONS if a.startswith("reject_"))
TLS_VERSIONS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_TLS_HEX = {0x0002: 0, 0x0300: 1, 0x0301: 2, 0x0302: 3, 0x0303: 4, 0x0304: 5}
FLOOR = TLS_VERSIONS.index("TLSv1.2")
PROTOCOL_PARAMETERS = tuple(
    f"{p}_tls_{m}protocols" for p in ("smtpd", "smtp", "lmtp") for m in ("", "mandatory_")
)
SUBMISSION_PORTS = frozenset({"submission", "submissions", "smtps", "587", "465"})


def restriction_settings(cfg: PostfixConfig) -> Iterator[Setting]:
    """Settings that hold smtpd restriction lists, restriction classes included."""
    classes = set(split_list(cfg.value("smtpd_restriction_classes")))
    for setting in cfg.settings():
        if setting.name.endswith("_restrictions") or setting.name in classes:
            yield setting


def _replace_removed(tokens: list[str]) -> list[str]:
    new: list[str] = []
    for token in tokens:
        name = unbrace(token).lower()
        if name not in REMOVED_RESTRICTIONS:
            new.append(token)
            continue
        new += [r for r in split_list(REMOVED_RESTRICTIONS[name][1]) if r not in tokens]
    return new


def _drop_deprecated(tokens: list[str]) -> list[str]:
    return [t for t in tokens if unbrace(t).lower() not in DEPRECATED_RESTRICTIONS]


def check_restrictions(cfg: PostfixConfig) -> Iterator[Finding]:
    """Restrictions removed in Postfix 3.9, and permit_mx_backup."""
    for setting in restriction_settings(cfg):
        names = [unbrace(t).lower() for t in split_list(setting.value)]
        removed = [n for n in names if n in REMOVED_RESTRICTIONS]
        if removed:
            extra = " (then add reject_rbl_client ZONE for a DNSBL you trust)" if (
                "reject_maps_rbl" in removed
            ) else ""  # fmt: skip
            yield finding(
                "removed-restriction", setting.name, setting.where,
                f"{', '.join(removed)} was removed in Postfix 3.9: smtpd answers 'server "
                "configuration error' (a temporary failure) for every request that reaches it",
                edit=list_edit(setting, _replace_removed, extra),
            )  # fmt: skip
        if any(n in DEPRECATED_RESTRICTIONS for n in names):
            since, advice = DEPRECATED_RESTRICTIONS["permit_mx_backup"]
            yield finding(
                "deprecated-restriction", setting.name, setting.where,
                f"permit_mx_backup will be removed (warned since Postfix {since}): it cannot "
                "validate recipients, so Postfix accepts mail it later bounces (backscatter)",
                edit=list_edit(setting, _drop_deprecated, f", then {advice}"),
            )  # fmt: skip


def _zone(entry: str) -> str:
    """`zen.spamhaus.org=127.0.0.[2..11]*3` -> `zen.spamhaus.org`."""
    return entry.split("=", 1)[0].split("*", 1)[0].strip().lower().rstrip(".")


def dead_zone(zone: str) -> DeadZone | None:
    """The dead list `zone` belongs to, if any."""
    for base, dead in DEAD_ZONES.items():
        if zone == base or zone.endswith(f".{base}"):
            return dead
    return None


def _is_loose(entry: str) -> bool:
    """A Spamhaus IP zone with no reply filter."""
    return _zone(entry) in SPAMHAUS_IP_ZONES and "=" not in entry


def _filtered(entry: str) -> str:
    """`zen.spamhaus.org*2` -> `zen.spamhaus.org=127.0.0.[2..11]*2`."""
    zone, star, weight = entry.partition("*")
    return f"{zone}={SPAMHAUS_FILTER}{star}{weight}"


def _dnsbl_indexes(tokens: list[str], sites: bool) -> list[int]:
    """Indexes of the DNS list entries in a postscreen_dnsbl_sites or restriction list."""
    if sites:
        return list(range(len(tokens)))
    return [i + 1 for i, t in enumerate(tokens[:-1]) if t.lower() in RBL_ACTIONS]


def _drop_dead(tokens: list[str], sites: bool) -> list[str]:
    drop = {i for i in _dnsbl_indexes(tokens, sites) if dead_zone(_zone(tokens[i]))}
    if not sites:
        drop |= {i - 1 for i in drop}  # the reject_rbl_client before the zone
    return [t for i, t in enumerate(tokens) if i not in drop]


def _add_filters(tokens: list[str], sites: bool) -> list[str]:
    loose = {i for i in _dnsbl_indexes(tokens, sites) if _is_loose(tokens[i])}
    return [_filtered(t) if i in loose else t for i, t in enumerate(tokens)]


def check_dnsbls(cfg: PostfixConfig) -> Iterator[Finding]:
    """Dead DNSBL zones, and Spamhaus zones whose error replies would read as listings."""
    candidates = [s for s in cfg.settings() if s.name == "postscreen_dnsbl_sites"]
    candidates += list(restriction_settings(cfg))
    for setting in candidates:
        sites = setting.name == "postscreen_dnsbl_sites"
        tokens = split_list(setting.value)
        entries = [tokens[i] for i in _dnsbl_indexes(tokens, sites)]
        dead = [(e, d) for e in entries if (d := dead_zone(_zone(e)))]
        if dead:
            why = "; ".join(
                dict.fromkeys(f"{d.provider} ({_zone(e)}) was {d.why}" for e, d in dead)
            )
            yield finding(
                "dnsbl-dead", setting.name, setting.where,
                f"{why}: lookups cost time or, if the domain changes hands, may list everyone",
                reference="; ".join(dict.fromkeys(d.evidence for _, d in dead)),
                edit=list_edit(setting, functools.partial(_drop_dead, sites=sites)),
            )  # fmt: skip
        loose = sorted({_zone(e) for e in entries if _is_loose(e)})
        if loose:
            yield finding(
                "dnsbl-unfiltered", setting.name, setting.where,
                f"{', '.join(loose)} without a reply filter: Spamhaus answers 127.255.255.x to "
                "queries through public resolvers or over its limits, and Postfix reads that as "
                "'listed' for every client",
                edit=list_edit(setting, functools.partial(_add_filters, sites=sites)),
            )  # fmt: skip


def check_milters(cfg: PostfixConfig) -> Iterator[Finding]:
    """milter_default_action = accept (globally, per service, or per milter) with milters on."""
    contexts: list[Service | None] = [None, *cfg.master.services]
    has_milters = any(
        cfg.value(name, svc).strip()
        for name in ("smtpd_milters", "non_smtpd_milters")
        for svc in contexts
    )
    accept = re.compile(r"(default_action\s*=\s*)accept\b", re.I)
    for setting in cfg.settings():
        if setting.name == "milter_default_action" and has_milters:
            if setting.value.strip().lower() == "accept":
                yield finding(
                    "milter-fail-open", setting.name, setting.where,
                    "when a milter is down or times out, mail is accepted unfiltered (fail open)",
                    set_command(setting.name, "shutdown", setting.service),
                )  # fmt: skip
        elif setting.name in ("smtpd_milters", "non_smtpd_milters") and accept.search(
            setting.value
        ):
            change = functools.partial(accept.sub, r"\1shutdown")
            yield finding(
                "milter-fail-open", setting.name, setting.where,
                "a milter with default_action = accept passes mail unfiltered when it fails",
                edit=Edit(setting.name, setting.service, setting.value, change),
            )  # fmt: skip


def _tls_version(text: str) -> int | None:
    for i, name in enumerate(TLS_VERSIONS):
        if text.lower() == name.lower():
            return i
    try:
        return _TLS_HEX.get(int(text, 16))
    except ValueError:
        return None


def weak_protocols(value: str) -> list[str]:
    """The protocols below TLSv1.2 a `*_tls_protocols` value allows (both syntaxes)."""
    include: set[int] = set()
    exclude: set[int] = set()
    low, high = 0, len(TLS_VERSIONS) - 1
    for token in (t for t in re.split(r"[\s,:]+", value) if t):
        bound = token[:2] if token[:2] in (">=", "<=") else ""
        version = _tls_version(token[len(bound) :].lstrip("!"))
        if version is None:
            continue
        if bound == ">=":
            low = max(low, version)
        elif bound == "<=":
            high = min(high, version)
        elif token.startswith("!"):
            exclude.add(version)
        else:
            include.add(version)
    allowed = [
        v
        for v in range(len(TLS_VERSIONS))
        if (not include or v in include) and v not in exclude and low <= v <= high
    ]
    return [TLS_VERSIONS[v] for v in allowed if v < FLOOR]


def check_tls_protocols(cfg: PostfixConfig) -> Iterator[Finding]:
    """Explicit protocol settings that allow anything below TLSv1.2."""
    for setting in cfg.settings():
        if setting.name not in PROTOCOL_PARAMETERS:
            continue
        weak = weak_protocols(expand(setting.value, cfg.raw))
        if weak:
            yield finding(
                "tls-protocol-floor", setting.name, setting.where,
                f"{setting.name} = {setting.value or '(empty)'} allows {', '.join(weak)}; "
                "TLS 1.0 and 1.1 are deprecated (RFC 8996)",
                set_command(setting.name, ">=TLSv1.2", setting.service),
            )  # fmt: skip


def _tls_level(cfg: PostfixConfig, svc: Service) -> str:
    """smtpd's TLS level for `svc`, the deprecated booleans included."""
    level = cfg.value("smtpd_tls_security_level", svc).strip().lower()
    if level:
        return level
    if cfg.is_yes("smtpd_enforce_tls", svc):
        return "encrypt"
    return "may" if cfg.is_yes("smtpd_use_tls", svc) else "none"


def check_submission(cfg: PostfixConfig) -> Iterator[Finding]:
    """Submission without TLS, and SASL AUTH offered before STARTTLS."""
    for svc in cfg.smtpd_services():
        if svc.type not in ("inet", "pass") or cfg.is_yes("smtpd_tls_wrappermode", svc):
            continue
        key = svc.key if svc.line else ""
        level = _tls_level(cfg, svc)
        level_setting = cfg.setting("smtpd_tls_security_level", svc)
        where = f"master.cf:{svc.line}" if svc.line else where_default("smtpd_tls_security_level")
        if level_setting:
            where = level_setting.where
        submission = svc.type == "inet" and svc.name.rsplit(":", 1)[-1] in SUBMISSION_PORTS
        if submission and level == "none":
            yield finding(
                "submission-without-tls", "smtpd_tls_security_level", where,
                f"{svc.key} takes mail from users without TLS: passwords and mail cross the "
                "network in clear text",
                set_command("smtpd_tls_security_level", "encrypt", key),
            )  # fmt: skip
        elif (
            cfg.is_yes("smtpd_sasl_auth_enable", svc)
            and level in ("none", "may")
            and not cfg.is_yes("smtpd_tls_auth_only", svc)
        ):
            fix = set_command("smtpd_tls_auth_only", "yes", key)
            if level == "none":
                fix = f"{set_command('smtpd_tls_security_level', 'may', key)} && {fix}"
            said = [cfg.setting(n, svc) for n in ("smtpd_tls_auth_only", "smtpd_sasl_auth_enable")]
            here = [s for s in said if s and s.service]
            yield finding(
                "sasl-before-tls", "smtpd_tls_auth_only", here[0].where if here else where,
                f"{svc.key} offers SASL AUTH with smtpd_tls_security_level = {level} and "
                "smtpd_tls_auth_only = no: clients may send passwords before STARTTLS",
                fix,
            )  # fmt: skip
