"""Reading Postfix's own file formats: main.cf, master.cf, `$name` expansion and list values."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

MAIN_CF = "main.cf"
MASTER_CF = "master.cf"
# main.cf names: letters, digits, underscores; per-service names may carry a service's "-" or ".".
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Past this depth a `$name` chain is a loop (Postfix itself gives up with "recursion").
MAX_EXPANSION_DEPTH = 20


@dataclass(frozen=True)
class Setting:
    """One `name = value` from main.cf, or one `-o name=value` of a master.cf service."""

    name: str
    value: str
    file: str
    line: int
    service: str = ""  # "submission/inet" for a master.cf override, "" for main.cf

    @property
    def where(self) -> str:
        """`file:line`, as a finding shows it."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """A line Postfix itself would refuse (it stops with a fatal error on these)."""

    file: str
    line: int
    message: str


@dataclass(frozen=True)
class MainCf:
    """main.cf: the last setting of each name wins, as in Postfix."""

    settings: dict[str, Setting]
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Service:
    """One master.cf service line with its `-o` overrides."""

    name: str
    type: str
    command: str
    line: int
    args: tuple[str, ...] = ()
    overrides: dict[str, Setting] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """`name/type`, the form `postconf -P` takes."""
        return f"{self.name}/{self.type}"


@dataclass(frozen=True)
class MasterCf:
    """master.cf: its services in file order."""

    services: tuple[Service, ...]
    problems: tuple[Problem, ...] = ()


def logical_lines(text: str) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """(first line number, [(line number, text), ...]) per logical line.

    A line that starts with whitespace continues the previous one; blank lines and lines whose
    first non-blank character is `#` are skipped, also between continuation lines (readlline(3)).
    """
    start = 0
    parts: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace():
            if parts:
                parts.append((number, raw))
            # else: text continuing nothing; Postfix warns and ignores it
            continue
        if parts:
            yield start, parts
        start, parts = number, [(number, raw)]
    if parts:
        yield start, parts


def parse_main_cf(text: str, file: str = MAIN_CF) -> MainCf:
    """Parse main.cf text; lines Postfix would reject become problems."""
    settings: dict[str, Setting] = {}
    problems = []
    for start, parts in logical_lines(text):
        joined = "".join(p for _, p in parts)
        name, sep, value = joined.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            got = joined.strip()
            problems.append(Problem(file, start, f"expected `name = value`, got {got!r}"))
            continue
        settings[name] = Setting(name, value.strip(), file, start)
    return MainCf(settings, tuple(problems))


def _tokens(parts: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Whitespace-separated tokens with their line; `{ ... }` (nested) is one token.

    A group may span continuation lines, so the lines are scanned as one text.
    """
    text = "".join(p for _, p in parts)  # as Postfix joins them: no separator added
    starts = []  # offset of each physical line in `text`
    offset = 0
    for _, part in parts:
        starts.append(offset)
        offset += len(part)
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        j = i
        depth = 0
        while j < len(text) and (depth or not text[j].isspace()):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        line = parts[bisect.bisect_right(starts, i) - 1][0]
        yield line, text[i:j]
        i = j


def unbrace(token: str) -> str:
    """`{ a, b }` -> `a, b`; anything else unchanged."""
    if token.startswith("{") and token.endswith("}"):
        return token[1:-1].strip()
    return token


def parse_master_cf(text: str, file: str = MASTER_CF) -> MasterCf:
    """Parse master.cf: eight fields, then the command's arguments with `-o` overrides."""
    services = []
    problems = []
    for start, parts in logical_lines(text):
        tokens = list(_tokens(parts))
        if len(tokens) < 8:
            problems.append(Problem(file, start, f"a service needs 8 fields, got {len(tokens)}"))
            continue
        name, kind = tokens[0][1], tokens[1][1]
        key = f"{name}/{kind}"
        overrides: dict[str, Setting] = {}
        args: list[str] = []
        rest = tokens[8:]
        i = 0
        while i < len(rest):
            number, word = rest[i]
            if word == "-o" and i + 1 < len(rest):
                number, pair = rest[i + 1]
                i += 2
            elif word.startswith("-o") and len(word) > 2:
                pair = word[2:]
                i += 1
            else:
                args.append(word)
                i += 1
                continue
            oname, sep, ovalue = unbrace(pair).partition("=")
            oname = oname.strip()
            if not sep or not _NAME.fullmatch(oname):
                problems.append(Problem(file, number, f"{key}: expected -o name=value"))
                continue
            overrides[oname] = Setting(oname, ovalue.strip(), file, number, key)
        services.append(Service(name, kind, tokens[7][1], start, tuple(args), overrides))
    return MasterCf(tuple(services), tuple(problems))


