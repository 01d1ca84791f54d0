"""Host prerequisites: report each with its version or what is missing, and fix them as root."""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from builder.core import run
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.core.errors import CommandError, PfbuildError

log = logging.getLogger("pfbuild")

SUBID_COUNT = 65536
MIN_FREE_GIB = 10
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Tool:
    """A host command pfbuild runs, and the Debian package that ships it."""

    label: str
    command: str
    package: str


TOOLS = (
    Tool("sbuild", "sbuild", "sbuild"),
    Tool("mmdebstrap", "mmdebstrap", "mmdebstrap"),
    Tool("aptly", "aptly", "aptly"),
    Tool("gpg", "gpg", "gpg"),
    Tool("gpgv", "gpgv", "gpgv"),
    Tool("lintian", "lintian", "lintian"),
    Tool("blhc", "blhc", "blhc"),
    Tool("hardening-check", "hardening-check", "devscripts"),
    Tool("dpkg-source", "dpkg-source", "dpkg-dev"),
    Tool("readelf", "readelf", "binutils"),
    Tool("newuidmap", "newuidmap", "uidmap"),
    Tool("dockerd", "dockerd", "docker.io"),
    # verify-reproducible explains differing .debs with it (minimal: no Recommends).
    Tool("diffoscope", "diffoscope", "diffoscope-minimal"),
)
# Needed by the tools above but not found by a command name of their own.
SUPPORT_PACKAGES = ("debian-archive-keyring", "ca-certificates", "xz-utils", "zstd")


@dataclass(frozen=True)
class Check:
    """One prerequisite: whether it holds, what was found, and the root commands that fix it."""

    name: str
    ok: bool
    detail: str
    packages: tuple[str, ...] = ()


def package_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    try:
        text = run.output(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Version}", package])
    except (CommandError, PfbuildError):
        return None
    status, _, version = text.partition(" ")
    return version.strip() if status.startswith("ii") else None


def check_tool(tool: Tool) -> Check:
    """Is the tool's command on PATH, and which package version provides it."""
    if shutil.which(tool.command, path=SBIN_PATH) is None:
        return Check(tool.label, False, f"not installed (package {tool.package})", (tool.package,))
    return Check(tool.label, True, package_version(tool.package) or "installed")


def policy_candidate(policy: str) -> str | None:
    """The candidate version in `apt-cache policy` output, None when apt has none."""
    for line in policy.splitlines():
        name, _, value = line.strip().partition(":")
        if name == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


def check_cosign() -> Check:
    """cosign on PATH; missing only where the host's distribution packages it (Debian 13)."""
    if shutil.which("cosign", path=SBIN_PATH) is not None:
        return Check("cosign", True, package_version("cosign") or "installed")
    try:
        candidate = policy_candidate(run.output(["apt-cache", "policy", "cosign"]))
    except (CommandError, PfbuildError):
        candidate = None
    if candidate is not None:
        return Check("cosign", False, f"not installed (package cosign {candidate})", ("cosign",))
    # Debian 12 has no cosign: the images are signed and checked with a trixie tool image.
    return Check("cosign", True, "not packaged here: runs in the pfbuild-cosign image (trixie)")


def check_support_packages() -> Check:
    """Keyrings and compressors that the tools need."""
    missing = tuple(p for p in SUPPORT_PACKAGES if package_version(p) is None)
    if missing:
        return Check("support packages", False, f"missing {' '.join(missing)}", missing)
    return Check("support packages", True, " ".join(SUPPORT_PACKAGES))


def subid_ranges(user: str, path: Path) -> list[tuple[int, int]]:
    """The (start, count) ranges /etc/subuid or /etc/subgid gives `user`."""
    ranges = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] == user and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((int(parts[1]), int(parts[2])))
    return ranges


