"""aptly on pfbuild's own config: the command lines, the config file, and a runner that signs.

aptly keeps one local repo per target, snapshots it, and publishes (or switches) the suite in
its own public tree under its root. Only pfbuild reads that tree: see builder.publish.tree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from builder.core import run
from builder.core.atomic import write_text
from builder.core.context import Context
from builder.core.errors import CommandError
from builder.model.distro import Distribution
from builder.publish.signing import SigningKey

COMPONENT = "main"
ARCHITECTURES = ("amd64", "all")
ORIGIN = "pfbuild"


def aptly_public_dir(ctx: Context) -> Path:
    """aptly's own publish target (its fixed name under rootDir); only pfbuild reads it."""
    return ctx.aptly_root / "public"


# ---- command lines ----------------------------------------------------------------------------


def aptly_cmdline(config: Path, *args: str | Path) -> list[str]:
    """An aptly call on pfbuild's config, with SOURCE_DATE_EPOCH scrubbed from its environment."""
    # A build's SOURCE_DATE_EPOCH must not become the InRelease Date: apt ignores an InRelease
    # older than the one it already has.
    return ["env", "-u", "SOURCE_DATE_EPOCH", "aptly", f"-config={config}", *map(str, args)]


def repo_name(dist: Distribution) -> str:
    """The aptly local repo that collects one target's packages."""
    return f"pfbuild-{dist.name}"


def repo_create_cmdline(config: Path, dist: Distribution) -> list[str]:
    """Create the target's local repo with its default suite and component."""
    return aptly_cmdline(
        config,
        "repo",
        "create",
        f"-distribution={dist.name}",
        f"-component={COMPONENT}",
        repo_name(dist),
    )


def repo_add_cmdline(config: Path, dist: Distribution, debs: Sequence[Path]) -> list[str]:
    """Add .debs to the target's repo (a file already there is skipped, a conflict refused)."""
    return aptly_cmdline(config, "repo", "add", repo_name(dist), *debs)


def repo_remove_cmdline(config: Path, dist: Distribution, keys: Sequence[str]) -> list[str]:
    """Remove packages, named by their keys (name_version_arch), from the target's repo."""
    return aptly_cmdline(config, "repo", "remove", repo_name(dist), *keys)


def snapshot_create_cmdline(config: Path, snapshot: str, dist: Distribution) -> list[str]:
    """Freeze the target's repo as a snapshot."""
    return aptly_cmdline(config, "snapshot", "create", snapshot, "from", "repo", repo_name(dist))


def _signing_flags(fingerprint: str) -> list[str]:
    return ["-batch", f"-gpg-key={fingerprint}"]


def publish_snapshot_cmdline(
    config: Path,
    snapshot: str,
    suite: str,
    fingerprint: str,
    *,
    origin: str = ORIGIN,
    label: str = ORIGIN,
) -> list[str]:
    """First publish of a suite: signed, by-hash, amd64 + all, with its Origin and Label."""
    return aptly_cmdline(
        config,
        "publish",
        "snapshot",
        *_signing_flags(fingerprint),
        "-acquire-by-hash",
        f"-architectures={','.join(ARCHITECTURES)}",
        f"-component={COMPONENT}",
        f"-distribution={suite}",
        f"-origin={origin}",
        f"-label={label}",
        snapshot,
        ".",
    )


def publish_switch_cmdline(config: Path, suite: str, snapshot: str, fingerprint: str) -> list[str]:
    """Point an already published suite at another snapshot (settings are kept by aptly)."""
    return aptly_cmdline(
        config,
        "publish",
        "switch",
        *_signing_flags(fingerprint),
        f"-component={COMPONENT}",
        suite,
        ".",
        snapshot,
    )


def new_snapshot_name(dist: Distribution, existing: set[str], now: float) -> str:
    """A unique, time-ordered snapshot name for the target's repo."""
    base = f"{repo_name(dist)}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}"
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


# ---- config -----------------------------------------------------------------------------------


def aptly_settings(ctx: Context) -> dict[str, object]:
    """aptly's settings: its root in the workspace, gpg signing, our architectures."""
    return {
        "rootDir": str(ctx.aptly_root),
        "architectures": list(ARCHITECTURES),
        "gpgProvider": "gpg",
        "gpgDisableSign": False,
        "gpgDisableVerify": False,
        "downloadSourcePackages": False,
        "ppaDistributorID": "",
        "FileSystemPublishEndpoints": {},
        "S3PublishEndpoints": {},
        "SwiftPublishEndpoints": {},
    }


def write_aptly_config(ctx: Context) -> Path:
    """Write the aptly config into the workspace, never ~/.aptly.conf (unchanged files stay)."""
    path = ctx.aptly_config
    text = json.dumps(aptly_settings(ctx), indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return path


# ---- runner -----------------------------------------------------------------------------------


class Aptly:
    """aptly on the workspace config, signing with one key."""

    def __init__(self, config: Path, key: SigningKey) -> None:
        self.config = config
        self.key = key

    def run(self, cmd: list[str]) -> str:
        """Run one aptly command line (built by a *_cmdline function); return its output."""
        proc = run.run(cmd, env=self.key.env())
        return (proc.stdout + proc.stderr).decode(errors="replace")

    def repos(self) -> set[str]:
        """Names of the local repos."""
        return set(self.run(aptly_cmdline(self.config, "repo", "list", "-raw")).split())

    def snapshots(self) -> set[str]:
        """Names of the snapshots."""
        return set(self.run(aptly_cmdline(self.config, "snapshot", "list", "-raw")).split())

    def published(self) -> dict[str, str]:
        """Suite -> snapshot currently published at our prefix."""
        text = self.run(aptly_cmdline(self.config, "publish", "list", "-json"))
        result: dict[str, str] = {}
        for item in json.loads(text):
            if item.get("Prefix") == "." and item.get("Sources"):
                result[item["Distribution"]] = item["Sources"][0]["Name"]
        return result

    def _search(self, *args: str) -> tuple[str, ...]:
        try:
            proc = run.run(aptly_cmdline(self.config, *args), env=self.key.env())
        except CommandError as exc:
            # aptly fails a search of an empty repo or snapshot, saying "no results".
            if "no results" in exc.tail:
                return ()
            raise
        return tuple(sorted(proc.stdout.decode(errors="replace").split()))

    def repo_packages(self, repo: str) -> tuple[str, ...]:
        """Package keys (name_version_arch) in a local repo."""
        return self._search("repo", "search", repo)

    def snapshot_packages(self, snapshot: str) -> tuple[str, ...]:
        """Package keys in a snapshot."""
        return self._search("snapshot", "search", snapshot)
