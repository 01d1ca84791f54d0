"""Debian's own tests on our packages: the packaging's autopkgtests (debian/tests), run for real.

The real `autopkgtest` of the target (installed in a testbed of that target, see testbed.py)
runs the packaging's tests against the .debs just built, with the `null` virtualisation inside a
throwaway container that has no network. The tests were written by other people for the same
binaries, so their verdict is the most independent oracle the check has.

A recipe may declare a deviation: a unittest case of a test that fails because of our hardened
defaults, with the reason. The check passes only when every declared deviation fails exactly as
declared and everything else passes: a declaration can never hide another failure, and one that
no longer fails is reported, so it is removed instead of lingering.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from debian.deb822 import Deb822, PkgRelation

from builder.check.testbed import DEBS_MOUNT, ensure_testbed, package_debs, run_in_testbed
from builder.core import run
from builder.core.atomic import atomic_dir, pid_temp_dir, remove_path, write_text
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution
from builder.model.recipe import Deviation, Recipe

log = logging.getLogger("pfbuild")

AUTOPKGTEST_JSON = "autopkgtest.json"
AUTOPKGTEST_LOG = "autopkgtest.log"
# autopkgtest's own result files, kept beside the report so its verdict can be judged again.
OUTPUT_DIR = "autopkgtest-output"
KEPT_FILES = ("summary", "testpkg-version")
TIMEOUT = 1800.0
SOURCE_MOUNT = "/pfbuild/src"
OUTPUT_MOUNT = "/pfbuild/out"
# Debian's postfix test sets the hostname (`hostname localhost`); nothing else needs more.
CAPABILITIES = ("SYS_ADMIN",)
# autopkgtest's exit codes that mean it could not judge the package at all.
NOT_RUN = {8: "no tests in this package", 12: "erroneous package", 16: "testbed failure"}

_SUMMARY_RE = re.compile(
    r"^(?P<name>\S+)\s+(?P<result>PASS|FAIL|SKIP|FLAKY|NEUTRAL)\b\s*(?P<detail>.*)$"
)
_CASE_RE = re.compile(r"^(?P<kind>FAIL|ERROR): (?P<case>\w+) \(")
_RAN_RE = re.compile(r"^Ran (?P<count>\d+) tests? in ")
# A direct `postfix check`, `postfix set-permissions` or `service postfix` failure in the test
# script: its status is folded into the script's one exit status with the unittest run's, so
# it must not pass for a declared deviation. Lines of the mail log dumped later start with a
# date and are not matched.
_FATAL_RE = re.compile(r"^(postfix|postsuper|postmap|postconf)(/[\w-]+)?(\[\d+\])?: fatal: ")


@dataclass(frozen=True)
class Outcome:
    """One autopkgtest test or one unittest case of it, and how it ended."""

    name: str
    outcome: str  # pass, fail, error, skip, deviation
    detail: str = ""


@dataclass(frozen=True)
class AutopkgtestReport:
    """What Debian's tests said about one target's packages, judged against the declarations."""

    target: str
    verdict: str  # pass, fail, none (the packaging has no tests)
    autopkgtest: str = ""
    tests: tuple[Outcome, ...] = ()
    cases: tuple[Outcome, ...] = ()
    deviations: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    log: str = AUTOPKGTEST_LOG
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def lines(self) -> list[str]:
        """The report as text: one line per test and per case that did not simply pass."""
        tool = self.autopkgtest or "not run"
        lines = [
            f"autopkgtest ({tool}) for {self.target}: {self.verdict.upper()}",
            *[f"  note: {n}" for n in self.notes],
        ]
        lines += [f"  {t.name}: {t.outcome} {t.detail}".rstrip() for t in self.tests]
        passed = sum(1 for c in self.cases if c.outcome == "pass")
        if self.cases:
            lines.append(f"  unittest cases: {passed} of {len(self.cases)} passed")
        lines += [f"  {d}" for d in self.deviations]
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        return lines


def packages_for_tests(control: Path) -> list[str]:
    """The packages debian/tests/control asks for, first alternative each (not `@` and kin)."""
    wanted: list[str] = []
    with control.open() as handle:
        for paragraph in Deb822.iter_paragraphs(handle):
            text = paragraph.get("Depends", "")
            for alternatives in _relations(text):
                name = str(alternatives[0]["name"])
                if not name.startswith("@") and name not in wanted:
                    wanted.append(name)
    return wanted


def _relations(text: str) -> list[list[Any]]:
    # python-debian keeps `@`, `@builddeps@` as raw names (and logs that it did): drop them first.
    kept = ", ".join(
        p.strip() for p in text.split(",") if p.strip() and not p.strip().startswith("@")
    )
    return PkgRelation.parse_relations(kept) if kept else []


def parse_summary(text: str) -> list[Outcome]:
    """autopkgtest's summary file: one `<test> <RESULT> [detail]` line per test."""
    found = []
    for line in text.splitlines():
        match = _SUMMARY_RE.match(line.strip())
        if match:
            result = match["result"]
            outcome = {"PASS": "pass", "SKIP": "skip"}.get(result, "fail")
            found.append(Outcome(match["name"], outcome, match["detail"].strip()))
    return found


