"""Disposable test environments of a target, for Debian's own QA on our packages.

A testbed is the target's base image with the test tools installed and every dependency of our
.debs downloaded into a local apt repository inside it; apt's sources then point at that folder
only. The tests themselves run in a container of the testbed with no network: nothing they do
reaches anything but the container's own loopback, and the packages they install are the ones
apt verified (by the archive's signature and the index hashes) while the testbed was made.

Testbeds are cached in the engine by a key of everything that decides their content (base image,
tools, our packages' relations); a container of one is removed as soon as its run ends.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker.errors
from debian.debfile import DebFile
from docker.models.containers import Container
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from builder.bootstrap.buildenv import ensure_base_image
from builder.core.context import Context
from builder.core.engine import docker_client
from builder.core.errors import PfbuildError
from builder.model.distro import Distribution

log = logging.getLogger("pfbuild")

TESTBED_REPO = "pfbuild-testbed"
TESTBED_LABEL = "org.pfbuild.testbed"
# Whose packages a testbed holds: checks of two recipes on one target run side by side, and
# neither may remove the testbed the other is about to use.
PACKAGES_LABEL = "org.pfbuild.testbed.packages"
DEPS_DIR = "/var/lib/pfbuild-testbed/deps"
DEBS_MOUNT = "/pfbuild/debs"
# The relations that decide which other packages installing ours pulls in.
RELATIONS = ("Pre-Depends", "Depends", "Recommends")
PREPARE_TIMEOUT = 900.0

_PREPARE = """set -eu
export DEBIAN_FRONTEND=noninteractive
# Nothing starts while the testbed is made: packages are unpacked and configured only.
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
apt-get update -q
apt-get install -y -q --no-install-recommends apt-utils {tools}
apt-get install -y -q --download-only {debs}
mkdir -p {deps}
find /var/cache/apt/archives -maxdepth 1 -name '*.deb' -exec mv -t {deps} {{}} +
cd {deps}
apt-ftparchive packages . > Packages
# From here on apt sees only what the testbed holds: the tests run without a network.
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:{deps} ./' > /etc/apt/sources.list
echo 'Acquire::Languages "none";' > /etc/apt/apt.conf.d/90pfbuild-testbed
apt-get update -q
rm -f /usr/sbin/policy-rc.d
"""


@dataclass(frozen=True)
class TestbedRun:
    """What one command in a testbed container did."""

    returncode: int
    output: str


def package_debs(build_dir: Path) -> list[Path]:
    """The installable packages of a build: every .deb but the debug symbols."""
    return sorted(
        p for p in build_dir.glob("*.deb") if not p.name.split("_", 1)[0].endswith("-dbgsym")
    )


def relations(debs: Sequence[Path]) -> list[str]:
    """Each package's name and the relations that pull in others, one line per field."""
    lines = []
    for deb in debs:
        control = DebFile(str(deb)).debcontrol()
        lines.append(f"Package: {control['Package']}")
        lines += [f"{field}: {control[field]}" for field in RELATIONS if field in control]
    return lines


def testbed_key(base_id: str, tools: Sequence[str], debs: Sequence[Path], purpose: str) -> str:
    """What decides a testbed's content; not our packages' versions, which runs bring along."""
    text = "\n".join([purpose, base_id, " ".join(sorted(tools)), *relations(debs)])
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_script(tools: Sequence[str], debs: Sequence[str]) -> str:
    """The shell script that turns a base image into a testbed (run with the network)."""
    return _PREPARE.format(
        tools=" ".join(shlex.quote(t) for t in tools),
        debs=" ".join(shlex.quote(d) for d in debs),
        deps=DEPS_DIR,
    )


