"""Reading main.cf and master.cf as Postfix does: continuations, comments, `$name`, `{ }`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.check.config.parse import (
    expand,
    join_list,
    parse_main_cf,
    parse_master_cf,
    referenced_names,
    split_list,
)

pytestmark = pytest.mark.unit


def values(text: str) -> dict[str, str]:
    return {n: s.value for n, s in parse_main_cf(text).settings.items()}


def test_continuation_lines_comments_and_blank_lines() -> None:
    text = (
        "# a comment\n"
        "\n"
        "mynetworks = 127.0.0.0/8,\n"
        "    10.0.0.0/8\n"
        "# a comment between continuation lines does not end the logical line\n"
        "\t[::1]/128\n"
        "  # an indented comment is a comment, not a continuation\n"
        "myhostname=mx.example.org\n"
        "empty =\n"
    )
    parsed = parse_main_cf(text)
    assert values(text) == {
        "mynetworks": "127.0.0.0/8,    10.0.0.0/8\t[::1]/128",
        "myhostname": "mx.example.org",
        "empty": "",
    }
    assert parsed.settings["mynetworks"].line == 3
    assert parsed.settings["myhostname"].where == "main.cf:8"
    assert parsed.problems == ()


def test_last_setting_wins_and_a_hash_inside_a_value_is_text() -> None:
    assert values("a = 1\na = 2 # not a comment\n") == {"a": "2 # not a comment"}


def test_a_line_without_equals_is_a_problem_and_leading_whitespace_is_ignored() -> None:
    parsed = parse_main_cf("  orphan continuation\nsmtpd_banner $myhostname ESMTP\nok = 1\n")
    assert [(p.line, p.message) for p in parsed.problems] == [
        (2, "expected `name = value`, got 'smtpd_banner $myhostname ESMTP'")
    ]
    assert list(parsed.settings) == ["ok"]


def test_master_cf_services_and_overrides() -> None:
    text = (
        "# service type private unpriv chroot wakeup maxproc command\n"
        "smtp      inet  n       -       y       -       1       postscreen\n"
        "submission inet n       -       y       -       -       smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_relay_restrictions=\n"
        "  -o { smtpd_client_restrictions = check_client_access cdb:/etc/postfix/a,\n"
        "       permit_sasl_authenticated, reject }\n"
        "  -osmtpd_tls_auth_only=yes\n"
        "dovecot   unix  -       n       n       -       -       pipe\n"
        "  flags=DRhu argv=/usr/lib/dovecot/dovecot-lda -d ${recipient}\n"
    )
    master = parse_master_cf(text)
    assert master.problems == ()
    smtp, submission, dovecot = master.services
    assert (smtp.key, smtp.command, smtp.overrides) == ("smtp/inet", "postscreen", {})
    assert submission.command == "smtpd"
    over = {n: (s.value, s.line, s.service) for n, s in submission.overrides.items()}
    assert over == {
        "syslog_name": ("postfix/submission", 4, "submission/inet"),
        "smtpd_relay_restrictions": ("", 5, "submission/inet"),
        "smtpd_client_restrictions": (
            "check_client_access cdb:/etc/postfix/a,       permit_sasl_authenticated, reject",
            6,
            "submission/inet",
        ),
        "smtpd_tls_auth_only": ("yes", 8, "submission/inet"),
    }
    assert dovecot.args == ("flags=DRhu", "argv=/usr/lib/dovecot/dovecot-lda", "-d", "${recipient}")


def test_master_cf_problems() -> None:
    master = parse_master_cf("smtp inet n - y - - smtpd\n  -o =x\nbroken inet n\n")
    assert [(p.line, p.message) for p in master.problems] == [
        (2, "smtp/inet: expected -o name=value"),
        (3, "a service needs 8 fields, got 3"),
    ]


def test_expand_one_and_more_levels() -> None:
    params = {
        "office": "10.0.0.0/8 $lab",
        "lab": "192.168.7.0/24",
        "data_directory": "/var/lib/postfix",
        "set": "x",
        "unset": "",
    }
    lookup = lambda name: params.get(name, "")  # noqa: E731 - a one-line lookup table
    assert expand("127.0.0.0/8 $office", lookup) == "127.0.0.0/8 10.0.0.0/8 192.168.7.0/24"
    assert expand("lmdb:${data_directory}/x $(set)", lookup) == "lmdb:/var/lib/postfix/x x"
    assert expand("${set?yes}${unset?no}", lookup) == "yes"
    assert expand("${unset:fallback} ${set:fallback}", lookup) == "fallback "
    assert expand("${set?{a b}:{c}} ${unset?{a}:{c d}}", lookup) == "a b c d"


def test_expand_gives_up_on_a_loop() -> None:
    assert expand("$a", lambda name: "$a") == "$a"


def test_split_list_keeps_brace_groups_whole() -> None:
    value = "permit_mynetworks,reject_unauth_destination check_policy_service { inet:h:1, x=y }"
    assert split_list(value) == [
        "permit_mynetworks",
        "reject_unauth_destination",
        "check_policy_service",
        "{ inet:h:1, x=y }",
    ]


def test_join_list_keeps_a_restriction_beside_its_argument() -> None:
    tokens = ["permit_mynetworks", "check_client_access", "cdb:/a", "reject_rbl_client", "z.org"]
    joined = "permit_mynetworks, check_client_access cdb:/a, reject_rbl_client z.org"
    assert join_list(tokens) == joined
    assert join_list(tokens, compact=True) == ",".join(tokens)


def test_referenced_names() -> None:
    assert referenced_names("$a ${b?x} $(c) lmdb:${data_directory}/d") == {
        "a", "b", "c", "data_directory",
    }  # fmt: skip


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,30}", fullmatch=True)
# Printable text without line breaks (str.splitlines would break on \x0b, \x1c, \u2028 ...).
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("éß€"))
VALUES = TEXT.map(str.strip)


@given(st.dictionaries(NAMES, VALUES, max_size=12), st.lists(TEXT.map(str.strip), max_size=4))
def test_main_cf_round_trip(settings: dict[str, str], comments: list[str]) -> None:
    lines = [f"# {c}" for c in comments]
    for name, value in settings.items():
        lines += [f"{name} = {value}", "", "    # indented comment"]
    assert values("\n".join(lines) + "\n") == settings


ELEMENTS = st.from_regex(r"[A-Za-z0-9_.:/\[\]=*-]{1,20}", fullmatch=True)


@given(NAMES, st.lists(ELEMENTS, min_size=1, max_size=8), st.integers(1, 3))
def test_a_list_folded_over_continuation_lines_reads_back(
    name: str, items: list[str], per_line: int
) -> None:
    rows = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    text = f"{name} =\n" + "".join(f"    {row},\n" for row in rows)
    assert split_list(values(text)[name]) == items


@given(
    st.dictionaries(NAMES, st.from_regex(r"[A-Za-z0-9_./:$-]{0,20}", fullmatch=True), max_size=6),
    st.dictionaries(NAMES, TEXT.filter(lambda v: "{" not in v and "}" not in v).map(str.strip)),
)
def test_master_cf_overrides_round_trip(plain: dict[str, str], braced: dict[str, str]) -> None:
    lines = ["custom    unix  -       -       n       -       -       smtp"]
    lines += [f"  -o {name}={value}" for name, value in plain.items()]
    lines += [f"  -o {{ {name} = {value} }}" for name, value in braced.items()]
    (service,) = parse_master_cf("\n".join(lines) + "\n").services
    assert {n: s.value for n, s in service.overrides.items()} == {**plain, **braced}
