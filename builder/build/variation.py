"""Build B of verify-reproducible: how it differs from the normal build, as data and files.

sbuild arguments, a debian/rules wrapper and an sbuild configuration make build B differ in
build path, job count, build user (name, uid, home), clock, time zone, locale and umask.
"""

from __future__ import annotations

import os
import pwd
import shlex
from pathlib import Path

from builder.build.stagedir import give_to_build_user
from builder.core.context import Context

VARIANT_NAME = "b"
WRAPPER_MOUNT = "/opt/pfbuild-variation"
B_USER = "rebuilder"
B_UID = 2345
B_HOME = "/nonexistent/pfbuild-rebuilder"
B_BUILD_PATH = "/build/reproducible-b/a-longer-build-path"
B_TZ = "GMT-14"
B_LOCALE = "fr_CH.UTF-8"
B_LANGUAGE = "fr_CH:fr"
B_UMASK = "0002"
B_CLOCK_SHIFT = "+373d"
B_CLOCK_MIN_DAYS = 300
# Installed into B's chroot only: the clock and locale variations need them.
B_PACKAGES = ("faketime", "locales")
MARKER = "pfbuild-variation:"

NOT_VARIED = (
    (
        "hostname and domain name",
        "sbuild's unshare mode always names the build's UTS namespace 'sbuild' and has no "
        "option to change it",
    ),
    (
        "file system ordering",
        "disorderfs needs FUSE, which sbuild's unshare mode does not provide inside the chroot",
    ),
    (
        "kernel and CPU",
        "both builds run on this host's kernel and CPU (uname and CPU features are the same)",
    ),
    ("group", "sbuild creates every build user with the primary group 'sbuild'"),
)
NOTES = (
    f"B's chroot also has {' and '.join(B_PACKAGES)} installed (for the clock and the locale); "
    "otherwise both builds use the same build-deps chroot",
    "umask, locale, time zone and clock are set by a debian/rules wrapper in B, after "
    "dpkg-buildpackage --sanitize-env (which sbuild always passes and which would reset the "
    "umask to 0022 and LC_CTYPE/LC_COLLATE to C.UTF-8): B is as different as a builder "
    "running plain dpkg-buildpackage",
)


def rules_wrapper() -> str:
    """The debian/rules wrapper of build B: umask, locale, time zone and clock, then the rules."""
    clock = f"$(faketime -f {B_CLOCK_SHIFT} date -u +%Y-%m-%dT%H:%M:%SZ)"
    return (
        "#!/bin/sh\n"
        "# pfbuild verify-reproducible, build B. dpkg-buildpackage --sanitize-env resets the\n"
        "# umask and the locale, so they are set here, right before debian/rules.\n"
        f"umask {B_UMASK}\n"
        f"export TZ={B_TZ} LANG={B_LOCALE} LC_ALL={B_LOCALE} LANGUAGE={B_LANGUAGE}\n"
        "# Only the clock moves: by default libfaketime also shifts every file time stat()\n"
        "# reports, which a later real clock would not do (old upstream files would look\n"
        "# newer than SOURCE_DATE_EPOCH and be clamped in B only).\n"
        "export NO_FAKE_STAT=1\n"
        f'echo "{MARKER} target=$1 umask=$(umask) user=$(id -un) uid=$(id -u) home=$HOME '
        f'tz=$TZ lc_all=$LC_ALL charmap=$(locale charmap 2>/dev/null) clock={clock}"\n'
        f'exec faketime -f {B_CLOCK_SHIFT} debian/rules "$@"\n'
    )


def _perl(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sbuild_config(wrapper_dir: Path, runner: str) -> str:
    """Build B's sbuild configuration (SBUILD_CONFIG): user, mounted wrapper, locale."""
    # sbuild joins an external command into one string and runs it with /bin/sh -c.
    setup = [
        # sbuild runs a few commands (its disk-space check, dpkg --print-architecture) as the
        # user who started it, so that user must exist in the chroot beside the build user.
        f"getent passwd {shlex.quote(runner)} >/dev/null || useradd --system "
        "--home-dir /var/lib/sbuild --no-create-home --shell /bin/bash --gid sbuild "
        f"{shlex.quote(runner)}",
        shlex.join(["usermod", "--uid", str(B_UID), "--home", B_HOME, B_USER]),
        # sbuild gave the build folder to the build user before its uid changed.
        f"chown {B_USER} %SBUILD_BUILD_DIR",
    ]
    language, _, charset = B_LOCALE.partition(".")
    starting = [shlex.join(["localedef", "-i", language, "-f", charset, B_LOCALE])]
    return (
        "# pfbuild verify-reproducible, build B\n"
        f"$build_user = {_perl(B_USER)};\n"
        f"$unshare_bind_mounts = [ {{ directory => {_perl(str(wrapper_dir))}, "
        f"mountpoint => {_perl(WRAPPER_MOUNT)} }} ];\n"
        "$external_commands = {\n"
        f"    'chroot-setup-commands' => [ {', '.join(_perl(c) for c in setup)} ],\n"
        f"    'starting-build-commands' => [ {', '.join(_perl(c) for c in starting)} ],\n"
        "};\n"
        "1;\n"
    )


def variant_args() -> tuple[str, ...]:
    """sbuild arguments of build B (its job count is passed as `jobs`)."""
    return (
        f"--build-path={B_BUILD_PATH}",
        f"--add-depends={', '.join(B_PACKAGES)}",
        f"--debbuildopt=--rules-file={WRAPPER_MOUNT}/rules",
    )


def b_jobs(a_jobs: str) -> int:
    """B's compiler jobs: serial when A ran in parallel, parallel when A ran serially."""
    if a_jobs.isdigit() and int(a_jobs) > 1:
        return 1
    return max(2, os.cpu_count() or 1)


def sbuild_runner(ctx: Context) -> str:
    """The host user sbuild runs as: the build user when pfbuild is root, else ourselves."""
    if os.geteuid() == 0:
        return ctx.build_user
    return pwd.getpwuid(os.geteuid()).pw_name


def write_variation_files(ctx: Context, where: Path) -> Path:
    """Write the rules wrapper and sbuild configuration of build B; return the config's path."""
    wrapper = where / "rules"
    wrapper.write_text(rules_wrapper())
    wrapper.chmod(0o755)
    config = where / "sbuild.conf"
    config.write_text(sbuild_config(where, sbuild_runner(ctx)))
    config.chmod(0o644)
    give_to_build_user(ctx, wrapper, config)
    return config
