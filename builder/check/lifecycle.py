"""Install, upgrade and purge of our packages as piuparts does them, in testbeds of each target.

piuparts makes its own chroots, or containers on the engine's default bridge network, which
this host's dockerd does not have (`--bridge=none`); so its steps run here in testbed containers
(testbed.py) with no network, named after piuparts' own:

- install: on a clean system, our packages' dependencies first and a snapshot of the file
  system, then our packages; postfix starts and stops.
- upgrade-from-distro: the distribution's own postfix (installed when the testbed was made) is
  set up by an admin: main.cf edited with postconf, /etc/aliases as a hash: table (cdb: for a
  build without Berkeley DB, which has no hash:), a cdb: virtual map, a regexp: header_checks
  table that puts a message on hold; the message is queued, postfix stopped and our packages
  installed over it. The admin's files must keep their sha256, the settings and maps answer
  the same, the held message still be queued, and postfix start and deliver it.
- upgrade-from-previous: the same from our previous revision (+pf1) to the next (+pf2). Only
  one revision is built, so the +pf2 packages are the same binaries relabelled inside the
  testbed (dpkg-deb -R, Version and the exact-version relations between our packages changed,
  dpkg-deb -b): what is under test is the maintainer scripts' upgrade path, not new code.
- purge: our packages removed, then purged; the file system is compared with the snapshot
  taken before the install. Nothing may be left but the admin's own files and what Debian's
  packaging leaves on purpose (DEBIAN_LEFTOVERS, named in the notes of every run), and nothing
  that was there before may be gone.

Each claim is printed in the container by a standard tool (dpkg-query, sha256sum, postconf,
postmap, postalias, postqueue -j, postfix status, find, comm) between markers and judged here.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

from debian.debfile import DebFile

from builder.check.testbed import DEBS_MOUNT, ensure_testbed, package_debs, run_in_testbed
from builder.core.atomic import write_text
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

LIFECYCLE_JSON = "lifecycle.json"
CLEAN_LOG = "lifecycle-clean.log"
DISTRO_LOG = "lifecycle-distro.log"
TIMEOUT = 900.0
# The distribution's postfix and its cdb: map type, a package apart before Debian's 3.11.2-1.
DISTRO_TOOLS = ("postfix", "postfix-cdb")
SCRATCH = "/pfbuild-lifecycle"
TOKEN = "pfbuild-lifecycle-hold"  # noqa: S105 - a mail subject, not a secret

INSTALL = "install"
UPGRADE_DISTRO = "upgrade-from-distro"
UPGRADE_PREVIOUS = "upgrade-from-previous"
PURGE = "purge"

ALIAS_TYPES = ("hash", "cdb")


@dataclass(frozen=True)
class AdminSetup:
    """What the admin sets up before an upgrade: main.cf settings, files and map lookups."""

    alias_type: str  # hash (a build with Berkeley DB) or cdb (one without)
    params: Mapping[str, str]
    files: tuple[str, ...]
    lookups: tuple[tuple[str, str], ...]  # (table, key)

    @property
    def alias_table(self) -> str:
        """The admin's alias table, as alias_maps and alias_database name it."""
        return f"{self.alias_type}:/etc/aliases"

    @property
    def paths(self) -> frozenset[str]:
        """The admin's files, the folder holding them, the mail user and that user's mailbox."""
        extra = {"/etc/postfix", "/home/admin", "/var/mail/admin", "/var/spool/mail/admin"}
        return frozenset({*self.files, *extra})

    @property
    def note(self) -> str:
        """What the report says the admin set up."""
        return f"the admin's alias table: {self.alias_table} (alias_maps, alias_database)"

    def tool(self, table: str) -> str:
        """The tool that queries `table`: postalias for the alias table, postmap for the rest."""
        return "postalias" if table == self.alias_table else "postmap"


def admin_setup(alias_type: str = "hash") -> AdminSetup:
    """The admin's set-up with /etc/aliases as a `hash` (Berkeley DB) or `cdb` table."""
    if alias_type not in ALIAS_TYPES:
        raise PfbuildError(
            f"no admin set-up for alias tables of type {alias_type!r}",
            fix=f"use one of {', '.join(ALIAS_TYPES)}",
        )
    aliases = f"{alias_type}:/etc/aliases"
    # The alias database file: newaliases makes it for the type alias_database names.
    database = {"hash": "/etc/aliases.db", "cdb": "/etc/aliases.cdb"}[alias_type]
    params = {
        "myhostname": "mail.example.test",
        "mydestination": "$myhostname, localhost, example.test",
        "alias_maps": aliases,
        "alias_database": aliases,
        "virtual_alias_maps": "cdb:/etc/postfix/virtual",
        "header_checks": "regexp:/etc/postfix/header_checks",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "maillog_file": "/var/log/postfix.log",
    }
    files = (
        "/etc/postfix/main.cf",
        "/etc/aliases",
        database,
        "/etc/postfix/virtual",
        "/etc/postfix/virtual.cdb",
        "/etc/postfix/header_checks",
    )
    lookups = (("cdb:/etc/postfix/virtual", "info@example.test"), (aliases, "root"))
    return AdminSetup(alias_type, MappingProxyType(params), files, lookups)