def parse_unittest(test: str, stdout: str) -> tuple[int | None, list[Outcome]]:
    """How many unittest cases a test's output says ran, and each failing one with its detail."""
    lines = stdout.splitlines()
    ran = None
    failing: list[Outcome] = []
    for number, line in enumerate(lines):
        ran_match = _RAN_RE.match(line)
        if ran_match:
            ran = int(ran_match["count"])
        case = _CASE_RE.match(line)
        if case:
            kind = "fail" if case["kind"] == "FAIL" else "error"
            failing.append(
                Outcome(f"{test}/{case['case']}", kind, _case_detail(lines[number + 1 :]))
            )
    return ran, failing


def _case_detail(rest: Sequence[str]) -> str:
    """The exception line that ends one failure's traceback."""
    block: list[str] = []
    seen_rule = 0
    for line in rest:
        if line.startswith("-" * 20):
            seen_rule += 1
            if seen_rule == 2:
                break
            continue
        if line.startswith("=" * 20) or _RAN_RE.match(line):
            break
        block.append(line)
    texts = [line for line in block if line.strip() and not line.startswith(" ")]
    return texts[-1].strip() if texts else ""


def case_names(tests_dir: Path) -> list[str]:
    """The unittest case names in the packaging's Python test files (to name the passing ones)."""
    names: list[str] = []
    for path in sorted(tests_dir.glob("*.py")):
        for match in re.finditer(
            r"^    def (test_\w+)\(self", path.read_text(errors="replace"), re.M
        ):
            if match[1] not in names:
                names.append(match[1])
    return names


def judge(
    target: str,
    tests: Sequence[Outcome],
    runs: Mapping[str, tuple[int | None, list[Outcome], list[str]]],
    names: Sequence[str],
    declared: Sequence[Deviation],
) -> AutopkgtestReport:
    """The verdict: every test passes, or fails only by the declared deviations, as declared.

    `runs` maps each test to what its output showed: the unittest count, the failing cases and
    fatal lines of the steps around them.
    """
    problems: list[str] = []
    deviations: list[str] = []
    cases: list[Outcome] = []
    by_test = {t.name: t for t in tests}
    for deviation in declared:
        if deviation.test.partition("/")[0] not in by_test:
            problems.append(f"declared deviation {deviation.test}: no such test ran")
    for test in tests:
        ran, failing, fatal = runs.get(test.name, (None, [], []))
        mine = {d.test: d for d in declared if d.test.partition("/")[0] == test.name}
        failed = {c.name: c for c in failing}
        for case_name, case in failed.items():
            declaration = mine.get(case_name)
            if declaration is None:
                problems.append(f"{case_name}: {case.outcome}: {_cut(case.detail)}")
            elif case.outcome != declaration.outcome or not re.search(
                declaration.match, case.detail
            ):
                problems.append(
                    f"{case_name}: {case.outcome} ({case.detail}), not as declared "
                    f"({declaration.outcome} matching {declaration.match!r})"
                )
            else:
                deviations.append(f"{case_name}: deviation, as declared: {declaration.reason}")
                case = Outcome(case.name, "deviation", case.detail)
            cases.append(case)
        for name, deviation in mine.items():
            if name not in failed:
                problems.append(
                    f"declared deviation {name} did not fail: remove it from the recipe "
                    f"({deviation.reason})"
                )
        if ran is not None:
            others = [n for n in names if f"{test.name}/{n}" not in failed]
            if len(others) + len(failed) == ran:
                cases += [Outcome(f"{test.name}/{n}", "pass") for n in others]
            else:
                cases.append(Outcome(f"{test.name}/(others)", "pass", f"{ran - len(failed)} cases"))
        if test.outcome == "fail":
            if ran is None:
                problems.append(f"{test.name}: {test.detail or 'failed'}")
            elif not failed:
                problems.append(f"{test.name}: {test.detail}, though every unittest case passed")
            problems += [f"{test.name}: {line}" for line in fatal]
    verdict = "fail" if problems or not tests else "pass"
    return AutopkgtestReport(
        target=target,
        verdict=verdict,
        tests=tuple(tests),
        cases=tuple(cases),
        deviations=tuple(deviations),
        problems=tuple(problems) or (("autopkgtest reported no test",) if not tests else ()),
    )


