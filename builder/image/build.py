"""The Postfix container image per variant, built from our published apt repository.

The build context is assembled in a temporary directory: the docker/ templates plus an apt/
folder with the repository's public key, a deb822 source for the variant's suite and a pin
that makes our packages win. The repository is served on 127.0.0.1 for the duration of the
build (the build runs with host networking), so every image proves the repository works.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from debian import deb822
from debian.debian_support import Version

import builder
import docker
from builder.check import config as config_gate
from builder.core.atomic import pid_temp_dir
from builder.core.checkout import DOCKER_DIR
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import TARGETS, Distribution
from builder.model.loader import load_recipe
from builder.publish import serve
from builder.publish.aptly import COMPONENT, ORIGIN
from builder.publish.tree import KEY_FILE_NAME, sources_snippet

log = logging.getLogger("pfbuild")

TEMPLATE_FILES = (
    "Dockerfile",
    "bootstrap.sh",
    "healthcheck.sh",
    "postfix-command.sh",
    "slim.cfg",
    "syslog-forward.pl",
)
# The configuration gate as the image runs it (python3 -m builder.check.config): its modules
# and the two core ones they import, standard library only. packaged.py runs pfbuild's
# testbeds and stays out.
GATE_DIR = "gate"
GATE_SUPPORT = ("__init__.py", "core/__init__.py", "core/errors.py", "core/schema.py",
                "check/__init__.py")  # fmt: skip
GATE_LEFT_OUT = ("packaged.py",)
DEFAULT_NAME = "pfbuild-postfix"
DEFAULT_SOURCE = "https://github.com/pfbuild/pfbuild"
MAP_PACKAGES = tuple(
    f"postfix-{m}" for m in ("cdb", "ldap", "lmdb", "mysql", "pcre", "pgsql", "sqlite")
)
# python3 runs the configuration gate (standard library only); the standalone sysusers
# satisfies postfix's `systemd | systemd-standalone-sysusers` without all of systemd (17 MB).
RUNTIME_PACKAGES = (
    "libjemalloc2", "ca-certificates", "tzdata", "openssl", "python3-minimal", "libpython3-stdlib",
    "systemd-standalone-sysusers",
)  # fmt: skip
MALLOC_RECIPE = "mimalloc-secure"
PIN_PRIORITY = 1001
REPO_PORT = 18471


@dataclass(frozen=True)
class ImageConfig:
    """What to build and where it goes: name, tags' version, labels, optional registry."""

    name: str = DEFAULT_NAME
    version: str = ""
    revision: str = "unknown"
    source: str = DEFAULT_SOURCE
    created_epoch: int = 0
    registry: str | None = None
    base_images: Mapping[str, str] = field(default_factory=dict)
    # The cosign private key that signs pushed images; None: the workspace's local pair.
    cosign_key: Path | None = None
    # A third tag <version>-<variant>-<date>: an image rebuilt on a newer base is a new image.
    date_tag: str | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ": @") or self.name != self.name.lower():
            raise PfbuildError(
                f"image name {self.name!r} is not a valid repository name",
                "it must be lower case, without a tag, digest or spaces",
                "pass --name like pfbuild-postfix",
            )
        unknown = set(self.base_images) - set(variants())
        if unknown:
            raise PfbuildError(
                f"unknown image variant {sorted(unknown)[0]!r}",
                f"variants are {', '.join(variants())}",
                "pass --base-image VARIANT=IMAGE with one of them",
            )
        if self.created_epoch < 0:
            raise PfbuildError("SOURCE_DATE_EPOCH must not be negative")
        if self.date_tag is not None and not re.fullmatch(r"[0-9]{8}", self.date_tag):
            raise PfbuildError(f"date tag {self.date_tag!r} is not YYYYMMDD")


@dataclass(frozen=True)
class BuiltImage:
    """One image this run made."""

    variant: str
    image_id: str
    tags: tuple[str, ...]
    version: str
    size: int
    # What cosign signed in the registry (REPO@sha256:DIGEST), when the image was pushed.
    signed: tuple[str, ...] = ()


def variants() -> tuple[str, ...]:
    """The image variants: one per target distribution ("debian", "ubuntu")."""
    return tuple(d.variant for d in TARGETS.values())


def variant_target(variant: str) -> Distribution:
    """The target distribution an image variant is built on."""
    for dist in TARGETS.values():
        if dist.variant == variant:
            return dist
    raise PfbuildError(
        f"unknown image variant {variant!r}",
        f"variants are {', '.join(variants())}",
        f"pass --variant {' or --variant '.join(variants())}",
    )


def upstream_version(debian_version: str) -> str:
    """3.11.6 from 3.11.6-1+pf1~trixie (and from 1:3.11.6-1)."""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


