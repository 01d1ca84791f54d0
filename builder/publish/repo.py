"""The publish stage: the checked .debs as a signed apt repository, swapped into place atomically.

Inputs are validated first (builder.publish.inputs), then aptly adds them to one local repo per
target and publishes a new snapshot of every suite whose content changed (builder.publish.aptly),
and the served tree is refreshed from aptly's (builder.publish.tree). One publisher runs at a
time; a history of each suite's snapshots lets `--rollback` switch back.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.core.atomic import write_text
from builder.core.context import Context
from builder.core.errors import CommandError, PfbuildError
from builder.core.lock import workspace_lock
from builder.model.distro import Distribution
from builder.publish.aptly import (
    Aptly,
    aptly_public_dir,
    new_snapshot_name,
    publish_snapshot_cmdline,
    publish_switch_cmdline,
    repo_add_cmdline,
    repo_create_cmdline,
    repo_name,
    snapshot_create_cmdline,
    write_aptly_config,
)
from builder.publish.inputs import collect_debs
from builder.publish.signing import SigningKey
from builder.publish.tree import check_repo_url, clean_leftovers, inrelease_date, refresh_tree

log = logging.getLogger("pfbuild")

DEFAULT_LOCK_TIMEOUT = 120.0


@dataclass(frozen=True)
class PublishOptions:
    """Where clients will reach the repository and how long to wait for another publisher."""

    url: str
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    allow_unchecked: bool = False

    def __post_init__(self) -> None:
        check_repo_url(self.url)
        if self.lock_timeout < 0:
            raise PfbuildError("--lock-timeout must not be negative")


@dataclass(frozen=True)
class SuiteState:
    """What a publish did to one suite."""

    suite: str
    snapshot: str
    changed: bool
    packages: tuple[str, ...]


# ---- dates ------------------------------------------------------------------------------------


def wait_for_later_second(
    previous: float | None,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the clock is in a later second than `previous` (Dates have 1 s resolution)."""
    if previous is None:
        return
    while int(clock()) <= int(previous):
        sleep(0.05)


def _last_date(ctx: Context, suite: str) -> float | None:
    # aptly's own tree may be ahead of the live one (a killed run); take the later of the two.
    dates = [
        inrelease_date(root / "dists" / suite / "InRelease")
        for root in (aptly_public_dir(ctx), ctx.apt_tree)
    ]
    known = [d for d in dates if d is not None]
    return max(known) if known else None


# ---- history (for rollback) -------------------------------------------------------------------


def read_history(ctx: Context) -> dict[str, list[str]]:
    """Suite -> snapshots published in order; the last one is live."""
    path = ctx.publish_history
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
    ):
        raise PfbuildError(f"{path} is not a publish history", fix="restore or remove it")
    return {str(k): list(v) for k, v in data.items()}


def write_history(ctx: Context, history: dict[str, list[str]]) -> None:
    """Store the publish history atomically."""
    write_text(ctx.publish_history, json.dumps(history, indent=2, sort_keys=True) + "\n")


def reconcile_history(history: dict[str, list[str]], published: dict[str, str]) -> None:
    """Append what aptly has live but the history missed (a run killed after aptly finished)."""
    for suite, snapshot in published.items():
        snaps = history.setdefault(suite, [])
        if not snaps or snaps[-1] != snapshot:
            snaps.append(snapshot)


def rollback_target(history: dict[str, list[str]], suite: str) -> str:
    """The snapshot a rollback of `suite` switches to."""
    snaps = history.get(suite, [])
    if len(snaps) < 2:
        raise PfbuildError(
            f"suite {suite} has no earlier snapshot to roll back to",
            f"it was published {len(snaps)} time(s) with different content",
            "publish an older build instead",
        )
    return snaps[-2]


def check_rollback(ctx: Context, suite: str) -> str:
    """Refuse, before any key or aptly state is made, a rollback that has nothing to go to."""
    history = read_history(ctx)
    if suite not in history:
        raise PfbuildError(
            f"suite {suite} was never published in {ctx.workspace}",
            fix="publish it first, or pass the --workspace that published it",
        )
    return rollback_target(history, suite)


# ---- the stage --------------------------------------------------------------------------------


