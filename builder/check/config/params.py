"""Checks on parameter names and table types: deprecations, unknown names, compatibility, BDB."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

from builder.check.config.configdir import Postconf, PostfixConfig, where_default
from builder.check.config.facts import (
    ALIAS_PARAMETERS,
    BDB_TYPES,
    CACHE_PARAMETERS,
    CACHE_SUFFIX,
    COMPAT_CHANGES,
    CURRENT_LEVEL,
    DEPRECATED,
    Deprecated,
    compat_tuple,
)
from builder.check.config.parse import Setting, expand, referenced_names, split_list
from builder.check.config.rules import Edit, Finding, finding, remove_command, set_command

# type:path, where the path may hold ${name} or $(name) (a `{` alone ends it: a { } group).
_BDB = re.compile(
    r"(?<![\w-])(" + "|".join(BDB_TYPES) + r"):((?:\$\{[^}]*\}|\$\([^)]*\)|[^\s,{}])+)"
)


def check_syntax(cfg: PostfixConfig) -> Iterator[Finding]:
    """Lines Postfix would stop on."""
    for problem in cfg.problems:
        yield finding(
            "config-syntax", "", f"{problem.file}:{problem.line}", problem.message,
            f"edit {problem.file} line {problem.line}: write `name = value` (master.cf: 8 "
            "fields, then `-o name=value`)",
        )  # fmt: skip


def _user_defined(cfg: PostfixConfig) -> set[str]:
    """Names Postfix accepts without knowing them: referenced as $name, or restriction classes."""
    names: set[str] = set()
    for setting in cfg.settings():
        names |= referenced_names(setting.value)
    for service in cfg.master.services:
        for arg in service.args:
            names |= referenced_names(arg)
    names.update(split_list(cfg.value("smtpd_restriction_classes")))
    return names


def _is_per_service(cfg: PostfixConfig, postconf: Postconf, name: str) -> bool:
    """`relay_destination_concurrency_limit` and the like: a service name and a default_ suffix."""
    for service in cfg.master.services:
        prefix = f"{service.name}_"
        if name.startswith(prefix) and postconf.is_known(f"default_{name[len(prefix) :]}"):
            return True
    return False


def _deprecated_fix(setting: Setting, dep: Deprecated) -> tuple[str, Edit | None]:
    """The fix text, or the edit it comes from when the setting moves to its replacement."""
    remove = remove_command(setting.name, setting.service)
    if not dep.replacement:
        return remove, None
    if dep.note:
        return f"{dep.note} in {dep.replacement}, then {remove}", None
    if dep.values and setting.value.strip().lower() not in dict(dep.values):
        return remove, None  # e.g. disable_dns_lookups = no: the replacement's default does it
    change = dep.new_value if dep.values else None
    edit = Edit(setting.name, setting.service, setting.value, change, rename=dep.replacement)
    return "", edit


def _deprecated_why(name: str, dep: Deprecated) -> str:
    instead = f"specify {dep.replacement}" if dep.replacement else "do not specify it"
    return f"support for {name} will be removed (deprecated since Postfix {dep.since}); {instead}"


def check_parameters(cfg: PostfixConfig) -> Iterator[Finding]:
    """Deprecated names always; unknown and removed names when `postconf -d` output is given."""
    postconf = cfg.postconf
    user = _user_defined(cfg) if postconf else set()
    known_names = sorted(postconf.defaults) if postconf else []
    for setting in cfg.settings():
        name = setting.name
        dep = DEPRECATED.get(name)
        if postconf is None or postconf.is_known(name):
            if dep:
                fix, edit = _deprecated_fix(setting, dep)
                yield finding(
                    "deprecated-parameter", name, setting.where, _deprecated_why(name, dep),
                    fix, edit=edit,
                )  # fmt: skip
        elif name not in user and not _is_per_service(cfg, postconf, name):
            if dep:
                why = f"this Postfix has removed {name} and ignores it; " + (
                    f"specify {dep.replacement}" if dep.replacement else "do not specify it"
                )
                fix, edit = _deprecated_fix(setting, dep)
            else:
                # Imported here: only a misspelt name needs it, and the image's gate runs at
                # every container start.
                import difflib

                close = difflib.get_close_matches(name, known_names, n=1, cutoff=0.85)
                hint = f"; did you mean {close[0]}?" if close else ""
                why = f"this Postfix has no parameter {name} and ignores the setting{hint}"
                fix, edit = remove_command(name, setting.service), None
            yield finding("unknown-parameter", name, setting.where, why, fix, edit=edit)


def check_compatibility(cfg: PostfixConfig) -> Iterator[Finding]:
    """compatibility_level below 3.11: which defaults raising it changes."""
    setting = cfg.main.settings.get("compatibility_level")
    text = cfg.value("compatibility_level")
    level = compat_tuple(text)
    current = compat_tuple(CURRENT_LEVEL)
    if level is None or current is None or level >= current:
        return
    changes = [
        c
        for c in COMPAT_CHANGES
        if (compat_tuple(c.level) or current) > level and c.parameter not in cfg.main.settings
    ]
    listed = "; ".join(f"{c.parameter}: {c.old} -> {c.new}" for c in changes)
    example = next((c for c in reversed(changes) if " " not in c.parameter), None)
    keep = ""
    if example:
        old = "" if example.old == "(empty)" else example.old
        keep = f" (to keep an old default, set it first: {set_command(example.parameter, old)})"
    yield finding(
        "compatibility-level", "compatibility_level",
        setting.where if setting else where_default("compatibility_level"),
        f"compatibility_level = {text or '0'} keeps backwards-compatible defaults; raising it to "
        f"{CURRENT_LEVEL} changes: {listed or 'nothing that main.cf does not already set'}",
        f"{set_command('compatibility_level', CURRENT_LEVEL)} && postfix reload{keep}",
    )  # fmt: skip


def _is_cache(name: str) -> bool:
    return name in CACHE_PARAMETERS or name.endswith(CACHE_SUFFIX)


def _only_db_note(cfg: PostfixConfig, kind: str, path: str) -> str:
    local = cfg.local_path(path)
    if kind == "dbm" or local is None or local.exists():
        return ""
    if not Path(f"{local}.db").exists():
        return ""
    return (
        f"; only {Path(path).name}.db is here: recover the source first with "
        f"`postmap -s {kind}:{path} > {path}`"
    )


def check_bdb(cfg: PostfixConfig) -> Iterator[Finding]:
    """hash:, btree:, dbm: tables, the default types, and the migration level's alternative."""
    db_type = cfg.value("default_database_type").strip()
    if db_type not in ("cdb", "lmdb"):
        db_type = "cdb"
    tables_found = False
    for setting in cfg.settings():
        name = setting.name
        if name in ("default_database_type", "default_cache_db_type"):
            new = "cdb" if name == "default_database_type" else "lmdb"
            if setting.value.strip() in BDB_TYPES:
                yield finding(
                    "bdb-default-type", name, setting.where,
                    f"{name} = {setting.value} makes Berkeley DB the type of every table "
                    f"created without an explicit type",
                    set_command(name, new, setting.service),
                )  # fmt: skip
            continue
        matches = list(_BDB.finditer(setting.value))
        if not matches:
            continue
        tables_found = True
        target = "lmdb" if _is_cache(name) else db_type
        commands = []
        notes = []
        if not _is_cache(name):
            tool = "postalias" if name in ALIAS_PARAMETERS else "postmap"
            for match in matches:
                path = expand(match.group(2), cfg.raw)
                commands.append(f"{tool} {target}:{path}")
                notes.append(_only_db_note(cfg, match.group(1), path))
        change = functools.partial(_BDB.sub, rf"{target}:\2")
        before = tuple(dict.fromkeys(commands))
        edit = Edit(name, setting.service, setting.value, change, before=before)
        tables = ", ".join(dict.fromkeys(m.group(0) for m in matches))
        why = (
            "a cache Postfix writes itself; lmdb replaces btree (cdb is read-only)"
            if _is_cache(name)
            else f"convert each table to {target}"
        )
        yield finding(
            "bdb-lookup", name, setting.where,
            f"{tables} uses Berkeley DB, which the distributions are removing: {why}"
            + "".join(dict.fromkeys(notes)),
            edit=edit,
        )  # fmt: skip
    if tables_found and "non_bdb_migration_level" not in cfg.main.settings:
        yield finding(
            "non-bdb-migration", "non_bdb_migration_level",
            where_default("non_bdb_migration_level"),
            "instead of editing each line, non_bdb_migration_level = enable-redirect opens hash: "
            f"tables as $default_database_type ({db_type}) and btree: as $default_cache_db_type "
            "(lmdb) (you still run postmap/postalias); enable-reindex also runs those for you, "
            "but is meant to be temporary (postconf(5): a privilege-escalation risk if left on); "
            "either leaves hash:/btree: in the configuration as technical debt",
            "postfix non-bdb enable-redirect && postfix reload (an interim step; the bdb-lookup "
            "fixes are the lasting ones)",
        )  # fmt: skip