# What existing sites built with Berkeley DB have; the default of every function taking a set-up.
HASH_SETUP = admin_setup("hash")
# Left after a purge by Debian's packaging, on purpose or by its design: reported, not failed.
DEBIAN_LEFTOVERS: Mapping[str, str] = {
    "/etc/postfix/master.cf": (
        "postinst copies it from /usr/share/postfix/master.cf.dist (not a conffile); postrm "
        "purge removes only /var/spool/postfix and /var/lib/postfix"
    ),
    "/etc/aliases.cdb": (
        "postinst runs newaliases on the first install (alias_database cdb:/etc/aliases); "
        "postrm purge leaves the alias database with /etc/aliases"
    ),
}
# The system's bookkeeping, after piuparts' own ignore list: users, dpkg, apt, logs.
IGNORED_PREFIXES = (
    "/var/lib/dpkg/",
    "/var/lib/apt/",
    "/var/cache/apt/",
    "/var/cache/debconf/",
    "/var/cache/ldconfig/",
    "/var/log/",
    "/var/lib/systemd/deb-systemd-helper-",
    "/var/lib/ucf/",
)
IGNORED_FILES = frozenset(
    f"/etc/{name}{suffix}"
    for name in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid", "ld.so.cache")
    for suffix in ("", "-")
) | {"/etc/.pwd.lock"}

_BEGIN_RE = re.compile(r"^@@@ begin (?P<name>\S+)$")
_END_RE = re.compile(r"^@@@ end (?P<name>\S+) rc=(?P<rc>\d+)$")
_LOOKUP_RE = re.compile(r"^lookup (?P<table>\S+) (?P<key>\S+) -> (?P<value>.*)$")
_REVISION_RE = re.compile(r"\+pf(?P<n>\d+)")
_SAID_RE = re.compile(r"warning: |backwards-compatible")


@dataclass(frozen=True)
class Section:
    """What one marked part of a testbed run printed, and its exit status (None: cut short)."""

    name: str
    rc: int | None
    text: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class LifecycleStep:
    """One claim of a scenario, whether it held, and the tool output that says so."""

    scenario: str
    step: str
    passed: bool
    evidence: str


@dataclass(frozen=True)
class LifecycleReport:
    """The install, upgrade and purge checks of one target."""

    target: str
    verdict: str  # pass or fail
    steps: tuple[LifecycleStep, ...]
    notes: tuple[str, ...] = ()
    logs: tuple[str, ...] = (CLEAN_LOG, DISTRO_LOG)

    @property
    def failed(self) -> tuple[LifecycleStep, ...]:
        return tuple(s for s in self.steps if not s.passed)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def lines(self) -> list[str]:
        """The report as text: one line per step, then the notes."""
        lines = [
            f"install/upgrade/purge (piuparts-style) for {self.target}: {self.verdict.upper()}"
        ]
        lines += [
            f"  {'ok  ' if s.passed else 'FAIL'} {s.scenario}: {s.step}: {s.evidence}"
            for s in self.steps
        ]
        return lines + [f"  note: {n}" for n in self.notes]


# --- the scripts run in the testbeds -----------------------------------------------------------

_PRELUDE = f"""set -u
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
# As piuparts does: maintainer scripts start no service; the steps start postfix themselves.
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
mkdir -p {SCRATCH}
begin() {{ echo "@@@ begin $1"; }}
end() {{ echo "@@@ end $1 rc=$2"; }}
"""

_ADMIN_SETUP = f"""useradd --create-home admin
postconf -e {{params}}
echo '# the admin edited this file' >> /etc/postfix/main.cf
printf '# the admin aliases\\npostmaster: root\\nroot: admin\\n' > /etc/aliases
newaliases
printf 'info@example.test root@localhost\\n' > /etc/postfix/virtual
postmap cdb:/etc/postfix/virtual
printf '/^Subject: {TOKEN} /  HOLD kept for the upgrade\\n' > /etc/postfix/header_checks"""