@contextmanager
def _publishing(
    ctx: Context, key: SigningKey, options: PublishOptions
) -> Iterator[tuple[Aptly, dict[str, str], dict[str, list[str]]]]:
    """Hold the publish lock; yield aptly, the suites it has live, and the reconciled history."""
    fix = "wait for it to finish, or raise --lock-timeout"
    with workspace_lock(ctx.publish_lock, "publish", timeout=options.lock_timeout, fix=fix):
        clean_leftovers(ctx)
        aptly = Aptly(write_aptly_config(ctx), key)
        published = aptly.published()
        history = read_history(ctx)
        reconcile_history(history, published)
        yield aptly, published, history


def _publish_suite(
    ctx: Context,
    aptly: Aptly,
    dist: Distribution,
    debs: list[Path],
    published: dict[str, str],
    history: dict[str, list[str]],
) -> SuiteState | None:
    config = aptly.config
    repo = repo_name(dist)
    if repo not in aptly.repos():
        aptly.run(repo_create_cmdline(config, dist))
    if debs:
        try:
            aptly.run(repo_add_cmdline(config, dist, debs))
        except CommandError as exc:
            conflicts = re.findall(r"conflict in package (\S+)", exc.details)
            if not conflicts:
                raise
            raise PfbuildError(
                f"{dist.name}: {', '.join(conflicts)} already in the repository with other content",
                "a published version is immutable: clients may hold the old file under that name",
                "bump the package revision (for example +pf2) and rebuild",
            ) from None
    content = aptly.repo_packages(repo)
    current = published.get(dist.name)
    if not content:
        log.info("%s: nothing built yet, suite not published", dist.name)
        return None
    if current is not None and aptly.snapshot_packages(current) == content:
        log.info("%s: unchanged, still %s", dist.name, current)
        return SuiteState(dist.name, current, False, content)
    snapshot = new_snapshot_name(dist, aptly.snapshots(), time.time())
    aptly.run(snapshot_create_cmdline(config, snapshot, dist))
    wait_for_later_second(_last_date(ctx, dist.name))
    fpr = aptly.key.fingerprint
    if current is None:
        aptly.run(publish_snapshot_cmdline(config, snapshot, dist.name, fpr))
    else:
        aptly.run(publish_switch_cmdline(config, dist.name, snapshot, fpr))
    published[dist.name] = snapshot
    history.setdefault(dist.name, []).append(snapshot)
    log.info("%s: published %s (%d packages)", dist.name, snapshot, len(content))
    return SuiteState(dist.name, snapshot, True, content)


def publish_repo(
    ctx: Context,
    targets: Sequence[Distribution],
    key: SigningKey,
    options: PublishOptions,
    *,
    recipe: str | None = None,
    version: str | None = None,
    builds: Sequence[tuple[str, str]] = (),
) -> list[SuiteState]:
    """Add the targets' checked .debs to aptly, publish changed suites, swap the tree into place.

    `builds` names several (recipe, version) pairs at once (a release publishes postfix and
    the packages its image needs in one step); otherwise `recipe`/`version` or every build.
    """
    pairs: Sequence[tuple[str | None, str | None]] = builds or [(recipe, version)]
    inputs = {
        dist.name: [
            deb
            for r, v in pairs
            for deb in collect_debs(ctx, dist, r, v, allow_unchecked=options.allow_unchecked)
        ]
        for dist in targets
    }
    states: list[SuiteState] = []
    with _publishing(ctx, key, options) as (aptly, published, history):
        for dist in targets:
            state = _publish_suite(ctx, aptly, dist, inputs[dist.name], published, history)
            if state is not None:
                states.append(state)
        write_history(ctx, history)
        if published:
            refresh_tree(ctx, key, options.url, published)
    return states


def rollback_suite(ctx: Context, suite: str, key: SigningKey, options: PublishOptions) -> str:
    """Switch `suite` back to the snapshot published before the live one; return its name."""
    with _publishing(ctx, key, options) as (aptly, published, history):
        if suite not in published:
            raise PfbuildError(
                f"suite {suite} is not published",
                fix=f"published suites: {', '.join(sorted(published)) or 'none'}",
            )
        previous = rollback_target(history, suite)
        wait_for_later_second(_last_date(ctx, suite))
        aptly.run(publish_switch_cmdline(aptly.config, suite, previous, key.fingerprint))
        history[suite].pop()
        published[suite] = previous
        write_history(ctx, history)
        refresh_tree(ctx, key, options.url, published)
    log.info("%s: rolled back to %s", suite, previous)
    return previous
