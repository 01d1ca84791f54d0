"""The one table of configuration rules, and the finding each check reports."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from builder.check.config.facts import (
    COMPATIBILITY_README,
    DEPRECATION_README,
    NON_BERKELEYDB_README,
    POSTCONF_5,
    POSTFIX_DOCS,
    SPAMHAUS_EVIDENCE,
)
from builder.check.config.parse import Setting, join_list, split_list

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Rule:
    """A rule: its id, how bad a finding is, what it is about, and the documentation behind it."""

    id: str
    severity: str
    title: str
    reference: str


RULES = {
    r.id: r
    for r in (
        Rule("config-syntax", ERROR, "a line Postfix refuses to read",
             f"{POSTCONF_5}; {POSTFIX_DOCS}/master.5.html"),
        Rule("deprecated-parameter", WARNING, "a parameter postconf warns will be removed",
             DEPRECATION_README),
        Rule("unknown-parameter", WARNING,
             "a parameter this Postfix does not know (postconf -d): removed or misspelt",
             f"{DEPRECATION_README}; postconf(1) 'unused parameter'"),
        Rule("removed-restriction", ERROR,
             "an smtpd restriction removed in 3.9: smtpd answers 'server configuration error'",
             DEPRECATION_README),
        Rule("deprecated-restriction", WARNING, "an smtpd restriction postfix warns about",
             f"{DEPRECATION_README}#permit_mx_backup"),
        Rule("bdb-lookup", WARNING, "a Berkeley DB table (hash:, btree:, dbm:)",
             NON_BERKELEYDB_README),
        Rule("bdb-default-type", WARNING, "Berkeley DB as the default table type",
             NON_BERKELEYDB_README),
        Rule("non-bdb-migration", INFO, "what non_bdb_migration_level would do instead",
             f"{NON_BERKELEYDB_README}; {POSTCONF_5}#non_bdb_migration_level"),
        Rule("dnsbl-dead", WARNING, "a DNSBL zone that no longer works",
             f"{POSTFIX_DOCS}/POSTSCREEN_README.html"),
        Rule("dnsbl-unfiltered", WARNING,
             "a Spamhaus zone without a reply filter: its error replies read as 'listed'",
             SPAMHAUS_EVIDENCE),
        Rule("milter-fail-open", WARNING, "mail passes unfiltered when a milter fails",
             f"{POSTCONF_5}#milter_default_action"),
        Rule("tls-protocol-floor", WARNING, "TLS protocols below TLSv1.2 allowed",
             f"{POSTCONF_5}#smtpd_tls_protocols"),
        Rule("submission-without-tls", ERROR, "a submission service without TLS",
             f"{POSTCONF_5}#smtpd_tls_security_level"),
        Rule("sasl-before-tls", WARNING, "SASL AUTH offered before STARTTLS",
             f"{POSTCONF_5}#smtpd_tls_auth_only"),
        Rule("open-relay-mynetworks", ERROR, "mynetworks covers public or all addresses",
             f"{POSTCONF_5}#mynetworks"),
        Rule("open-relay-restrictions", ERROR,
             "relay restrictions without reject_unauth_destination",
             f"{POSTCONF_5}#smtpd_relay_restrictions"),
        Rule("compatibility-level", WARNING, "compatibility_level below 3.11",
             COMPATIBILITY_README),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Edit:
    """How a finding changes one setting, so that the findings on one line make one fix.

    Each finding's fix is the postconf command that writes the line with every edit of that
    line applied; running any of them, or all in turn, gives the same result.
    """

    name: str
    service: str  # "" for main.cf, "name/type" for a master.cf override
    value: str  # as written
    change: Callable[[str], str] | None = None  # value -> new value
    rename: str = ""  # the setting moves to this parameter
    before: tuple[str, ...] = ()  # commands to run first (postmap, postalias)
    after: str = ""  # what else to do, after the command

    @property
    def key(self) -> tuple[str, str, str]:
        """Which line this edits."""
        return (self.service, self.name, self.value)


def render_fix(own: Edit, edits: list[Edit]) -> str:
    """The commands that write `own`'s line with all `edits` applied, and what they need first."""
    value = own.value
    for edit in edits:
        if edit.change:
            value = edit.change(value)
    rename = next((e.rename for e in edits if e.rename), "")
    command = set_command(rename or own.name, value, own.service)
    if rename:
        command += f" && {remove_command(own.name, own.service)}"
    before = dict.fromkeys(b for e in edits for b in e.before)
    after = "".join(dict.fromkeys(e.after for e in edits))
    return " && ".join([*before, command]) + after


@dataclass(frozen=True)
class Finding:
    """One problem: rule, severity, the parameter, where, why, the exact fix, the reference."""

    rule: str
    severity: str
    parameter: str
    where: str
    message: str
    fix: str
    reference: str
    edit: Edit | None = field(default=None, compare=False, repr=False)

    def as_json(self) -> dict[str, str]:
        """The finding as the --json document lists it."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "parameter": self.parameter,
            "where": self.where,
            "message": self.message,
            "fix": self.fix,
            "reference": self.reference,
        }


def finding(
    rule: str,
    parameter: str,
    where: str,
    message: str,
    fix: str = "",
    reference: str = "",
    edit: Edit | None = None,
) -> Finding:
    """A finding of `rule`, with its severity from the table; `reference` adds evidence.

    Give either the `fix` text or the `edit` it comes from.
    """
    spec = RULES[rule]
    refs = spec.reference if not reference else f"{reference}; {spec.reference}"
    if edit is not None:
        fix = render_fix(edit, [edit])
    return Finding(rule, spec.severity, parameter, where, message, fix, refs, edit)


def set_command(name: str, value: str, service: str = "") -> str:
    """The postconf command that sets `name` in main.cf, or for one master.cf service.

    `postconf -P` refuses whitespace in a value ("-Pe does not accept whitespace"); such a
    master.cf setting is given as the line to write instead, in master(5)'s `{ }` form.
    """
    value = " ".join(value.split())  # continuation-line indentation means nothing in a value
    if service and " " in value:
        return f"in master.cf, write {service}'s -o {name} as: -o {{ {name} = {value} }}"
    if service:
        return f"postconf -P {shlex.quote(f'{service}/{name}={value}')}"
    return f"postconf -e {shlex.quote(f'{name} = {value}')}"


def remove_command(name: str, service: str = "") -> str:
    """The postconf command that removes `name` from main.cf, or from one service."""
    if service:
        return f"postconf -PX {shlex.quote(f'{service}/{name}')}"
    return f"postconf -X {shlex.quote(name)}"


def list_edit(setting: Setting, change: Callable[[list[str]], list[str]], after: str = "") -> Edit:
    """An edit of a list-valued setting, element by element."""
    compact = bool(setting.service)  # a master.cf -o value holds no whitespace outside { }

    def apply(value: str) -> str:
        return join_list(change(split_list(value)), compact)

    return Edit(setting.name, setting.service, setting.value, apply, after=after)