def image_tags(
    name: str, version: str, variant: str, registry: str | None = None, date: str | None = None
) -> list[str]:
    """`<name>:<variant>`, `<name>:<version>-<variant>` and with a `date` also
    `<name>:<version>-<variant>-<date>`, under the registry when there is one."""
    repo = f"{registry.rstrip('/')}/{name}" if registry else name
    dated = [f"{repo}:{version}-{variant}-{date}"] if date else []
    return [f"{repo}:{variant}", f"{repo}:{version}-{variant}", *dated]


def rfc3339(epoch: int) -> str:
    """A Unix time as the RFC 3339 UTC stamp OCI labels use."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def oci_labels(config: ImageConfig, version: str, dist: Distribution) -> dict[str, str]:
    """The org.opencontainers.image.* labels of one variant's image."""
    prefix = "org.opencontainers.image"
    return {
        f"{prefix}.title": f"Postfix {version} ({dist.variant})",
        f"{prefix}.description": f"Hardened Postfix on {dist.vendor} {dist.release} "
        f"({dist.name}), from the pfbuild apt repository",
        f"{prefix}.version": version,
        f"{prefix}.source": config.source,
        f"{prefix}.revision": config.revision,
        f"{prefix}.created": rfc3339(config.created_epoch),
        f"{prefix}.licenses": "EPL-2.0 OR IPL-1.0",
        f"{prefix}.vendor": "pfbuild",
    }


def image_packages(dist: Distribution) -> list[str]:
    """What the image installs: postfix, its map packages, our malloc, runtime basics."""
    malloc = load_recipe(MALLOC_RECIPE).binary_packages.get(dist.name, ())
    if not malloc:
        raise PfbuildError(
            f"recipe {MALLOC_RECIPE} builds nothing for {dist.name}",
            "the image preloads libmimalloc-secure by default",
            f"add {dist.name} to the recipe's binary_packages",
        )
    return ["postfix", *MAP_PACKAGES, *malloc, *RUNTIME_PACKAGES, *dist.image_includes]


def apt_preferences(origin: str = ORIGIN, priority: int = PIN_PRIORITY) -> str:
    """An apt pin that makes packages from our repository win over the distribution's."""
    return (
        "# pfbuild's packages win, even over a newer version in the distribution.\n"
        "Package: *\n"
        f"Pin: release o={origin}\n"
        f"Pin-Priority: {priority}\n"
    )


def build_args(base_image: str, packages: Sequence[str], state: str) -> dict[str, str]:
    """The Dockerfile's build arguments."""
    return {"BASE_IMAGE": base_image, "PACKAGES": " ".join(packages), "REPO_STATE": state}


def repo_state(tree: Path, suite: str) -> str:
    """A digest of the suite's signed index: the install layer is reused only while it holds."""
    inrelease = tree / "dists" / suite / "InRelease"
    try:
        return hashlib.sha256(inrelease.read_bytes()).hexdigest()
    except OSError:
        raise PfbuildError(
            f"suite {suite} is not published in {tree}",
            f"there is no {inrelease}",
            f"run `pfbuild publish --target {suite}` first",
        ) from None


@contextmanager
def serve_repo(tree: Path) -> Iterator[str]:
    """Serve the tree on 127.0.0.1 for a build; yield its URL."""
    # A fixed port keeps the apt source in the build context byte-identical between builds,
    # so Docker can reuse the install layer; a busy port costs only that cache.
    with ExitStack() as stack:
        try:
            server = stack.enter_context(serve.running_server(tree, port=REPO_PORT))
        except PfbuildError:
            server = stack.enter_context(serve.running_server(tree, port=0))
        yield serve.server_url(server)


# ---- the published repository -----------------------------------------------------------------


def _packages_index(tree: Path, suite: str, arch: str) -> str:
    base = tree / "dists" / suite / COMPONENT / f"binary-{arch}"
    if (base / "Packages").is_file():
        return (base / "Packages").read_text()
    if (base / "Packages.gz").is_file():
        return gzip.decompress((base / "Packages.gz").read_bytes()).decode()
    raise PfbuildError(
        f"suite {suite} is not published in {tree}",
        f"there is no {base}/Packages",
        f"run `pfbuild publish --target {suite}` first",
    )


def published_versions(tree: Path, suite: str, arch: str = "amd64") -> dict[str, str]:
    """Package -> version in one suite of the published tree (the highest of each)."""
    versions: dict[str, str] = {}
    for para in deb822.Packages.iter_paragraphs(
        _packages_index(tree, suite, arch), use_apt_pkg=False
    ):
        name, version = para["Package"], para["Version"]
        if name not in versions or Version(version) > Version(versions[name]):
            versions[name] = version
    return versions


def require_published(tree: Path, dist: Distribution, packages: Sequence[str]) -> str:
    """Refuse to build unless our repo has postfix and the malloc; return postfix's version."""
    versions = published_versions(tree, dist.name, dist.arch)
    ours = ["postfix", *load_recipe(MALLOC_RECIPE).binary_packages.get(dist.name, ())]
    missing = [p for p in ours if p in packages and p not in versions]
    if missing:
        raise PfbuildError(
            f"the {dist.name} suite of our repository lacks {', '.join(missing)}",
            "the image must install them from our repository, not the distribution",
            f"build, check and publish them for {dist.name} first",
        )
    return upstream_version(versions["postfix"])