def check_build_user(user: str, etc: Path = Path("/etc")) -> Check:
    """The unprivileged build user exists and owns 65536 subordinate uids and gids."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        return Check("build user", False, f"user {user!r} does not exist")
    for kind in ("subuid", "subgid"):
        if not any(count >= SUBID_COUNT for _, count in subid_ranges(user, etc / kind)):
            return Check(
                "build user", False, f"{user!r} has no {SUBID_COUNT}-id range in /etc/{kind}"
            )
    start, count = subid_ranges(user, etc / "subuid")[0]
    return Check("build user", True, f"{user} (subuid/subgid {start}+{count})")


def check_userns() -> Check:
    """Unprivileged user namespaces are allowed (Ubuntu 24.04+ restricts them through AppArmor)."""
    restrict = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    if restrict.exists() and restrict.read_text().strip() == "1":
        return Check("user namespaces", False, "restricted by AppArmor (sbuild unshare mode fails)")
    max_ns = Path("/proc/sys/user/max_user_namespaces")
    if max_ns.exists() and max_ns.read_text().strip() == "0":
        return Check("user namespaces", False, "user.max_user_namespaces is 0")
    return Check("user namespaces", True, "unprivileged user namespaces allowed")


def check_docker(ctx: Context) -> Check:
    """The Docker Engine answers."""
    where = ctx.docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_SOCKET
    try:
        version = docker_client(ctx).version().get("Version", "?")
    except PfbuildError:
        return Check("docker engine", False, f"not reachable at {where}")
    return Check("docker engine", True, f"{version} at {where}")


def check_disk(ctx: Context) -> Check:
    """Enough free space in the workspace for chroots, builds and images."""
    free = shutil.disk_usage(ctx.workspace).free / 2**30
    ok = free >= MIN_FREE_GIB
    detail = f"{free:.0f} GiB free in {ctx.workspace}"
    return Check("disk", ok, detail if ok else f"only {detail} (need {MIN_FREE_GIB} GiB)")


def run_checks(ctx: Context) -> list[Check]:
    """Every prerequisite, in the order the report shows them."""
    checks = [check_tool(tool) for tool in TOOLS]
    checks.append(check_cosign())
    checks.append(check_support_packages())
    checks.append(check_build_user(ctx.build_user))
    checks.append(check_userns())
    checks.append(check_docker(ctx))
    checks.append(check_disk(ctx))
    return checks


def format_report(checks: list[Check]) -> str:
    """A table a person can read: status, name, detail."""
    width = max(len(c.name) for c in checks)
    return "\n".join(
        f"{'ok' if c.ok else 'MISSING':8}{c.name:<{width}}  {c.detail}" for c in checks
    )


def _free_subid_start(etc: Path) -> int:
    end = 100000
    for kind in ("subuid", "subgid"):
        for line in (etc / kind).read_text().splitlines() if (etc / kind).exists() else []:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return end


def fix_cmdlines(ctx: Context, checks: list[Check], etc: Path = Path("/etc")) -> list[list[str]]:
    """The root commands that fix what `checks` found missing (dockerd is started separately)."""
    cmds: list[list[str]] = []
    packages = sorted({p for c in checks if not c.ok for p in c.packages})
    if packages:
        cmds.append(["apt-get", "update", "-q"])
        cmds.append(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
    failing = {c.name for c in checks if not c.ok}
    if "build user" in failing:
        user = ctx.build_user
        try:
            pwd.getpwnam(user)
        except KeyError:
            cmds.append(
                [
                    "useradd",
                    "--system",
                    "--create-home",
                    "--home-dir",
                    f"/var/lib/{user}",
                    "--shell",
                    "/usr/sbin/nologin",
                    user,
                ]
            )
        start = _free_subid_start(etc)
        span = f"{start}-{start + SUBID_COUNT - 1}"
        cmds.append(["usermod", "--add-subuids", span, "--add-subgids", span, user])
    if "user namespaces" in failing:
        cmds.append(["sysctl", "-w", "kernel.apparmor_restrict_unprivileged_userns=0"])
    return cmds


def dockerd_cmdline(ctx: Context) -> list[str]:
    """How pfbuild starts an engine: no bridge, no iptables (containers use host networking)."""
    cmd = ["dockerd", "--bridge=none", "--iptables=false"]
    host = ctx.docker_host
    if host and host != DEFAULT_DOCKER_SOCKET:
        # A private engine beside the system one: its own socket, state and pid file.
        state = ctx.dockerd_dir
        # exec-root holds containerd's socket: keep it short (unix socket paths are <108 bytes).
        short = Path("/run") / f"pfbuild-docker-{hashlib.sha256(host.encode()).hexdigest()[:8]}"
        cmd += [
            f"--host={host}",
            f"--data-root={state / 'data'}",
            f"--exec-root={short}",
            f"--pidfile={state / 'dockerd.pid'}",
        ]
    return cmd


def start_dockerd(ctx: Context, timeout: float = 60.0) -> None:
    """Start dockerd in the background, logging to the workspace, and wait until it answers."""
    log_path = ctx.logs_dir / "dockerd.log"
    pid = run.spawn_daemon(dockerd_cmdline(ctx), log_path)
    log.info("started dockerd (pid %d), log %s", pid, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check_docker(ctx).ok:
            return
        time.sleep(0.5)
    raise PfbuildError(
        "dockerd did not answer after it was started",
        f"no reply within {timeout:.0f} s",
        f"read {log_path}",
    )


def fix(ctx: Context, checks: list[Check]) -> list[Check]:
    """Install, create and start what is missing (root only); return the checks run afresh."""
    cmds = fix_cmdlines(ctx, checks)
    docker_down = any(c.name == "docker engine" and not c.ok for c in checks)
    if os.geteuid() != 0:
        steps = [shlex.join(c) for c in cmds]
        if docker_down:
            steps.append(shlex.join(dockerd_cmdline(ctx)) + " &")
        raise PfbuildError(
            "`pfbuild doctor --fix` needs root",
            "it installs packages, creates the build user and starts dockerd",
            "run as root: " + " ; ".join(steps) if steps else "run it as root",
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in cmds:
        run.run(cmd, env=env, log_path=ctx.logs_dir / "doctor-fix.log")
    if docker_down:
        start_dockerd(ctx)
    return run_checks(ctx)