_START = """postfix start
postfix status
postfix check"""

_STOP = """postfix stop
i=0
while postfix status 2>/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done
! postfix status 2>/dev/null"""

# The header_checks table holds the message: it stays queued until released after the upgrade.
_QUEUE = f"""printf 'Subject: {TOKEN} {{tag}}\\n\\nqueued before the upgrade\\n' \\
  | sendmail -f root@localhost info@example.test
i=0
until postqueue -j | grep -q '"queue_name": *"hold"' || [ $i -ge 40 ]; do
  sleep 0.5; i=$((i+1))
done
postqueue -j"""

_DELIVER = f"""postsuper -H ALL
postqueue -f
i=0
until grep -qs '^Subject: {TOKEN} {{tag}}$' /var/mail/admin || [ $i -ge 60 ]; do
  sleep 0.5; i=$((i+1))
done
grep -s '^Subject: {TOKEN}' /var/mail/admin || {{{{ tail -n 20 /var/log/postfix.log; exit 1; }}}}"""

_SNAPSHOT = (
    "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp "
    f"-o -path /var/tmp -o -path /pfbuild -o -path {SCRATCH} \\) -prune -o -print "
    f"| LC_ALL=C sort > {SCRATCH}/{{name}}"
)


def section_script(name: str, body: str) -> str:
    """One marked part of a run: its commands stop at the first failure, the run goes on."""
    return f"begin {name}\n(\nset -e\n{body}\n) </dev/null 2>&1\nend {name} $?\n"


def versions_body(packages: Sequence[str]) -> str:
    """dpkg-query's word on each package: name, version, status (nothing for an unknown one)."""
    fmt = "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"
    return f"dpkg-query -W -f '{fmt}' {shlex.join(packages)} 2>/dev/null || true"


def admin_setup_body(setup: AdminSetup = HASH_SETUP) -> str:
    """The admin's configuration: main.cf, aliases (hash: or cdb:), a cdb: map, a regexp: table."""
    # postconf -e comes first: newaliases makes the alias_database it sets.
    return _ADMIN_SETUP.format(params=shlex.join(f"{k} = {v}" for k, v in setup.params.items()))


def admin_state_sections(when: str, setup: AdminSetup = HASH_SETUP) -> str:
    """Sections printing the admin's files (sha256sum), settings (postconf -n) and lookups."""
    lookups = "\n".join(
        f'echo "lookup {table} {key} -> $({setup.tool(table)} -q {key} {table})"'
        for table, key in setup.lookups
    )
    return (
        section_script(f"files-{when}", "sha256sum " + " ".join(setup.files))
        + section_script(f"settings-{when}", "postconf -n " + " ".join(setup.params))
        + section_script(f"lookups-{when}", lookups)
    )


def upgrade_sections(
    packages: Sequence[str], tag: str, install_cmd: str, setup: AdminSetup = HASH_SETUP
) -> str:
    """From a running set-up: message held, postfix stopped, the upgrade, the checks after it."""
    return "".join(
        [
            admin_state_sections("before", setup),
            section_script("start-before", _START),
            section_script("queue-before", _QUEUE.format(tag=tag)),
            section_script("stop-before", _STOP),
            section_script("upgrade", install_cmd),
            section_script("versions-upgrade", versions_body(packages)),
            admin_state_sections("after", setup),
            section_script("start-after", _START),
            section_script("queue-after", "postqueue -j"),
            section_script("deliver", _DELIVER.format(tag=tag)),
            section_script("stop-after", _STOP),
        ]
    )


def apt_install_cmdline(debs: Sequence[str]) -> str:
    """apt installing .deb files (and what they need from the testbed's repository)."""
    return shlex.join(["apt-get", "install", "-y", "-q", *debs])


def sed_literal(text: str) -> str:
    """`text` as a literal in a basic sed regular expression delimited by `/`."""
    return re.sub(r"([.\[\]*^$\\/])", r"\\\1", text)


def relabel_body(versions: Mapping[str, str], out_dir: str) -> str:
    """Copies of our packages with the next revision's version: the same files, relabelled."""
    edits = []
    for old, new in sorted(versions.items()):
        o, n = sed_literal(old), sed_literal(new)
        edits += ["-e", f"s/^Version: {o}$/Version: {n}/", "-e", f"s/(= {o})/(= {n})/g"]
    unpacked = f"{SCRATCH}/unpacked"
    return (
        f"mkdir -p {out_dir}\n"
        f"for deb in {DEBS_MOUNT}/*.deb; do\n"
        f'  case "$deb" in *-dbgsym_*) continue;; esac\n'
        f'  rm -rf {unpacked}; dpkg-deb -R "$deb" {unpacked}\n'
        f"  sed -i {shlex.join(edits)} {unpacked}/DEBIAN/control\n"
        # The compression is not under test: the fastest keeps the run short.
        f"  dpkg-deb -Zgzip -z1 -b {unpacked} {out_dir}/\n"
        f"done"
    )


