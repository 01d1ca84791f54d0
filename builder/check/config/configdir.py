"""A Postfix configuration directory as read from disk, and what a real `postconf -d` knows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.check.config.facts import BUILTIN_DEFAULTS
from builder.check.config.parse import (
    MAIN_CF,
    MASTER_CF,
    MainCf,
    MasterCf,
    Problem,
    Service,
    Setting,
    expand,
    parse_main_cf,
    parse_master_cf,
)
from builder.core.errors import PfbuildError


@dataclass(frozen=True)
class Postconf:
    """The parameters a Postfix build knows, with their defaults, from `postconf -d` output."""

    defaults: dict[str, str]

    def is_known(self, name: str) -> bool:
        """Whether this Postfix has a parameter called `name`."""
        return name in self.defaults


def parse_postconf_d(text: str) -> Postconf:
    """Read `postconf -d` output (`name = value` per line; warnings and noise are skipped)."""
    return Postconf({n: s.value for n, s in parse_main_cf(text, "postconf -d").settings.items()})


@dataclass(frozen=True)
class PostfixConfig:
    """main.cf, master.cf and the defaults they fall back on, for one directory."""

    directory: Path
    main: MainCf
    master: MasterCf
    postconf: Postconf | None = None
    # Where the files named under $config_directory are read, when main.cf and master.cf
    # were copied elsewhere (the image gates a generated directory beside /etc/postfix).
    tables: Path | None = None

    @property
    def problems(self) -> tuple[Problem, ...]:
        """Lines of either file that Postfix would refuse."""
        return self.main.problems + self.master.problems

    def default(self, name: str) -> str:
        """The default of `name`: this Postfix's (postconf -d) if known, else 3.11's."""
        if self.postconf and name in self.postconf.defaults:
            return self.postconf.defaults[name]
        return BUILTIN_DEFAULTS.get(name, "")

    def raw(self, name: str) -> str:
        """main.cf's value of `name` as written, else its default; never expanded."""
        setting = self.main.settings.get(name)
        return setting.value if setting else self.default(name)

    def setting(self, name: str, service: Service | None = None) -> Setting | None:
        """The explicit setting in force: the service's `-o` override, else main.cf's."""
        if service and name in service.overrides:
            return service.overrides[name]
        return self.main.settings.get(name)

    def value(self, name: str, service: Service | None = None) -> str:
        """The expanded value of `name` for `service` (or main.cf), defaults included."""
        setting = self.setting(name, service)
        return expand(setting.value if setting else self.default(name), self.raw)

    def is_yes(self, name: str, service: Service | None = None) -> bool:
        """A boolean parameter as Postfix reads it."""
        return self.value(name, service).strip().lower() in ("yes", "true", "1")

    def settings(self) -> Iterator[Setting]:
        """Every explicit setting: main.cf's, then each service's overrides."""
        yield from self.main.settings.values()
        for service in self.master.services:
            yield from service.overrides.values()

    def smtpd_services(self) -> list[Service]:
        """master.cf's smtpd services; without a master.cf, Postfix's default `smtp inet`."""
        if not self.master.services and not self.master.problems:
            return [Service("smtp", "inet", "smtpd", 0)]
        return [s for s in self.master.services if s.command == "smtpd"]

    def local_path(self, path: str) -> Path | None:
        """Where a file named in the configuration lies in this directory, if it lies in it.

        `$config_directory/x` (default /etc/postfix/x) and relative names map into the
        directory; any other absolute path is elsewhere on the live system and cannot be read.
        """
        if not path:
            return None
        pure = PurePosixPath(path)
        config_dir = PurePosixPath(self.value("config_directory") or "/etc/postfix")
        if pure.is_absolute():
            if not pure.is_relative_to(config_dir):
                return None
            pure = pure.relative_to(config_dir)
        if ".." in pure.parts:
            return None
        return (self.tables or self.directory).joinpath(*pure.parts)


def where_default(name: str) -> str:
    """The `where` of a value that no file sets."""
    return f"{MAIN_CF} (default of {name})"


def load_config(
    directory: Path, postconf_d: str | None = None, tables: Path | None = None
) -> PostfixConfig:
    """Read main.cf (required) and master.cf (optional) from `directory`.

    The tables they name under $config_directory are read from `tables`, else `directory`.
    """
    main_path = directory / MAIN_CF
    if not main_path.is_file():
        raise PfbuildError(
            f"no {MAIN_CF} in {directory}",
            "lint-config reads a Postfix configuration directory",
            "pass the directory that holds main.cf and master.cf, e.g. /etc/postfix",
        )
    main = parse_main_cf(main_path.read_text(errors="replace"))
    master_path = directory / MASTER_CF
    master = (
        parse_master_cf(master_path.read_text(errors="replace"))
        if master_path.is_file()
        else MasterCf(())
    )
    postconf = parse_postconf_d(postconf_d) if postconf_d is not None else None
    return PostfixConfig(directory, main, master, postconf, tables)
