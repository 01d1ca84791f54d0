"""The configuration gate on what our packages install: main.cf and master.cf as a new install
writes them, judged with `postconf -d` of the very Postfix that was built.

The main package is installed (Internet Site, through debconf as an admin would answer) in a
testbed of the target with no network; the files and the postconf output are copied out and the
gate (lint.py) runs on them here. Our hardened defaults must pass with no finding at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.check.config.lint import ConfigReport, format_finding, lint_config
from builder.check.testbed import DEBS_MOUNT, ensure_testbed, package_debs, run_in_testbed
from builder.core.atomic import atomic_dir, pid_temp_dir, write_text
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

CONFIG_DIR = "packaged-config"
CONFIG_JSON = "config-gate.json"
OUTPUT_MOUNT = "/pfbuild/out"
TIMEOUT = 600.0
# The packages that carry main.cf and master.cf: the main package alone.
MAIN_PACKAGE = "postfix"
# Postfix 3.11 built without Berkeley DB still lists hash and btree in `postconf -m`: its
# surrogates (nbdb_surrogate.c) answer them with this hint. A table that works is the tell.
NO_BDB_HINT = "Berkeley DB support for 'hash:/tmp/pfbuild-bdb-probe' is not available"

INSTALL = f"""set -eu
export DEBIAN_FRONTEND=noninteractive
printf '%s\\n' 'postfix postfix/main_mailer_type select Internet Site' \\
  'postfix postfix/mailname string mail.example.org' | debconf-set-selections
apt-get install -y -q {DEBS_MOUNT}/{MAIN_PACKAGE}_*.deb
postconf -d > {OUTPUT_MOUNT}/postconf-d.txt
printf 'probe ok\n' > /tmp/pfbuild-bdb-probe
{{ postmap hash:/tmp/pfbuild-bdb-probe && echo 'postmap exit 0' || echo "postmap exit $?"; }} \
  > {OUTPUT_MOUNT}/bdb-probe.txt 2>&1
cp /etc/postfix/main.cf /etc/postfix/master.cf {OUTPUT_MOUNT}/
"""


def gate_packaged_config(
    ctx: Context, dist: Distribution, build_dir: Path, report_dir: Path, berkeley_db: bool = True
) -> ConfigReport:
    """Install the built main package in a testbed, copy out its configuration and gate it.

    A build without Berkeley DB (`berkeley_db` False) must show it: `postmap hash:` of the
    installed Postfix fails with Postfix's own "Berkeley DB support ... is not available".
    """
    debs = [d for d in package_debs(build_dir) if d.name.startswith(f"{MAIN_PACKAGE}_")]
    if len(debs) != 1:
        raise PfbuildError(
            f"no {MAIN_PACKAGE} package in {build_dir} to take the configuration from",
            f"found {len(debs)}",
            "build the postfix recipe first",
        )
    image = ensure_testbed(ctx, dist, debs, [], "config")
    with pid_temp_dir(ctx.tmp_dir, "config-gate-") as work:
        out = work / "out"
        out.mkdir()
        result = run_in_testbed(
            ctx,
            image,
            INSTALL,
            mounts={build_dir: (DEBS_MOUNT, "ro"), out: (OUTPUT_MOUNT, "rw")},
            log_path=work / "install.log",
            timeout=TIMEOUT,
        )
        if result.returncode != 0:
            write_text(report_dir / "config-gate.log", result.output)
            raise PfbuildError(
                f"cannot install {debs[0].name} in a clean {dist.name} testbed",
                f"exit {result.returncode}",
                f"see {report_dir / 'config-gate.log'}",
            )
        with atomic_dir(report_dir / CONFIG_DIR) as kept:
            for name in ("main.cf", "master.cf", "postconf-d.txt", "bdb-probe.txt"):
                (kept / name).write_bytes((out / name).read_bytes())
    kept_dir = report_dir / CONFIG_DIR
    if not berkeley_db:
        require_no_berkeley_db(kept_dir / "bdb-probe.txt", dist.name)
    report = lint_config(kept_dir, (kept_dir / "postconf-d.txt").read_text(errors="replace"))
    write_text(report_dir / CONFIG_JSON, json.dumps(report.as_json(), indent=2) + "\n")
    return report


def require_no_berkeley_db(probe: Path, target: str) -> None:
    """Refuse a build meant to be without Berkeley DB whose Postfix still makes hash: tables."""
    text = probe.read_text(errors="replace")
    if NO_BDB_HINT in text and "postmap exit 0" not in text:
        return
    last = text.strip().splitlines()[-1] if text.strip() else "no output"
    raise PfbuildError(
        f"the {target} postfix was to be built without Berkeley DB",
        f"`postmap hash:` in a testbed did not fail with Postfix's no-Berkeley-DB hint: {last}",
        "check the recipe's without_berkeley_db edits against debian/rules",
    )


def require_clean(report: ConfigReport, target: str) -> None:
    """Our packaged defaults may carry no finding at all, not even a warning."""
    if not report.findings:
        return
    raise PfbuildError(
        f"the configuration our {target} packages install fails the configuration gate",
        f"{len(report.findings)} finding(s), first: {format_finding(report.findings[0])}",
        "fix debian-templates/postfix/main.cf.in.j2 (or master.cf) and build again",
    )