# Restrictions whose next list element is their argument (a table, a zone, a policy server).
ARGUMENT_RESTRICTIONS = frozenset({
    "reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_sender", "reject_rhsbl_helo",
    "reject_rhsbl_recipient", "reject_rhsbl_reverse_client", "permit_dnswl_client",
    "permit_rhswl_client",
})  # fmt: skip


def takes_argument(token: str) -> bool:
    """Is the list element after `token` its argument (`check_client_access cdb:/x`)?"""
    name = token.lower()
    return name.startswith("check_") or name in ARGUMENT_RESTRICTIONS


def join_list(tokens: list[str], compact: bool = False) -> str:
    """List elements as one value: `a, check_x cdb:/t, b`; `compact` (for master.cf -o): `a,b`."""
    out = []
    for i, token in enumerate(tokens):
        if i:
            out.append("," if compact else " " if takes_argument(tokens[i - 1]) else ", ")
        out.append(token)
    return "".join(out)


def split_list(value: str) -> list[str]:
    """A list value split on whitespace and commas; `{ ... }` groups stay whole, braces kept."""
    items = []
    i = 0
    while i < len(value):
        if value[i].isspace() or value[i] == ",":
            i += 1
            continue
        j = i
        depth = 0
        while j < len(value) and (depth or not (value[j].isspace() or value[j] == ",")):
            depth += {"{": 1, "}": -1}.get(value[j], 0)
            j += 1
        items.append(value[i:j])
        i = j
    return items


_REF = re.compile(r"\$(?:([A-Za-z0-9_]+)|\(([A-Za-z0-9_]+)\)|\{)")


def _braced_end(text: str, start: int) -> int:
    """Index just past the `}` closing the `{` before `start`, or -1."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return -1


def _conditional(body: str, lookup: Callable[[str], str], depth: int) -> str:
    """`name`, `name?text`, `name:text`, `name?{text}:{text}` inside `${...}`."""
    match = re.match(r"([A-Za-z0-9_]+)\s*([?:]?)(.*)", body, re.S)
    if not match:
        return ""
    name, op, rest = match.groups()
    value = lookup(name)
    if not op:
        return expand(value, lookup, depth + 1)
    pair = re.fullmatch(r"\s*\{(.*)\}\s*:\s*\{(.*)\}\s*", rest, re.S) if op == "?" else None
    if pair:
        chosen = pair.group(1) if value else pair.group(2)
    elif op == "?":
        chosen = unbrace(rest.strip()) if value else ""
    else:
        chosen = "" if value else unbrace(rest.strip())
    return expand(chosen, lookup, depth + 1)


def expand(value: str, lookup: Callable[[str], str], depth: int = 0) -> str:
    """Expand `$name`, `${name}`, `$(name)` and the `${name?x}` / `${name:x}` forms.

    `lookup` gives a parameter's raw value ("" when unset); expansion recurses into it.
    """
    if depth > MAX_EXPANSION_DEPTH or "$" not in value:
        return value
    out = []
    i = 0
    while True:
        match = _REF.search(value, i)
        if not match:
            out.append(value[i:])
            return "".join(out)
        out.append(value[i : match.start()])
        name = match.group(1) or match.group(2)
        if name:
            out.append(expand(lookup(name), lookup, depth + 1))
            i = match.end()
            continue
        end = _braced_end(value, match.end())
        if end < 0:
            out.append(value[match.start() :])
            return "".join(out)
        out.append(_conditional(value[match.end() : end - 1], lookup, depth))
        i = end


def referenced_names(value: str) -> set[str]:
    """Every parameter name `value` refers to with `$name`, `$(name)` or `${name...}`."""
    names = set(re.findall(r"\$([A-Za-z0-9_]+)", value))
    names |= set(re.findall(r"\$[({]([A-Za-z0-9_]+)", value))
    return names