def clean_script(
    packages: Sequence[str], debs: Sequence[str], versions: Mapping[str, str],
    setup: AdminSetup = HASH_SETUP,
) -> str:  # fmt: skip
    """install, upgrade-from-previous and purge, one after the other, on a clean testbed."""
    next_dir = f"{SCRATCH}/next"
    ours = shlex.join(packages)
    # apt's own plan names the dependencies: installed before the snapshot, as piuparts does.
    deps = (
        f"apt-get install -s -q {shlex.join(debs)} | awk '/^Inst /{{print $2}}' "
        f"| grep -vxF {' '.join(f'-e {shlex.quote(p)}' for p in packages)} > {SCRATCH}/deps "
        f"|| true\napt-get install -y -q $(cat {SCRATCH}/deps)"
    )
    return "".join(
        [
            _PRELUDE,
            section_script("relabel", relabel_body(versions, next_dir)),
            section_script("deps", deps),
            section_script("snapshot-before", _SNAPSHOT.format(name="before")),
            section_script("install", apt_install_cmdline(debs)),
            section_script("versions-install", versions_body(packages)),
            section_script("start-install", _START),
            section_script("stop-install", _STOP),
            section_script("admin-setup", admin_setup_body(setup)),
            upgrade_sections(
                packages, UPGRADE_PREVIOUS, f"apt-get install -y -q {next_dir}/*.deb", setup
            ),
            section_script("remove", f"apt-get remove -y -q {ours}"),
            section_script("versions-remove", versions_body(packages)),
            section_script("purge", f"apt-get purge -y -q {ours}"),
            section_script("versions-purge", versions_body(packages)),
            section_script("snapshot-after", _SNAPSHOT.format(name="after")),
            section_script("left-after-purge", f"comm -13 {SCRATCH}/before {SCRATCH}/after"),
            section_script("gone-after-purge", f"comm -23 {SCRATCH}/before {SCRATCH}/after"),
        ]
    )


def distro_script(packages: Sequence[str], install_cmd: str, setup: AdminSetup = HASH_SETUP) -> str:
    """upgrade-from-distro on a testbed with the distribution's postfix installed."""
    return "".join(
        [
            _PRELUDE,
            section_script("versions-distro", versions_body(packages)),
            section_script("admin-setup", admin_setup_body(setup)),
            upgrade_sections(packages, UPGRADE_DISTRO, install_cmd, setup),
        ]
    )


# --- reading what the tools printed ------------------------------------------------------------


def parse_sections(output: str) -> dict[str, Section]:
    """The marked parts of a run's output by name; one without its end marker was cut short."""
    sections: dict[str, Section] = {}
    name: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if name is not None:
                sections[name] = Section(name, None, "\n".join(lines))
            name, lines = begin["name"], []
        elif end and name is not None and end["name"] == name:
            sections[name] = Section(name, int(end["rc"]), "\n".join(lines))
            name = None
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = Section(name, None, "\n".join(lines))
    return sections


def parse_versions(text: str) -> dict[str, tuple[str, str]]:
    """dpkg-query's `name<TAB>version<TAB>status` lines: name -> (version, status)."""
    fields = (line.split("\t") for line in text.splitlines())
    return {f[0]: (f[1], f[2].strip()) for f in fields if len(f) == 3 and f[0]}


def parse_sha256sums(text: str) -> dict[str, str]:
    """sha256sum's `hash  path` lines: path -> hash."""
    matches = (re.match(r"^([0-9a-f]{64}) [ *](.+)$", line) for line in text.splitlines())
    return {m[2]: m[1] for m in matches if m}


def parse_postconf(text: str) -> dict[str, str]:
    """postconf's `name = value` lines: name -> value."""
    matches = (re.match(r"^(\w+) = (.*)$", line) for line in text.splitlines())
    return {m[1]: m[2] for m in matches if m}


def parse_lookups(text: str) -> dict[str, str]:
    """The `lookup TABLE KEY -> VALUE` lines: "TABLE KEY" -> value (empty: not found)."""
    matches = (_LOOKUP_RE.match(line) for line in text.splitlines())
    return {f"{m['table']} {m['key']}": m["value"] for m in matches if m}