def gate_files() -> list[tuple[Path, str]]:
    """The configuration gate's source files and their paths under the `builder` package."""
    top = Path(builder.__file__).parent
    gate = Path(config_gate.__file__).parent
    names = [*GATE_SUPPORT]
    names += sorted(
        p.relative_to(top).as_posix() for p in gate.glob("*.py") if p.name not in GATE_LEFT_OUT
    )
    return [(top / name, name) for name in names]


def gate_digest() -> str:
    """What the image's gate is made of: a change to any of its modules rebuilds the image."""
    digest = hashlib.sha256()
    for path, name in gate_files():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def assemble_context(dest: Path, tree: Path, url: str, suite: str) -> None:
    """Fill `dest` with the docker/ templates, the gate and the apt/ folder for one suite."""
    for name in TEMPLATE_FILES:
        shutil.copy2(DOCKER_DIR / name, dest / name)
        (dest / name).chmod(0o755 if name.endswith((".sh", ".pl")) else 0o644)
    for path, name in gate_files():
        target = dest / GATE_DIR / "builder" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        target.chmod(0o644)
    apt = dest / "apt"
    apt.mkdir()
    key = tree / KEY_FILE_NAME
    if not key.is_file():
        raise PfbuildError(
            f"{key} is missing",
            "the published tree carries the repository's public key",
            "run `pfbuild publish` again",
        )
    shutil.copy2(key, apt / "pfbuild.asc")
    (apt / "pfbuild.sources").write_text(sources_snippet(url, suite))
    (apt / "pfbuild.pref").write_text(apt_preferences())
    for path in apt.iterdir():
        path.chmod(0o644)


@contextmanager
def build_context_dir(ctx: Context) -> Iterator[Path]:
    """A temporary build context directory, removed afterwards."""
    with pid_temp_dir(ctx.tmp_dir, "image-") as tmp:
        yield Path(tmp)


# ---- docker -----------------------------------------------------------------------------------


def _build_log_tail(chunks: Sequence[Mapping[str, object]], lines: int = 20) -> str:
    text = "".join(str(c.get("stream", "")) for c in chunks)
    return "\n".join(text.splitlines()[-lines:])


def docker_build(
    client: docker.DockerClient,
    context: Path,
    tags: Sequence[str],
    buildargs: Mapping[str, str],
    labels: Mapping[str, str],
    log_path: Path,
) -> str:
    """Build `context` with host networking (the engine has no bridge); return the image id."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    chunks: list[Mapping[str, object]] = []
    image_id = ""
    with log_path.open("w") as out:
        # The low-level API streams the log as it comes: a long apt run is visible in the file.
        stream = client.api.build(
            path=str(context),
            tag=tags[0],
            buildargs=dict(buildargs),
            labels=dict(labels),
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            chunks.append(chunk)
            if "stream" in chunk:
                out.write(str(chunk["stream"]))
            if "error" in chunk:
                out.write(f"ERROR: {chunk['error']}\n")
                raise PfbuildError(
                    f"docker build of {tags[0]} failed",
                    str(chunk["error"]).strip().splitlines()[-1],
                    f"read {log_path}",
                    details=_build_log_tail(chunks),
                )
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    image = client.images.get(image_id or tags[0])
    for tag in tags[1:]:
        repo, _, version = tag.rpartition(":")
        image.tag(repo, version)
    return str(image.id)


def push_tags(client: docker.DockerClient, tags: Sequence[str]) -> None:
    """Push every tag to its registry; fail on the first refusal."""
    for tag in tags:
        repo, _, version = tag.rpartition(":")
        for chunk in client.api.push(repo, tag=version, stream=True, decode=True):
            if "error" in chunk:
                raise PfbuildError(
                    f"push of {tag} failed",
                    str(chunk["error"]).strip(),
                    "log in to the registry (docker login) or check --registry",
                )
        log.info("pushed %s", tag)


def pushed_digests(client: docker.DockerClient, image_id: str, tags: Sequence[str]) -> list[str]:
    """`REPO@sha256:DIGEST` of the pushed image in each of its tags' repositories."""
    repos = {tag.rpartition(":")[0] for tag in tags}
    digests = client.images.get(image_id).attrs.get("RepoDigests") or []
    found = sorted(str(d) for d in digests if str(d).partition("@")[0] in repos)
    if len(found) != len(repos):
        raise PfbuildError(
            f"the engine records no registry digest of {image_id[:19]} for every pushed tag",
            f"it has {', '.join(map(str, digests)) or 'none'}",
            "push again with --registry",
        )
    return found