def _cut(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fatal_lines(stdout: str) -> list[str]:
    """Lines where a Postfix command of the test script itself gave up."""
    return [line.strip() for line in stdout.splitlines() if _FATAL_RE.match(line.strip())]


def autopkgtest_cmdline(debs: Sequence[str]) -> str:
    """The command run in the testbed: our packages, the unpacked source, the null testbed."""
    argv = ["autopkgtest", "--output-dir", OUTPUT_MOUNT, "--no-built-binaries", *debs]
    return shlex.join([*argv, f"{SOURCE_MOUNT}/", "--", "null"]) + '; echo "autopkgtest-exit: $?"'


def judge_output(
    target: str, output: Path, names: Sequence[str], declared: Sequence[Deviation]
) -> AutopkgtestReport:
    """Judge what autopkgtest left in `output` (summary, <test>-stdout) against `declared`."""
    summary = output / "summary"
    tests = parse_summary(summary.read_text() if summary.is_file() else "")
    runs = {}
    for test in tests:
        stdout_path = output / f"{test.name}-stdout"
        stdout = stdout_path.read_text(errors="replace") if stdout_path.is_file() else ""
        ran, failing = parse_unittest(test.name, stdout)
        runs[test.name] = (ran, failing, fatal_lines(stdout))
    return judge(target, tests, runs, names, declared)


def run_autopkgtests(
    ctx: Context, recipe: Recipe, version: str, dist: Distribution, report_dir: Path
) -> AutopkgtestReport:
    """Run the packaging's autopkgtests on one target's build; write the report and the log."""
    build_dir = ctx.build_dir(recipe.name, version, dist.name)
    dscs = sorted(ctx.source_dir(recipe.name, version, dist.name).glob("*.dsc"))
    if len(dscs) != 1:
        raise PfbuildError(
            f"no source package of {recipe.name} {version} for {dist.name} to take the tests from",
            f"found {len(dscs)} .dsc files",
            f"run `pfbuild source {recipe.name} {version} --target {dist.name}`",
        )
    debs = package_debs(build_dir)
    with pid_temp_dir(ctx.tmp_dir, "autopkgtest-") as work:
        source = work / "src"
        run.run(["dpkg-source", "--no-check", "-x", dscs[0], source])
        control = source / "debian" / "tests" / "control"
        if not control.is_file():
            report = AutopkgtestReport(
                dist.name, "none", notes=("the packaging has no debian/tests",)
            )
            _write(report, report_dir, "")
            return report
        tools = ["autopkgtest", "dpkg-dev", *packages_for_tests(control)]
        image = ensure_testbed(ctx, dist, debs, tools, "autopkgtest")
        output = work / "out"
        output.mkdir()
        result = run_in_testbed(
            ctx,
            image,
            autopkgtest_cmdline([f"{DEBS_MOUNT}/{d.name}" for d in debs]),
            mounts={
                build_dir: (DEBS_MOUNT, "ro"),
                source: (SOURCE_MOUNT, "ro"),
                output: (f"{OUTPUT_MOUNT}", "rw"),
            },
            log_path=work / AUTOPKGTEST_LOG,
            timeout=TIMEOUT,
            capabilities=CAPABILITIES,
        )
        status = _exit_status(result.output)
        if status in NOT_RUN or status is None or status >= 20:
            _write_log(report_dir, result.output)
            why = NOT_RUN.get(status or 0, f"exit status {status}")
            raise PfbuildError(
                f"autopkgtest could not test {recipe.name} {version} on {dist.name}",
                why,
                f"see {report_dir / AUTOPKGTEST_LOG}",
            )
        kept = report_dir / OUTPUT_DIR
        with atomic_dir(kept) as tmp:
            for path in output.iterdir():
                if path.is_file() and (path.name in KEPT_FILES or path.name.endswith("-stdout")):
                    shutil.copyfile(path, tmp / path.name)
        names = case_names(source / "debian" / "tests")
        report = judge_output(dist.name, kept, names, recipe.autopkgtest_deviations)
        version_line = re.search(r"autopkgtest \[[\d:]+\]: version (\S+)", result.output)
        report = replace(report, autopkgtest=version_line[1] if version_line else "")
        _write(report, report_dir, result.output)
    return report


def _exit_status(output: str) -> int | None:
    found = re.findall(r"^autopkgtest-exit: (\d+)$", output, re.M)
    return int(found[-1]) if found else None


def _write_log(report_dir: Path, output: str) -> None:
    write_text(report_dir / AUTOPKGTEST_LOG, output)


def _write(report: AutopkgtestReport, report_dir: Path, output: str) -> None:
    _write_log(report_dir, output)
    write_text(report_dir / AUTOPKGTEST_JSON, report.to_json())


def discard_autopkgtest_report(report_dir: Path) -> None:
    """Remove an earlier run's report, log and output: they describe other packages."""
    for name in (AUTOPKGTEST_JSON, AUTOPKGTEST_LOG, OUTPUT_DIR):
        remove_path(report_dir / name)


def require_autopkgtest_passed(report: AutopkgtestReport, report_dir: Path) -> None:
    """Raise a one-line PfbuildError when Debian's tests failed beyond the declared deviations."""
    if report.verdict in ("pass", "none"):
        return
    raise PfbuildError(
        f"Debian's autopkgtests failed for {report.target}",
        f"{len(report.problems)} problem(s), first: {report.problems[0]}",
        f"see {report_dir / AUTOPKGTEST_LOG}; fix the package or the defaults (a failure our "
        "hardening causes on purpose is declared in the recipe's autopkgtest_deviations)",
    )
