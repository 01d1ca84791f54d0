"""Make tiny real Debian source packages for tests, with python-debian for the metadata."""

from __future__ import annotations

import subprocess
from pathlib import Path

from debian import changelog, deb822

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello from pfbuild"); return 0; }\n'
MAKEFILE = (
    "all: hello\n"
    "hello: hello.c\n"
    "\t$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $<\n"
    "install:\n"
    "\tinstall -D hello $(DESTDIR)/usr/bin/{name}\n"
)


def make_source_package(
    where: Path,
    name: str = "pfbuild-hello",
    version: str = "1.0",
    distribution: str = "unstable",
    *,
    rules_extra: str = "",
    fail_build: bool = False,
    changes: tuple[str, ...] = ("Test package made by the pfbuild test suite.",),
) -> Path:
    """Write a native source package and build its .dsc with dpkg-source; return the .dsc."""
    tree = where / f"{name}-{version}"
    (tree / "debian" / "source").mkdir(parents=True, exist_ok=True)
    (tree / "hello.c").write_text(HELLO_C)
    makefile = MAKEFILE.format(name=name)
    if fail_build:
        makefile = makefile.replace("all: hello\n", "all:\n\t@echo deliberate failure; exit 1\n")
    (tree / "Makefile").write_text(makefile)
    (tree / "debian" / "source" / "format").write_text("3.0 (native)\n")
    source = deb822.Deb822(
        {
            "Source": name,
            "Section": "misc",
            "Priority": "optional",
            "Maintainer": "pfbuild tests <tests@pfbuild.invalid>",
            "Build-Depends": "debhelper-compat (= 13)",
            "Standards-Version": "4.7.0",
            "Rules-Requires-Root": "no",
        }
    )
    binary = deb822.Deb822(
        {
            "Package": name,
            "Architecture": "any",
            "Depends": "${shlibs:Depends}, ${misc:Depends}",
            "Description": "tiny test package\n Built by the pfbuild test suite.",
        }
    )
    (tree / "debian" / "control").write_text(f"{source.dump()}\n{binary.dump()}")
    rules = tree / "debian" / "rules"
    rules.write_text(f"#!/usr/bin/make -f\n{rules_extra}\n%:\n\tdh $@\n")
    rules.chmod(0o755)
    log = changelog.Changelog()
    log.new_block(
        package=name,
        version=version,
        distributions=distribution,
        urgency="medium",
        author="pfbuild tests <tests@pfbuild.invalid>",
        date="Wed, 25 Nov 2026 00:00:00 +0000",
    )
    for line in changes:
        log.add_change(f"  * {line}")
    (tree / "debian" / "changelog").write_text(str(log))
    subprocess.run(["dpkg-source", "-b", tree.name], cwd=where, check=True, capture_output=True)
    return where / f"{name}_{version}.dsc"


def unreproducible_rules(name: str = "pfbuild-hello") -> str:
    """debian/rules lines that install the build's nanosecond clock: never the same twice."""
    share = f"debian/{name}/usr/share/{name}"
    return (
        "override_dh_auto_install:\n"
        "\tdh_auto_install\n"
        f"\tmkdir -p {share}\n"
        f"\tdate +%s%N > {share}/build-stamp\n"
    )
