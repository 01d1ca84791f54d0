"""The Context: one object that owns the workspace and every path inside it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.errors import PfbuildError

DEFAULT_WORKSPACE = Path("pfbuild-work")
DEFAULT_MAX_AGE_DAYS = 7.0
DEFAULT_BUILD_USER = "pfbuild"


def prepare_workspace(workspace: Path) -> Path:
    """Make the workspace (if needed), prove it is writable, and return its absolute path."""
    workspace = workspace.expanduser().absolute()
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workspace, prefix=".probe-"):
            pass
    except OSError as exc:
        raise PfbuildError(
            f"workspace {workspace} is not writable",
            exc.strerror or str(exc),
            "pass --workspace DIR (or set PFBUILD_WORKSPACE) to a writable folder",
        ) from None
    return workspace


@dataclass(frozen=True)
class Context:
    """Settings for one run plus the workspace layout; built once by the CLI, passed explicitly."""

    workspace: Path
    archive_overrides: tuple[tuple[str, str], ...] = ()
    max_age_days: float = DEFAULT_MAX_AGE_DAYS
    build_user: str = DEFAULT_BUILD_USER
    keyring_debs: tuple[tuple[str, Path], ...] = ()
    docker_host: str | None = field(default=None)
    # Build environments (chroot tarballs, base images) made before this time are made again.
    envs_after: float = 0.0

    def archive_override(self, target: str) -> str | None:
        """The archive URL the user set for `target`, if any."""
        return dict(self.archive_overrides).get(target)

    def keyring_deb(self, target: str) -> Path | None:
        """A local archive-keyring .deb the user supplied for `target`, if any."""
        return dict(self.keyring_debs).get(target)

    @property
    def chroots_dir(self) -> Path:
        return self.workspace / "chroots"

    @property
    def images_dir(self) -> Path:
        return self.workspace / "images"

    @property
    def keyrings_dir(self) -> Path:
        return self.workspace / "keyrings"

    @property
    def logs_dir(self) -> Path:
        return self.workspace / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.workspace / "cache"

    @property
    def tmp_root(self) -> Path:
        """Scratch space for runs, not made yet (see tmp_dir)."""
        return self.workspace / "tmp"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space for runs, made on first use."""
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        return self.tmp_root

    @property
    def dist_dir(self) -> Path:
        """Published artifacts; the apt repository is served from dist_dir / "apt"."""
        return self.workspace / "dist"

    @property
    def aptly_dir(self) -> Path:
        """aptly's root (database, pool, its own public tree), its config and the publish lock."""
        return self.workspace / "aptly"

    @property
    def signing_dir(self) -> Path:
        """The repository signing key store (a GNUPGHOME, mode 0700); secrets never leave it."""
        return self.workspace / "signing"

    @property
    def cosign_dir(self) -> Path:
        """The local cosign key pair that signs images (mode 0700); the secret never leaves it."""
        return self.workspace / "cosign"

    def build_dir(self, recipe: str, version: str, target: str) -> Path:
        """Results of one sbuild run: .debs, .changes, .buildinfo, build.log, result.json."""
        return self.workspace / "builds" / recipe / version / target

    def report_dir(self, recipe: str, version: str, target: str) -> Path:
        """The hardening report (hardening.json, hardening.txt) of one target's build."""
        return self.workspace / "reports" / recipe / version / target

    def source_dir(self, recipe: str, version: str, target: str) -> Path:
        """One target's source package: .dsc, .debian.tar.*, orig tarball, overlay report."""
        return self.workspace / "sources" / recipe / version / target

    @property
    def apt_tree(self) -> Path:
        """The published apt tree clients see: a symlink switched atomically between generations."""
        return self.dist_dir / "apt"

    @property
    def aptly_config(self) -> Path:
        return self.aptly_dir / "aptly.conf"

    @property
    def aptly_root(self) -> Path:
        return self.aptly_dir / "root"

    @property
    def publish_lock(self) -> Path:
        return self.aptly_dir / "publish.lock"

    @property
    def release_lock(self) -> Path:
        """Held by whatever writes builds and the release manifest."""
        return self.workspace / "release.lock"

    def resource_lock(self, name: str) -> Path:
        """The lock file of a resource that concurrent actions share (a chroot, a base image)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.workspace / "locks" / f"{safe}.lock"

    @property
    def release_state_dir(self) -> Path:
        """One record per finished release action."""
        return self.workspace / "state" / "release"

    @property
    def manifests_dir(self) -> Path:
        return self.workspace / "manifests"

    @property
    def artifacts_dir(self) -> Path:
        """Self-describing build folders to hand to another machine (`publish --from`)."""
        return self.workspace / "artifacts"

    @property
    def sources_cache(self) -> Path:
        """Verified downloads by sha256, and index.json naming them per recipe and version."""
        return self.cache_dir / "sources"

    @property
    def archive_cache(self) -> Path:
        """Verified archive indices (Sources.xz) by sha256."""
        return self.cache_dir / "archive"

    @property
    def dockerd_dir(self) -> Path:
        """The state of a dockerd that `doctor --fix` started."""
        return self.workspace / "dockerd"

    def ccache_dir(self, target: str, arch: str) -> Path:
        """The compiler cache of one target and architecture, shared by every recipe's builds."""
        return self.cache_dir / "ccache" / f"{target}-{arch}"

    def ccache_fallback_dir(self, target: str, arch: str) -> Path:
        """Where the compiler cache lives when the build user cannot reach the workspace
        (a CI clone under /root): beside the stage root, one folder per workspace."""
        workspace_id = hashlib.sha256(str(self.workspace).encode()).hexdigest()[:12]
        return self.stage_root.parent / "pfbuild-ccache" / workspace_id / f"{target}-{arch}"

    def reproducible_dir(self, recipe: str, version: str, target: str) -> Path:
        """The second build of `verify-reproducible` and its comparison."""
        return self.workspace / "reproducible" / recipe / version / target

    def manifest_path(self, recipe: str, version: str) -> Path:
        """The release manifest of `recipe` `version`."""
        return self.manifests_dir / f"{recipe}-{version}.json"

    @property
    def stage_root(self) -> Path:
        """Where inputs for the build user are staged: outside /root, readable by that user."""
        # A fixed, world-traversable place: the build user cannot enter /root, where clones live.
        return Path(os.environ.get("PFBUILD_STAGE_ROOT", "/var/tmp/pfbuild-stage"))  # noqa: S108