def ensure_testbed(
    ctx: Context,
    dist: Distribution,
    debs: Sequence[Path],
    tools: Sequence[str],
    purpose: str,
) -> str:
    """A testbed image of `dist` for `debs`, with `tools` installed; made once, then reused."""
    client = docker_client(ctx)
    base = ensure_base_image(ctx, dist)
    base_id = str(client.images.get(base).id)
    key = testbed_key(base_id, tools, debs, purpose)
    tag = f"{TESTBED_REPO}:{dist.name}-{purpose}-{key[:16]}"
    try:
        client.images.get(tag)
        log.info("%s: %s testbed reused (%s)", dist.name, purpose, tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    log.info("%s: making the %s testbed %s", dist.name, purpose, tag)
    script = prepare_script(tools, [f"{DEBS_MOUNT}/{d.name}" for d in debs])
    folders = {d.parent for d in debs}
    if len(folders) > 1:  # pragma: no cover - callers pass one build's packages
        raise RuntimeError(f"packages from several folders: {sorted(folders)}")
    owner = packages_owner(debs)
    log_path = ctx.logs_dir / f"testbed-{dist.name}-{purpose}-{owner}.log"
    container = client.containers.run(
        base,
        ["sh", "-c", script],
        network_mode="host",
        volumes={str(folder): {"bind": DEBS_MOUNT, "mode": "ro"} for folder in folders},
        detach=True,
    )
    try:
        result = _wait(container, PREPARE_TIMEOUT, log_path)
        if result.returncode != 0:
            raise PfbuildError(
                f"cannot make the {purpose} testbed for {dist.name}",
                f"its set-up exited {result.returncode}: {_last_line(result.output)}",
                f"see {log_path}; check the archive mirrors of {dist.name}",
            )
        repo, _, version = tag.partition(":")
        labels = [f"LABEL {TESTBED_LABEL}={dist.name}-{purpose}", f"LABEL {PACKAGES_LABEL}={owner}"]
        container.commit(repository=repo, tag=version, changes=labels)
    finally:
        container.remove(force=True, v=True)
    _remove_older(client, dist, purpose, owner, keep=tag)
    return tag


def packages_owner(debs: Sequence[Path]) -> str:
    """The first package name of a testbed's packages: which recipe's testbed it is."""
    return min((d.name.split("_", 1)[0] for d in debs), default="none")


def run_in_testbed(
    ctx: Context,
    image: str,
    script: str,
    *,
    mounts: Mapping[Path, tuple[str, str]],
    log_path: Path,
    timeout: float,
    capabilities: Sequence[str] = (),
) -> TestbedRun:
    """Run `script` (sh) in a throwaway container of `image` with no network; log its output.

    `mounts` maps host paths to (container path, "ro" or "rw").
    """
    client = docker_client(ctx)
    container = client.containers.run(
        image,
        ["sh", "-c", script],
        network_mode="none",
        hostname="localhost",
        cap_add=list(capabilities),
        volumes={
            str(host): {"bind": inside, "mode": mode} for host, (inside, mode) in mounts.items()
        },
        detach=True,
    )
    try:
        return _wait(container, timeout, log_path)
    finally:
        container.remove(force=True, v=True)


def _wait(container: Container, timeout: float, log_path: Path) -> TestbedRun:
    try:
        status = int(container.wait(timeout=timeout)["StatusCode"])
    except (ReadTimeout, RequestsConnectionError):
        container.kill()
        status = -1
    output = bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(output)
    if status == -1:
        raise PfbuildError(
            f"a testbed run did not finish within {timeout:g} s",
            f"last output: {_last_line(output)}",
            f"see {log_path}",
        )
    return TestbedRun(status, output)


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _remove_older(
    client: docker.DockerClient, dist: Distribution, purpose: str, owner: str, keep: str
) -> None:
    """Testbeds of the same packages, target and purpose for other inputs are out of date."""
    for image in client.images.list(filters={"label": f"{TESTBED_LABEL}={dist.name}-{purpose}"}):
        # One made before the packages label may be in use by another recipe's check: it stays
        # (`docker image prune -a` removes it once unused).
        if keep in image.tags or image.labels.get(PACKAGES_LABEL) != owner:
            continue
        try:
            client.images.remove(str(image.id), force=True)
        except docker.errors.APIError as exc:
            log.debug("old testbed %s stays: %s", image.id, exc)