def parse_queue(text: str) -> dict[str, str]:
    """postqueue -j's messages: queue ID -> queue name."""
    found = {}
    for line in text.splitlines():
        try:
            message = json.loads(line) if line.startswith("{") else None
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict) and "queue_id" in message:
            found[str(message["queue_id"])] = str(message.get("queue_name", ""))
    return found


def parse_new_packages(text: str) -> list[str]:
    """The packages apt's output says it newly installs."""
    found: list[str] = []
    listing = False
    for line in text.splitlines():
        if line.startswith("The following NEW packages will be installed"):
            listing = True
        elif listing and line.startswith("  "):
            found += line.split()
        else:
            listing = False
    return found


# --- judging -------------------------------------------------------------------------------------


def _text(section: Section | None) -> str:
    return section.text if section is not None else ""


def _tail(section: Section | None, lines: int = 3) -> str:
    if section is None:
        return "did not run"
    shown = [line for line in section.text.splitlines() if line.strip()][-lines:]
    status = "cut short" if section.rc is None else f"exit {section.rc}"
    return f"{status}: {' | '.join(shown) or 'no output'}"


def judge_ran(scenario: str, step: str, sections: Sequence[Section | None]) -> LifecycleStep:
    """Whether every section of a set-up ran to its end without a failure."""
    for section in sections:
        if section is None or not section.ok:
            name = section.name if section is not None else "a part"
            return LifecycleStep(scenario, step, False, f"{name}: {_tail(section)}")
    names = ", ".join(s.name for s in sections if s is not None)
    return LifecycleStep(scenario, step, True, f"exit 0: {names}")


def judge_installed(
    scenario: str, step: str, action: Section | None, versions: Section | None,
    expected: Mapping[str, str],
) -> LifecycleStep:  # fmt: skip
    """Whether `action` left each of our packages installed ('ii') at the expected version."""
    if action is None or not action.ok:
        return LifecycleStep(scenario, step, False, _tail(action))
    found = parse_versions(_text(versions))
    wrong = [
        f"{name} {' '.join(found.get(name, ('absent',)))}"
        for name, version in sorted(expected.items())
        if found.get(name) != (version, "ii")
    ]
    if wrong:
        return LifecycleStep(scenario, step, False, f"dpkg-query: {'; '.join(wrong)}")
    shown = ", ".join(sorted(set(expected.values())))
    return LifecycleStep(scenario, step, True, f"dpkg-query: {len(expected)} packages ii {shown}")


def judge_distro_installed(versions: Section | None, ours: Mapping[str, str]) -> LifecycleStep:
    """Whether the distribution's own postfix, not ours, is what the upgrade starts from."""
    installed = {n: v for n, (v, s) in parse_versions(_text(versions)).items() if s == "ii"}
    shown = ", ".join(f"{n} {v}" for n, v in sorted(installed.items())) or "nothing installed"
    is_distro = "postfix" in installed and installed["postfix"] != ours.get("postfix")
    return LifecycleStep(UPGRADE_DISTRO, "from", is_distro, f"dpkg-query ii: {shown}")


def judge_files_kept(
    scenario: str, before: Section | None, after: Section | None, setup: AdminSetup = HASH_SETUP
) -> LifecycleStep:
    """Whether each admin file has the same sha256 after the upgrade as before."""
    old, new = parse_sha256sums(_text(before)), parse_sha256sums(_text(after))
    step = "admin's files kept"
    if missing := [f for f in setup.files if f not in old]:
        return LifecycleStep(scenario, step, False, f"not there before: {', '.join(missing)}")
    if changed := [f for f in setup.files if new.get(f) != old[f]]:
        shown = "; ".join(f"{f} {old[f][:12]} -> {new.get(f, 'gone')[:12]}" for f in changed)
        return LifecycleStep(scenario, step, False, f"sha256 changed: {shown}")
    shown = "; ".join(f"{Path(f).name} {old[f][:12]}" for f in setup.files)
    return LifecycleStep(scenario, step, True, f"sha256 unchanged: {shown}")


def judge_settings_kept(
    scenario: str, before: Section | None, after: Section | None, setup: AdminSetup = HASH_SETUP
) -> LifecycleStep:
    """Whether postconf -n shows each of the admin's settings, as set, before and after."""
    old, new = parse_postconf(_text(before)), parse_postconf(_text(after))
    wrong = [
        f"{name}: {old.get(name)!r} -> {new.get(name)!r}"
        for name, value in setup.params.items()
        if not old.get(name) == new.get(name) == value
    ]
    evidence = "; ".join(wrong) or f"{len(setup.params)} settings as set, before and after"
    return LifecycleStep(scenario, "admin's settings kept", not wrong, f"postconf -n: {evidence}")


