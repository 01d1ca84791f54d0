"""What an image holds, as dpkg in the image says it: every installed package for its SBOM."""

from __future__ import annotations

import docker
from builder.core import run
from builder.core.errors import PfbuildError
from builder.publish.sbom import PackageRecord

# `${db:Status-Abbrev}` first: dpkg also lists packages that were removed but not purged.
DPKG_QUERY_FORMAT = (
    "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}"
    "\t${source:Package}\t${source:Version}\n"
)


def installed_packages_cmdline() -> list[str]:
    """dpkg-query call that lists every package with its version and source package."""
    return ["dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT]


def parse_installed(text: str) -> list[PackageRecord]:
    """The installed packages (status `?i`) of dpkg-query's output, sorted by name."""
    records = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6:
            # The container's stderr comes along: a warning has no tab; a short record does.
            if "\t" in line:
                raise PfbuildError(f"unexpected dpkg-query line {line[:80]!r}")
            continue
        status, name, version, arch, source, source_version = fields
        if status[1:2] != "i":
            continue
        records.append(
            PackageRecord(name, version, arch, source or name, source_version or version)
        )
    return sorted(records, key=lambda r: (r.name, r.arch))


def image_packages_installed(client: docker.DockerClient, image: str) -> list[PackageRecord]:
    """Every package installed in `image`, read by dpkg-query in a one-shot container."""
    cmd = installed_packages_cmdline()
    proc = run.run_in_image(client, image, cmd[1:], entrypoint=cmd[:1])
    records = parse_installed(proc.stdout.decode(errors="replace"))
    if not records:
        raise PfbuildError(f"dpkg-query lists no package in {image}", fix="rebuild the image")
    return records


def image_id(client: docker.DockerClient, image: str) -> str:
    """The local image's ID (`sha256:<config digest>`)."""
    try:
        return str(client.images.get(image).id)
    except docker.errors.ImageNotFound:
        raise PfbuildError(
            f"image {image} is not in the Docker Engine",
            fix="pull or build it first (docker images lists what is there)",
        ) from None
