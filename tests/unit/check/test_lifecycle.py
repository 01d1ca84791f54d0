"""The install/upgrade/purge checks: the scripts' shape, reading the tools' output, the judging."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.check import lifecycle as lc
from builder.core.errors import PfbuildError

pytestmark = pytest.mark.unit

OURS = {"postfix": "3.11.6-1+pf1~trixie", "postfix-cdb": "3.11.6-1+pf1~trixie"}
NEXT = {name: "3.11.6-1+pf2~trixie" for name in OURS}
CDB_SETUP = lc.admin_setup("cdb")
HOLD = (
    '{"queue_name": "hold", "queue_id": "7864832E072", "arrival_time": 1796113526, '
    '"message_size": 345, "forced_expire": false, "sender": "root@localhost", '
    '"recipients": [{"orig_address": "info@example.test", "address": "root@localhost"}]}'
)
RUNNING = "postfix/postlog: the Postfix mail system is running: PID: 3742"


def _sha(setup: lc.AdminSetup = lc.HASH_SETUP) -> dict[str, str]:
    return {f: f"{i:x}" * 64 for i, f in enumerate(setup.files, start=1)}


SHA = _sha()


def _versions(versions: dict[str, str], status: str = "ii ") -> str:
    return "\n".join(f"{name}\t{version}\t{status}" for name, version in versions.items())


def _lookups(setup: lc.AdminSetup = lc.HASH_SETUP, said: str = "") -> str:
    return (
        "lookup cdb:/etc/postfix/virtual info@example.test -> root@localhost\n"
        f"{said}lookup {setup.alias_table} root -> admin"
    )


def _upgrade(
    scenario: str, upgraded: dict[str, str], setup: lc.AdminSetup = lc.HASH_SETUP
) -> dict[str, tuple[int, str]]:
    sums = "\n".join(f"{h}  {f}" for f, h in _sha(setup).items())
    settings = "\n".join(f"{k} = {v}" for k, v in setup.params.items())
    # postalias warns of a hash: table, not of a cdb: one.
    said = "postalias: warning: /etc/aliases: hash/btree support is deprecated.\n"
    return {
        "admin-setup": (0, ""),
        "files-before": (0, sums),
        "settings-before": (0, settings),
        "lookups-before": (0, _lookups(setup)),
        "start-before": (0, f"postfix/postlog: starting the Postfix mail system\n{RUNNING}"),
        "queue-before": (0, HOLD),
        "stop-before": (0, "postfix/postlog: stopping the Postfix mail system"),
        "upgrade": (
            0,
            "The following NEW packages will be installed:\n  postfix-cdb systemd\n"
            "The following packages will be upgraded:\n  postfix postfix-cdb",
        ),
        "versions-upgrade": (0, _versions(upgraded)),
        "files-after": (0, sums),
        "settings-after": (0, settings),
        "lookups-after": (0, _lookups(setup, said if setup.alias_type == "hash" else "")),
        "start-after": (0, RUNNING),
        "queue-after": (0, HOLD),
        "deliver": (0, f"postsuper: Released from hold: 1 message\nSubject: {lc.TOKEN} {scenario}"),
        "stop-after": (0, ""),
    }


def _distro(setup: lc.AdminSetup = lc.HASH_SETUP) -> dict[str, tuple[int, str]]:
    distro = {"postfix": "3.10.13-0+deb13u1", "postfix-cdb": "3.10.13-0+deb13u1"}
    return {"versions-distro": (0, _versions(distro)), **_upgrade(lc.UPGRADE_DISTRO, OURS, setup)}


def _clean(setup: lc.AdminSetup = lc.HASH_SETUP) -> dict[str, tuple[int, str]]:
    paths = [
        *sorted(setup.files),
        *("/etc/aliases.cdb", "/etc/postfix/master.cf", "/etc/subuid-", "/home/admin"),
        *("/home/admin/.profile", "/var/log/postfix.log", "/var/mail/admin"),
    ]
    left = "\n".join(dict.fromkeys(paths))
    return {
        "relabel": (0, "dpkg-deb: building package 'postfix' in '/x/postfix.deb'.\n" * 2),
        "deps": (0, ""),
        "snapshot-before": (0, ""),
        "install": (0, ""),
        "versions-install": (0, _versions(OURS)),
        "start-install": (0, RUNNING),
        "stop-install": (0, ""),
        **_upgrade(lc.UPGRADE_PREVIOUS, NEXT, setup),
        "remove": (0, ""),
        "versions-remove": (0, _versions(NEXT, "rc ")),
        "purge": (0, ""),
        "versions-purge": (0, ""),
        "snapshot-after": (0, ""),
        "left-after-purge": (0, left),
        "gone-after-purge": (0, ""),
    }


def _render(sections: dict[str, tuple[int, str]]) -> str:
    parts = ["Reading package lists..."]
    for name, (rc, text) in sections.items():
        parts += [f"@@@ begin {name}", text, f"@@@ end {name} rc={rc}"]
    return "\n".join(parts)


def _failed(steps: list[lc.LifecycleStep]) -> list[tuple[str, str]]:
    return [(s.scenario, s.step) for s in steps if not s.passed]


def test_section_script_marks_its_part_and_goes_on() -> None:
    script = lc.section_script("files-before", "sha256sum /etc/aliases")
    assert script.splitlines() == [
        "begin files-before",
        "(",
        "set -e",
        "sha256sum /etc/aliases",
        ") </dev/null 2>&1",
        "end files-before $?",
    ]


def test_scripts_run_their_sections_in_order() -> None:
    clean = lc.clean_script(sorted(OURS), ["/pfbuild/debs/postfix.deb"], {"1+pf1": "1+pf2"})
    names = re.findall(r"^begin (\S+)$", clean, re.M)
    assert names == list(_clean())
    distro = lc.distro_script(sorted(OURS), "apt-get install -y /pfbuild/debs/postfix.deb")
    assert re.findall(r"^begin (\S+)$", distro, re.M) == list(_distro())
    assert "policy-rc.d" in distro and "exit 101" in distro


def test_admin_setup_quotes_each_setting() -> None:
    body = lc.admin_setup_body()
    assert "'mydestination = $myhostname, localhost, example.test'" in body
    assert "postmap cdb:/etc/postfix/virtual" in body and "newaliases" in body


def test_the_hash_setup_is_what_berkeley_db_sites_have() -> None:
    setup = lc.admin_setup()
    assert setup == lc.HASH_SETUP and setup.alias_type == "hash"
    assert setup.params["alias_maps"] == setup.params["alias_database"] == "hash:/etc/aliases"
    assert setup.files == (
        "/etc/postfix/main.cf",
        "/etc/aliases",
        "/etc/aliases.db",
        "/etc/postfix/virtual",
        "/etc/postfix/virtual.cdb",
        "/etc/postfix/header_checks",
    )
    assert setup.lookups == (
        ("cdb:/etc/postfix/virtual", "info@example.test"),
        ("hash:/etc/aliases", "root"),
    )
    assert setup.paths == {*setup.files, "/etc/postfix", "/home/admin"} | {
        "/var/mail/admin",
        "/var/spool/mail/admin",
    }
    assert setup.note == "the admin's alias table: hash:/etc/aliases (alias_maps, alias_database)"


def test_the_cdb_setup_differs_only_in_the_alias_table() -> None:
    hash_params = dict(lc.HASH_SETUP.params)
    cdb_params = dict(CDB_SETUP.params)
    assert cdb_params.pop("alias_maps") == cdb_params.pop("alias_database") == "cdb:/etc/aliases"
    del hash_params["alias_maps"], hash_params["alias_database"]
    assert cdb_params == hash_params
    assert set(CDB_SETUP.files) ^ set(lc.HASH_SETUP.files) == {
        "/etc/aliases.db",
        "/etc/aliases.cdb",
    }
    assert CDB_SETUP.lookups[-1] == ("cdb:/etc/aliases", "root")
    assert "cdb:/etc/aliases" in CDB_SETUP.note
    with pytest.raises(PfbuildError, match="'btree'"):
        lc.admin_setup("btree")


@pytest.mark.parametrize("setup", [lc.HASH_SETUP, CDB_SETUP], ids=["hash", "cdb"])
def test_newaliases_runs_after_postconf_sets_the_alias_database(setup: lc.AdminSetup) -> None:
    body = lc.admin_setup_body(setup)
    setting = f"'alias_database = {setup.alias_table}'"
    assert setting in body
    assert body.index(setting) < body.index("\nnewaliases\n")


def test_the_cdb_setups_scripts_use_cdb_aliases_and_never_hash() -> None:
    clean = lc.clean_script(
        sorted(OURS), ["/pfbuild/debs/postfix.deb"], {"1+pf1": "1+pf2"}, CDB_SETUP
    )
    distro = lc.distro_script(sorted(OURS), "apt-get install -y /x/postfix.deb", CDB_SETUP)
    for script in (clean, distro):
        assert "hash:" not in script and "/etc/aliases.db" not in script
        assert "'alias_maps = cdb:/etc/aliases'" in script
        assert "'alias_database = cdb:/etc/aliases'" in script
        # Alias tables are queried with postalias, whatever their type.
        assert "$(postalias -q root cdb:/etc/aliases)" in script
        assert "$(postmap -q info@example.test cdb:/etc/postfix/virtual)" in script
        assert re.search(r"^sha256sum .* /etc/aliases\.cdb ", script, re.M)
    assert re.findall(r"^begin (\S+)$", clean, re.M) == list(_clean(CDB_SETUP))
    assert re.findall(r"^begin (\S+)$", distro, re.M) == list(_distro(CDB_SETUP))
    assert "$(postalias -q root hash:/etc/aliases)" in lc.distro_script(sorted(OURS), "true")


def test_the_cdb_setups_files_and_lookups_are_judged() -> None:
    sums = _sha(CDB_SETUP)
    before = lc.Section("files-before", 0, "\n".join(f"{h}  {f}" for f, h in sums.items()))
    kept = lc.judge_files_kept(lc.UPGRADE_DISTRO, before, before, CDB_SETUP)
    assert kept.passed and "aliases.cdb" in kept.evidence and "aliases.db" not in kept.evidence
    changed = dict(sums, **{"/etc/aliases.cdb": "f" * 64})
    after = lc.Section("files-after", 0, "\n".join(f"{h}  {f}" for f, h in changed.items()))
    step = lc.judge_files_kept(lc.UPGRADE_DISTRO, before, after, CDB_SETUP)
    assert not step.passed and "/etc/aliases.cdb" in step.evidence
    # The hash: set-up's files are not the cdb: admin's: /etc/aliases.db was never made.
    assert not lc.judge_files_kept(lc.UPGRADE_DISTRO, before, before).passed

    answers = lc.Section("lookups-before", 0, _lookups(CDB_SETUP))
    same = lc.judge_lookups_kept(lc.UPGRADE_DISTRO, answers, answers, CDB_SETUP)
    assert same.passed
    assert "postalias -q root cdb:/etc/aliases -> 'admin', then 'admin'" in same.evidence
    assert "postmap -q info@example.test cdb:/etc/postfix/virtual" in same.evidence
    hashed = lc.Section("lookups-before", 0, _lookups(lc.HASH_SETUP))
    assert not lc.judge_lookups_kept(lc.UPGRADE_DISTRO, hashed, hashed, CDB_SETUP).passed


def test_a_cdb_distro_run_passes() -> None:
    sections = lc.parse_sections(_render(_distro(CDB_SETUP)))
    steps, notes = lc.judge_distro_run(sections, OURS, CDB_SETUP)
    assert _failed(steps) == []
    assert not any("hash/btree" in n for n in notes)
    # Judged as the hash: set-up, the cdb: admin's run misses /etc/aliases.db and hash: answers.
    steps, _ = lc.judge_distro_run(sections, OURS)
    assert _failed(steps) == [
        (lc.UPGRADE_DISTRO, "admin's files kept"),
        (lc.UPGRADE_DISTRO, "admin's settings kept"),
        (lc.UPGRADE_DISTRO, "maps answer the same"),
    ]


def test_a_cdb_clean_run_passes_with_aliases_cdb_the_admins() -> None:
    steps, notes = lc.judge_clean_run(
        lc.parse_sections(_render(_clean(CDB_SETUP))), OURS, NEXT, CDB_SETUP
    )
    assert _failed(steps) == []
    leftovers = next(s for s in steps if s.step == "no files left but the admin's")
    admins, debians = leftovers.evidence.split("; Debian's ")
    assert "/etc/aliases.cdb" in admins and "/etc/aliases.cdb" not in debians
    assert debians == "/etc/postfix/master.cf"
    assert not any("/etc/aliases.cdb" in n for n in notes)
    assert lc.is_admins("/etc/aliases.cdb", CDB_SETUP) and not lc.is_admins("/etc/aliases.cdb")
    assert set(lc.debian_leftovers(CDB_SETUP)) == {"/etc/postfix/master.cf"}
    assert set(lc.debian_leftovers()) == set(lc.DEBIAN_LEFTOVERS)


def test_a_cdb_purge_leaving_aliases_db_fails() -> None:
    sections = _clean(CDB_SETUP)
    rc, left = sections["left-after-purge"]
    sections["left-after-purge"] = (rc, left + "\n/etc/aliases.db")
    steps, _ = lc.judge_clean_run(lc.parse_sections(_render(sections)), OURS, NEXT, CDB_SETUP)
    assert _failed(steps) == [(lc.PURGE, "no files left but the admin's")]
    leftovers = next(s for s in steps if not s.passed)
    assert leftovers.evidence.startswith("comm: unexpected /etc/aliases.db;")


def test_next_revision_counts_on() -> None:
    assert lc.next_revision("3.11.6-1+pf1~trixie") == "3.11.6-1+pf2~trixie"
    assert lc.next_revision("3.11.6-1+pf9") == "3.11.6-1+pf10"
    with pytest.raises(PfbuildError, match="no \\+pfN revision"):
        lc.next_revision("3.11.6-1")


def test_relabel_changes_the_version_and_exact_relations_only() -> None:
    body = lc.relabel_body({"3.11.6-1+pf1~trixie": "3.11.6-1+pf2~trixie"}, "/x/next")
    assert "s/^Version: 3\\.11\\.6-1+pf1~trixie$/Version: 3\\.11\\.6-1+pf2~trixie/" in body
    assert "s/(= 3\\.11\\.6-1+pf1~trixie)/(= 3\\.11\\.6-1+pf2~trixie)/g" in body
    assert "*-dbgsym_*) continue" in body
    assert lc.sed_literal("a.b/c*[d]$^\\") == "a\\.b\\/c\\*\\[d\\]\\$\\^\\\\"


def test_parse_sections_reads_each_part_and_a_cut_one() -> None:
    output = "noise\n@@@ begin a\none\ntwo\n@@@ end a rc=0\n@@@ begin b\nhalf"
    sections = lc.parse_sections(output)
    assert sections["a"] == lc.Section("a", 0, "one\ntwo")
    assert sections["b"] == lc.Section("b", None, "half")
    assert not sections["b"].ok


def test_parsers_read_the_tools_output() -> None:
    assert lc.parse_versions("postfix\t3.11.6-1+pf2~trixie\trc \npostfix-doc\t\tun ") == {
        "postfix": ("3.11.6-1+pf2~trixie", "rc"),
        "postfix-doc": ("", "un"),
    }
    assert lc.parse_sha256sums(f"{'a' * 64}  /etc/aliases\nsha256sum: x: No such file") == {
        "/etc/aliases": "a" * 64
    }
    assert lc.parse_postconf("alias_maps = hash:/etc/aliases\npostconf: warning: x") == {
        "alias_maps": "hash:/etc/aliases"
    }
    assert lc.parse_lookups("lookup hash:/etc/aliases root -> \npostalias: warning: y") == {
        "hash:/etc/aliases root": ""
    }
    assert lc.parse_queue(f"{HOLD}\n{{broken\nMail queue is empty") == {"7864832E072": "hold"}
    apt = "The following NEW packages will be installed:\n  a b\n  c\nThe following x:\n  d"
    assert lc.parse_new_packages(apt) == ["a", "b", "c"]


def test_a_clean_run_passes_and_names_what_debian_leaves() -> None:
    steps, notes = lc.judge_clean_run(lc.parse_sections(_render(_clean())), OURS, NEXT)
    assert _failed(steps) == []
    assert [s.scenario for s in steps].count(lc.PURGE) == 4
    leftovers = next(s for s in steps if s.step == "no files left but the admin's")
    assert "/etc/postfix/main.cf" in leftovers.evidence
    assert "/etc/subuid-" not in leftovers.evidence  # the system's bookkeeping
    assert any(n.startswith("purge left, as declared: /etc/postfix/master.cf") for n in notes)
    assert any(n.startswith("purge left, as declared: /etc/aliases.cdb") for n in notes)
    assert "/etc/aliases.db" in leftovers.evidence.split("; Debian's ")[0]


def test_a_distro_run_passes_and_notes_what_came_with_it() -> None:
    steps, notes = lc.judge_distro_run(lc.parse_sections(_render(_distro())), OURS)
    assert _failed(steps) == []
    assert (
        steps[0].evidence
        == "dpkg-query ii: postfix 3.10.13-0+deb13u1, postfix-cdb 3.10.13-0+deb13u1"
    )
    assert f"{lc.UPGRADE_DISTRO}: apt also installed systemd" in notes
    assert any("hash/btree support is deprecated" in n for n in notes)


def test_an_upgrade_that_touches_the_admins_files_fails() -> None:
    sections = _distro()
    changed = dict(SHA, **{"/etc/postfix/main.cf": "f" * 64})
    sections["files-after"] = (0, "\n".join(f"{h}  {f}" for f, h in changed.items()))
    steps, _ = lc.judge_distro_run(lc.parse_sections(_render(sections)), OURS)
    assert _failed(steps) == [(lc.UPGRADE_DISTRO, "admin's files kept")]
    failed = next(s for s in steps if not s.passed)
    assert "/etc/postfix/main.cf" in failed.evidence


def test_a_lost_message_a_changed_map_and_a_dead_postfix_fail() -> None:
    sections = _distro()
    sections["queue-after"] = (0, "")
    sections["lookups-after"] = (0, "lookup cdb:/etc/postfix/virtual info@example.test -> ")
    sections["start-after"] = (1, "postfix/postfix-script: fatal: the Postfix mail system is down")
    sections["deliver"] = (1, "tail of the log")
    steps, _ = lc.judge_distro_run(lc.parse_sections(_render(sections)), OURS)
    assert _failed(steps) == [
        (lc.UPGRADE_DISTRO, "maps answer the same"),
        (lc.UPGRADE_DISTRO, "postfix starts"),
        (lc.UPGRADE_DISTRO, "queue survives"),
        (lc.UPGRADE_DISTRO, "held message delivered"),
    ]


def test_a_run_cut_short_fails_every_step_it_did_not_reach() -> None:
    text = _render(_distro())
    cut = text[: text.index("@@@ begin upgrade")] + "@@@ begin upgrade\nKilled"
    steps, _ = lc.judge_distro_run(lc.parse_sections(cut), OURS)
    assert (lc.UPGRADE_DISTRO, "upgrade") in _failed(steps)
    assert (lc.UPGRADE_DISTRO, "postfix stops") in _failed(steps)
    upgrade = next(s for s in steps if s.step == "upgrade")
    assert upgrade.evidence == "cut short: Killed"


def test_upgrading_from_our_own_version_is_not_from_the_distribution() -> None:
    step = lc.judge_distro_installed(lc.Section("v", 0, _versions(OURS)), OURS)
    assert not step.passed


def test_purge_leaving_a_file_or_taking_one_fails() -> None:
    sections = _clean()
    rc, left = sections["left-after-purge"]
    sections["left-after-purge"] = (rc, left + "\n/etc/postfix/sasl/smtpd.conf")
    sections["gone-after-purge"] = (0, "/var/mail")
    sections["versions-purge"] = (0, _versions(NEXT, "rc "))
    steps, _ = lc.judge_clean_run(lc.parse_sections(_render(sections)), OURS, NEXT)
    assert _failed(steps) == [
        (lc.PURGE, "purge"),
        (lc.PURGE, "no files left but the admin's"),
        (lc.PURGE, "nothing of the system removed"),
    ]
    leftovers = next(s for s in steps if s.step == "no files left but the admin's")
    assert leftovers.evidence.startswith("comm: unexpected /etc/postfix/sasl/smtpd.conf;")


def test_a_declared_leftover_that_is_gone_is_noted() -> None:
    sections = _clean()
    sections["left-after-purge"] = (0, "/etc/aliases")
    _, notes = lc.judge_clean_run(lc.parse_sections(_render(sections)), OURS, NEXT)
    assert "purge did not leave the declared /etc/postfix/master.cf" in notes


def test_failed_relabel_fails_the_previous_upgrade() -> None:
    sections = _clean()
    sections["relabel"] = (2, "dpkg-deb: error: parsing file 'DEBIAN/control'")
    steps, _ = lc.judge_clean_run(lc.parse_sections(_render(sections)), OURS, NEXT)
    assert _failed(steps) == [(lc.UPGRADE_PREVIOUS, "from")]


def test_report_json_and_the_one_line_error(tmp_path: Path) -> None:
    steps, notes = lc.judge_distro_run(lc.parse_sections(_render(_distro())), OURS)
    passed = lc.LifecycleReport("trixie", "pass", tuple(steps), tuple(notes))
    lc.require_lifecycle_passed(passed, tmp_path)
    data = json.loads(passed.to_json())
    assert data["steps"][0]["scenario"] == lc.UPGRADE_DISTRO
    assert data["logs"] == [lc.CLEAN_LOG, lc.DISTRO_LOG]
    bad = lc.LifecycleStep(lc.PURGE, "purge", False, "exit 100: E: boom")
    failed = lc.LifecycleReport("trixie", "fail", (*steps, bad), ())
    assert failed.lines()[-1] == "  FAIL purge: purge: exit 100: E: boom"
    with pytest.raises(PfbuildError) as caught:
        lc.require_lifecycle_passed(failed, tmp_path)
    assert "\n" not in str(caught.value)
    assert "first purge: purge: exit 100: E: boom" in str(caught.value)
    assert str(tmp_path / lc.LIFECYCLE_JSON) in str(caught.value)