def judge_lookups_kept(
    scenario: str, before: Section | None, after: Section | None, setup: AdminSetup = HASH_SETUP
) -> LifecycleStep:
    """Whether each admin table answers its key before the upgrade, and the same after it."""
    old, new = parse_lookups(_text(before)), parse_lookups(_text(after))
    queries = [(f"{t} {k}", f"{setup.tool(t)} -q {k} {t}") for t, k in setup.lookups]
    passed = all(old.get(k) and old.get(k) == new.get(k) for k, _ in queries)
    shown = "; ".join(f"{cmd} -> {old.get(k)!r}, then {new.get(k)!r}" for k, cmd in queries)
    return LifecycleStep(scenario, "maps answer the same", passed, shown)


def judge_started(scenario: str, start: Section | None) -> LifecycleStep:
    """Whether `postfix start`, `postfix status` and `postfix check` succeeded."""
    running = [line.strip() for line in _text(start).splitlines() if "is running" in line]
    passed = start is not None and start.ok and bool(running)
    return LifecycleStep(
        scenario, "postfix starts", passed, running[-1] if passed else _tail(start)
    )


def judge_queue_kept(scenario: str, before: Section | None, after: Section | None) -> LifecycleStep:
    """Whether the message held before the upgrade is still on hold after it."""
    held = sorted(i for i, q in parse_queue(_text(before)).items() if q == "hold")
    now = parse_queue(_text(after))
    step = "queue survives"
    if not held:
        return LifecycleStep(scenario, step, False, f"no message on hold before: {_tail(before)}")
    if lost := [i for i in held if now.get(i) != "hold"]:
        return LifecycleStep(scenario, step, False, f"postqueue -j after: {now}; lost {lost}")
    return LifecycleStep(scenario, step, True, f"postqueue -j: {', '.join(held)} on hold, kept")


def judge_delivered(scenario: str, deliver: Section | None) -> LifecycleStep:
    """Whether the held message, released after the upgrade, reached the admin's mailbox."""
    subject = f"Subject: {TOKEN} {scenario}"
    found = deliver is not None and deliver.ok and subject in _text(deliver).splitlines()
    evidence = f"/var/mail/admin has {subject!r}" if found else _tail(deliver)
    return LifecycleStep(scenario, "held message delivered", found, evidence)


def upgrade_steps(
    scenario: str, sections: Mapping[str, Section], from_step: LifecycleStep,
    expected: Mapping[str, str], setup: AdminSetup = HASH_SETUP,
) -> list[LifecycleStep]:  # fmt: skip
    """Every claim of an upgrade: from what, set-up, upgrade, files, maps, queue, start, stop."""
    s = sections.get
    before = ["admin-setup", "start-before", "queue-before", "stop-before"]
    return [
        from_step,
        judge_ran(scenario, "admin set-up, message queued", [s(n) for n in before]),
        judge_installed(scenario, "upgrade", s("upgrade"), s("versions-upgrade"), expected),
        judge_files_kept(scenario, s("files-before"), s("files-after"), setup),
        judge_settings_kept(scenario, s("settings-before"), s("settings-after"), setup),
        judge_lookups_kept(scenario, s("lookups-before"), s("lookups-after"), setup),
        judge_started(scenario, s("start-after")),
        judge_queue_kept(scenario, s("queue-before"), s("queue-after")),
        judge_delivered(scenario, s("deliver")),
        judge_ran(scenario, "postfix stops", [s("stop-after")]),
    ]


def upgrade_notes(scenario: str, sections: Mapping[str, Section], ours: Iterable[str]) -> list[str]:
    """What an upgrade brought besides our packages, and what postfix says only after it."""
    notes = []
    if extra := [p for p in parse_new_packages(_text(sections.get("upgrade"))) if p not in ours]:
        notes.append(f"{scenario}: apt also installed {' '.join(extra)}")

    def said(names: Sequence[str]) -> list[str]:
        lines = "\n".join(_text(sections.get(n)) for n in names).splitlines()
        return list(dict.fromkeys(line.strip() for line in lines if _SAID_RE.search(line)))

    earlier = set(said(["lookups-before", "start-before"]))
    notes += [
        f"{scenario}: after the upgrade: {line}"
        for line in said(["lookups-after", "start-after"])
        if line not in earlier
    ]
    return notes


