"""Open relay: mynetworks that trust the Internet, relay rules that never refuse."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from builder.check.config.configdir import PostfixConfig, where_default
from builder.check.config.facts import compat_tuple
from builder.check.config.parse import (
    Service,
    Setting,
    expand,
    logical_lines,
    split_list,
    unbrace,
)
from builder.check.config.rules import Edit, Finding, finding, list_edit

# Restrictions that end relay decisions for whoever gets past the permits before them.
CLOSERS = frozenset({
    "reject_unauth_destination", "defer_unauth_destination", "reject", "defer", "defer_if_permit",
})  # fmt: skip
DEFAULT_RELAY = "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
# Wider than this is "a lot of the Internet" for a non-private prefix.
WIDEST_PREFIX = {4: 24, 6: 48}
_NETWORK = re.compile(r"\[?([0-9A-Fa-f:.]+)\]?(?:/(\d+))?")


@dataclass(frozen=True)
class Network:
    """One mynetworks entry: its text, and the file line it came from ("" when inline)."""

    text: str
    source: str = ""


def _table_entries(cfg: PostfixConfig, path: str, cidr: bool) -> list[Network]:
    """Patterns of a mynetworks file (`/file`) or the keys of a `cidr:` table in the directory."""
    local = cfg.local_path(path)
    if local is None or not local.is_file():
        return []
    entries = []
    for line, parts in logical_lines(local.read_text(errors="replace")):
        text = " ".join(p for _, p in parts)
        items = split_list(text)[:1] if cidr else split_list(text)
        entries += [Network(item, f"{path}:{line}") for item in items]
    return entries


def network_entries(cfg: PostfixConfig, value: str) -> list[Network]:
    """The address patterns of an expanded mynetworks value, files and cidr tables read."""
    found = []
    for token in split_list(value):
        if token.startswith("/"):
            found += _table_entries(cfg, token, cidr=False)
        elif token.startswith("cidr:"):
            found += _table_entries(cfg, token[len("cidr:") :], cidr=True)
        else:
            found.append(Network(token))
    return found


def is_too_wide(text: str) -> bool:
    """All addresses, or a public prefix wider than /24 (IPv4) or /48 (IPv6)."""
    match = _NETWORK.fullmatch(text.strip())
    if not match:
        return False  # a host name, a !exclusion, a table of another type: not an address
    address, prefix = match.groups()
    try:
        net = ipaddress.ip_network(f"{address}/{prefix}" if prefix else address, strict=False)
    except ValueError:
        return False
    if net.prefixlen == 0:
        return True
    if net.is_private or net.is_loopback or net.is_link_local:
        return False
    return net.prefixlen < WIDEST_PREFIX[net.version]


def check_mynetworks(cfg: PostfixConfig) -> Iterator[Finding]:
    """mynetworks (main.cf or a service's) trusting public or all addresses."""
    for setting in cfg.settings():
        if setting.name != "mynetworks":
            continue
        entries = network_entries(cfg, expand(setting.value, cfg.raw))
        wide = [e for e in entries if is_too_wide(e.text)]
        if not wide:
            continue
        in_files = [f"remove {e.text} from {e.source.rsplit(':', 1)[0]}" for e in wide if e.source]
        shown = ", ".join(e.text + (f" ({e.source})" if e.source else "") for e in wide)
        message = (
            f"mynetworks trusts {shown}: permit_mynetworks lets anyone there relay mail "
            "through this server"
        )
        if any(not e.source for e in wide):
            after = "".join(f" && {f}" for f in in_files)
            edit = Edit("mynetworks", setting.service, setting.value, _narrowing(cfg), after=after)
            yield finding("open-relay-mynetworks", "mynetworks", setting.where, message, edit=edit)
        else:
            fix = " && ".join(in_files)
            yield finding("open-relay-mynetworks", "mynetworks", setting.where, message, fix)


# What is left when every entry was too wide: this host only (mynetworks_style = host).
LOOPBACK_ONLY = "127.0.0.0/8 [::1]/128"


def _narrowing(cfg: PostfixConfig) -> Callable[[str], str]:
    """value -> the value expanded, without the too-wide address entries written in it."""

    def narrow(value: str) -> str:
        kept = [t for t in split_list(expand(value, cfg.raw)) if not is_too_wide(t)]
        return " ".join(kept) or LOOPBACK_ONLY

    return narrow


def _is_closed(tokens: list[str]) -> bool:
    """Does the list refuse unauthorized relaying before any unconditional `permit`?"""
    for token in tokens:
        name = unbrace(token).lower()
        if name in CLOSERS:
            return True
        if name == "permit":
            return False
    return False


def _closed(tokens: list[str]) -> list[str]:
    """`tokens` with reject_unauth_destination before the first bare `permit` (or at the end)."""
    if _is_closed(tokens):
        return tokens
    names = [unbrace(t).lower() for t in tokens]
    at = names.index("permit") if "permit" in names else len(tokens)
    return [*tokens[:at], "reject_unauth_destination", *tokens[at:]]


def check_relay_restrictions(cfg: PostfixConfig) -> Iterator[Finding]:
    """smtpd_relay_restrictions (or, when empty, smtpd_recipient_restrictions) that relay."""
    level = compat_tuple(cfg.value("compatibility_level")) or (0, 0, 0)
    contexts: list[Service | None] = [None]
    contexts += [
        s
        for s in cfg.smtpd_services()
        if {"smtpd_relay_restrictions", "smtpd_recipient_restrictions"} & set(s.overrides)
    ]
    for svc in contexts:
        relay = cfg.setting("smtpd_relay_restrictions", svc)
        if relay is not None:
            relay_value = expand(relay.value, cfg.raw)
        else:
            relay_value = "" if level < (1, 0, 0) else DEFAULT_RELAY
        name = "smtpd_relay_restrictions"
        setting = relay
        tokens = split_list(relay_value)
        context = "relay restrictions"
        if not tokens:
            name = "smtpd_recipient_restrictions"
            setting = cfg.setting(name, svc)
            tokens = split_list(cfg.value(name, svc))
            context = (
                "smtpd_relay_restrictions is empty, so the recipient restrictions decide; they"
            )
        if _is_closed(tokens):
            continue
        if svc and (setting is None or setting.service != svc.key):
            continue  # the same main.cf list, already reported for main.cf
        if setting is None:  # an empty default: Postfix itself refuses to start
            setting = Setting(name, "", "main.cf", 0)
        where = setting.where if setting.line else where_default(name)
        who = f" for {svc.key}" if svc else ""
        yield finding(
            "open-relay-restrictions", name, where,
            f"{context}{who} never reach reject_unauth_destination or defer_unauth_destination "
            "before an unconditional permit: anyone can relay mail through this server",
            edit=list_edit(setting, _closed),
        )  # fmt: skip