def is_ignored(path: str) -> bool:
    """Whether a path is the system's bookkeeping (users, dpkg, apt, logs), as piuparts ignores."""
    return path in IGNORED_FILES or path.startswith(IGNORED_PREFIXES)


def is_admins(path: str, setup: AdminSetup = HASH_SETUP) -> bool:
    """Whether a path is one the admin made in the test (or a folder holding those)."""
    return path in setup.paths or path.startswith("/home/admin/")


def debian_leftovers(setup: AdminSetup = HASH_SETUP) -> dict[str, str]:
    """DEBIAN_LEFTOVERS but the admin's own files: a cdb: admin remakes /etc/aliases.cdb."""
    return {p: why for p, why in DEBIAN_LEFTOVERS.items() if not is_admins(p, setup)}


def judge_removed(
    step: str, action: Section | None, versions: Section | None, packages: Sequence[str],
    allowed: frozenset[str],
) -> LifecycleStep:  # fmt: skip
    """Whether `action` (remove or purge) left each of our packages only in an allowed state."""
    if action is None or not action.ok:
        return LifecycleStep(PURGE, step, False, _tail(action))
    found = parse_versions(_text(versions))
    states = {name: found[name][1] for name in packages if name in found}
    wrong = [f"{n} {st}" for n, st in sorted(states.items()) if st not in allowed]
    shown = ", ".join(f"{n} {st}" for n, st in sorted(states.items())) or "none known"
    evidence = f"dpkg-query: still {', '.join(wrong)}" if wrong else f"dpkg-query: {shown}"
    return LifecycleStep(PURGE, step, not wrong, evidence)


def judge_leftovers(
    left: Section | None, gone: Section | None, setup: AdminSetup = HASH_SETUP
) -> tuple[list[LifecycleStep], list[str]]:
    """Paths purge left (only the admin's and Debian's declared ones may be) and paths it took."""
    step = "no files left but the admin's"
    for section in (left, gone):
        if section is None or not section.ok:
            return [LifecycleStep(PURGE, step, False, _tail(section))], []
    debian = debian_leftovers(setup)
    paths = [p for p in _text(left).splitlines() if p.startswith("/") and not is_ignored(p)]
    admins = [p for p in paths if is_admins(p, setup)]
    declared = [p for p in paths if p in debian]
    unexpected = [p for p in paths if not is_admins(p, setup) and p not in debian]
    evidence = f"comm: the admin's {', '.join(admins) or 'none'}; Debian's {', '.join(declared)}"
    if unexpected:
        evidence = f"comm: unexpected {', '.join(unexpected)}; " + evidence[len("comm: ") :]
    taken = [p for p in _text(gone).splitlines() if p.startswith("/") and not is_ignored(p)]
    steps = [
        LifecycleStep(PURGE, step, not unexpected, evidence),
        LifecycleStep(
            PURGE,
            "nothing of the system removed",
            not taken,
            f"comm: gone {', '.join(taken)}" if taken else "comm: every path of the snapshot left",
        ),
    ]
    notes = [f"purge left, as declared: {p}: {debian[p]}" for p in declared]
    notes += [f"purge did not leave the declared {p}" for p in debian if p not in paths]
    return steps, notes


def judge_clean_run(
    sections: Mapping[str, Section], pf1: Mapping[str, str], pf2: Mapping[str, str],
    setup: AdminSetup = HASH_SETUP,
) -> tuple[list[LifecycleStep], list[str]]:  # fmt: skip
    """The steps of install, upgrade-from-previous and purge, from the clean testbed's run."""
    s = sections.get
    packages = sorted(pf1)
    install = judge_installed(INSTALL, "install", s("install"), s("versions-install"), pf1)
    relabel = s("relabel")
    if relabel is None or not relabel.ok:
        from_step = LifecycleStep(UPGRADE_PREVIOUS, "from", False, f"relabel: {_tail(relabel)}")
    else:
        built = f"{relabel.text.count('dpkg-deb: building package')} relabelled +pf2"
        evidence = f"{install.evidence}; {built}"
        from_step = LifecycleStep(UPGRADE_PREVIOUS, "from", install.passed, evidence)
    steps = [
        judge_ran(INSTALL, "dependencies, snapshot", [s(n) for n in ("deps", "snapshot-before")]),
        install,
        judge_started(INSTALL, s("start-install")),
        judge_ran(INSTALL, "postfix stops", [s("stop-install")]),
        *upgrade_steps(UPGRADE_PREVIOUS, sections, from_step, pf2, setup),
        judge_removed("remove", s("remove"), s("versions-remove"), packages,
                      frozenset({"rc", "un", "pn"})),
        judge_removed("purge", s("purge"), s("versions-purge"), packages, frozenset({"un", "pn"})),
    ]  # fmt: skip
    leftover_steps, notes = judge_leftovers(s("left-after-purge"), s("gone-after-purge"), setup)
    return steps + leftover_steps, upgrade_notes(UPGRADE_PREVIOUS, sections, pf1) + notes


def judge_distro_run(
    sections: Mapping[str, Section], pf1: Mapping[str, str], setup: AdminSetup = HASH_SETUP
) -> tuple[list[LifecycleStep], list[str]]:
    """The steps of upgrade-from-distro, from the distribution testbed's run."""
    from_step = judge_distro_installed(sections.get("versions-distro"), pf1)
    steps = upgrade_steps(UPGRADE_DISTRO, sections, from_step, pf1, setup)
    return steps, upgrade_notes(UPGRADE_DISTRO, sections, pf1)


# --- the check -----------------------------------------------------------------------------------


def next_revision(version: str) -> str:
    """Our version with the next pfbuild revision: 3.11.6-1+pf1~trixie -> 3.11.6-1+pf2~trixie."""
    matches = list(_REVISION_RE.finditer(version))
    if not matches:
        raise PfbuildError(
            f"cannot make the next revision of {version!r}",
            "it has no +pfN revision",
            "build the packages with the recipe's version suffix",
        )
    last = matches[-1]
    return f"{version[: last.start()]}+pf{int(last['n']) + 1}{version[last.end() :]}"


def package_versions(debs: Iterable[Path]) -> dict[str, str]:
    """Each package's name and version, from its control file."""
    controls = (DebFile(str(deb)).debcontrol() for deb in debs)
    return {str(c["Package"]): str(c["Version"]) for c in controls}


def lifecycle_check(
    ctx: Context, dist: Distribution, build_dir: Path, report_dir: Path, berkeley_db: bool = True
) -> LifecycleReport:
    """Install, upgrade (from the distribution's and from +pf1) and purge one target's packages.

    A build without Berkeley DB (`berkeley_db` False) has no hash: tables: its admin keeps the
    aliases in a cdb: table, as the configuration gate tells them to.
    """
    setup = admin_setup("hash" if berkeley_db else "cdb")
    debs = package_debs(build_dir)
    if not debs:
        raise PfbuildError(
            f"no packages of {dist.name} to install in {build_dir}",
            "the build left no .deb",
            "run `pfbuild build` for this target first",
        )
    pf1 = package_versions(debs)
    pf2 = {name: next_revision(version) for name, version in pf1.items()}
    inside = [f"{DEBS_MOUNT}/{d.name}" for d in debs]
    mounts = {build_dir: (DEBS_MOUNT, "ro")}
    relabel = {version: next_revision(version) for version in pf1.values()}
    clean = run_in_testbed(
        ctx,
        ensure_testbed(ctx, dist, debs, [], "lifecycle"),
        clean_script(sorted(pf1), inside, relabel, setup),
        mounts=mounts,
        log_path=report_dir / CLEAN_LOG,
        timeout=TIMEOUT,
    )
    steps, notes = judge_clean_run(parse_sections(clean.output), pf1, pf2, setup)
    distro = run_in_testbed(
        ctx,
        ensure_testbed(ctx, dist, debs, DISTRO_TOOLS, "lifecycle-distro"),
        distro_script(sorted(pf1), apt_install_cmdline(inside), setup),
        mounts=mounts,
        log_path=report_dir / DISTRO_LOG,
        timeout=TIMEOUT,
    )
    distro_steps, distro_notes = judge_distro_run(parse_sections(distro.output), pf1, setup)
    steps += distro_steps
    verdict = "pass" if all(s.passed for s in steps) else "fail"
    all_notes = (setup.note, *notes, *distro_notes)
    report = LifecycleReport(dist.name, verdict, tuple(steps), all_notes)
    write_text(report_dir / LIFECYCLE_JSON, report.to_json())
    return report


def require_lifecycle_passed(report: LifecycleReport, report_dir: Path) -> None:
    """Raise a one-line PfbuildError when an install, upgrade or purge step failed."""
    if report.verdict == "pass":
        return
    first = report.failed[0]
    raise PfbuildError(
        f"the install/upgrade/purge checks failed for {report.target}",
        f"{len(report.failed)} step(s) failed, first {first.scenario}: {first.step}: "
        f"{first.evidence}",
        f"see {report_dir / LIFECYCLE_JSON} and the logs beside it; fix the packaging, or "
        "declare in DEBIAN_LEFTOVERS a file Debian's packaging leaves on purpose",
    )
