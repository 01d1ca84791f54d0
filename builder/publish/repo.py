"""The publish stage: the checked .debs as a signed apt repository, swapped into place atomically.

A publish starts from the live repository: the workspace's own tree, or with `--base` the tree
clients see, fetched and verified (builder.publish.live). Inputs are validated (builder.publish.
inputs); each suite's new package set is the live one plus the new builds, cut to the newest
`keep` versions of each package (builder.publish.history). aptly's local repo of the target is
made to hold exactly that set (from the new .debs and the live tree's pool), snapshotted and
published (builder.publish.aptly), and the served tree is refreshed from aptly's with the signed
history beside it (builder.publish.tree). The history lives in the repository, so `--rollback`
works on any machine that can read it. One publisher runs at a time.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.context import Context
from builder.core.digest import sha256_file
from builder.core.errors import CommandError, PfbuildError
from builder.core.lock import workspace_lock
from builder.model.distro import TARGETS, Distribution
from builder.publish.aptly import (
    ORIGIN,
    Aptly,
    aptly_public_dir,
    new_snapshot_name,
    publish_snapshot_cmdline,
    publish_switch_cmdline,
    repo_add_cmdline,
    repo_create_cmdline,
    repo_name,
    repo_remove_cmdline,
    snapshot_create_cmdline,
    write_aptly_config,
)
from builder.publish.history import (
    BUILD_ENV,
    DATE_FORMAT,
    DEFAULT_KEEP,
    History,
    State,
    SuiteHistory,
    conflicts,
    format_build_env,
    keep_newest,
    record_builds,
)
from builder.publish.inputs import build_environment, collect_debs, deb_info
from builder.publish.live import LiveTree, load_tree
from builder.publish.signing import SigningKey
from builder.publish.tree import (
    check_repo_url,
    clean_leftovers,
    inrelease_date,
    live_generation,
    refresh_tree,
)

log = logging.getLogger("pfbuild")

DEFAULT_LOCK_TIMEOUT = 120.0
RELEASE_FIELD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+@()-]{0,79}")


@dataclass(frozen=True)
class PublishOptions:
    """Where clients will reach the repository and how long to wait for another publisher."""

    url: str
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    allow_unchecked: bool = False
    # Versions of each package (and architecture) a suite keeps in its index.
    keep: int = DEFAULT_KEEP
    # The Origin and Label fields of every suite's Release file.
    origin: str = ORIGIN
    label: str = ORIGIN

    def __post_init__(self) -> None:
        check_repo_url(self.url)
        if self.lock_timeout < 0:
            raise PfbuildError("--lock-timeout must not be negative")
        if self.keep < 1:
            raise PfbuildError(f"--keep {self.keep} would keep nothing", fix="pass 1 or more")
        for name, value in (("--origin", self.origin), ("--label", self.label)):
            if not RELEASE_FIELD_RE.fullmatch(value):
                raise PfbuildError(
                    f"{name} {value!r} is not a one-line Release field value",
                    "it goes into every suite's signed Release file",
                    f"pass {name} with letters, digits, spaces and . _ - + @ ( ) only",
                )


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


# ---- the stage


@dataclass
class _Run:
    """What one publish works on: aptly, the live tree it starts from, the history it extends."""

    aptly: Aptly
    published: dict[str, str]
    live: LiveTree | None
    history: History
    # What the workspace's own tree shows per suite (the live one when there is no --base).
    local: dict[str, dict[str, str]] = field(default_factory=dict)

    def live_packages(self, suite: str) -> dict[str, str]:
        state = self.history.suite(suite).live
        return dict(state.packages) if state else {}


def _local_tree(ctx: Context, key: SigningKey) -> LiveTree | None:
    generation = live_generation(ctx)
    if generation is None or not (generation / "dists").is_dir():
        return None
    # The workspace's own tree is checked like any other: it is what the new state builds on.
    return load_tree(generation, key.fingerprint)


@contextmanager
def _publishing(
    ctx: Context, key: SigningKey, options: PublishOptions, base: LiveTree | None
) -> Iterator[_Run]:
    """Hold the publish lock; yield the run's aptly, live tree and history."""
    fix = "wait for it to finish, or raise --lock-timeout"
    with workspace_lock(ctx.publish_lock, "publish", timeout=options.lock_timeout, fix=fix):
        clean_leftovers(ctx)
        aptly = Aptly(write_aptly_config(ctx), key)
        try:
            local = _local_tree(ctx, key)
        except PfbuildError as exc:
            if base is None:
                raise
            # The live tree decides; this workspace's old one (another key, a killed run) is
            # only replaced.
            log.warning("the workspace's own tree is not used: %s", exc.one_line())
            local = None
        live = base or local
        history = live.history if live else History()
        local_sets = (
            {s: {k: f.sha256 for k, f in entries.items()} for s, entries in local.index.items()}
            if local
            else {}
        )
        yield _Run(aptly, aptly.published(), live, history, local_sets)


def _deb_keys(debs: Sequence[Path]) -> dict[str, tuple[Path, str]]:
    """aptly key -> (file, SHA-256) of new package files."""
    keyed: dict[str, tuple[Path, str]] = {}
    for deb in debs:
        info = deb_info(deb)
        keyed[f"{info.package}_{info.version}_{info.architecture}"] = (deb, sha256_file(deb))
    return keyed


def _refuse_conflicts(suite: str, names: Sequence[str]) -> PfbuildError:
    return PfbuildError(
        f"{suite}: {', '.join(names)} already in the repository with other content",
        "a published version is immutable: clients may hold the old file under that name",
        "bump the package revision (for example +pf2) and rebuild",
    )


def _last_date(ctx: Context, suite: str, live: LiveTree | None) -> float | None:
    # aptly's own tree may be ahead of the live one (a killed run); the live tree may come from
    # elsewhere (--base). The new Date must be later than all of them.
    roots = [aptly_public_dir(ctx), ctx.apt_tree] + ([live.path] if live else [])
    dates = [inrelease_date(root / "dists" / suite / "InRelease") for root in roots]
    known = [d for d in dates if d is not None]
    return max(known) if known else None


def _materialize(
    ctx: Context,
    run: _Run,
    dist: Distribution,
    wanted: Mapping[str, str],
    files: Mapping[str, Path],
    options: PublishOptions,
) -> str:
    """Make the target's aptly repo hold exactly `wanted`, snapshot and publish it."""
    aptly, config = run.aptly, run.aptly.config
    repo = repo_name(dist)
    if repo not in aptly.repos():
        aptly.run(repo_create_cmdline(config, dist))
    content = set(aptly.repo_packages(repo))
    missing = sorted(k for k in wanted if k not in content)
    extra = sorted(k for k in content if k not in wanted)
    if missing:
        try:
            aptly.run(repo_add_cmdline(config, dist, [files[k] for k in missing]))
        except CommandError as exc:
            found = re.findall(r"conflict in package (\S+)", exc.details)
            if not found:
                raise
            raise _refuse_conflicts(dist.name, found) from None
    if extra:
        aptly.run(repo_remove_cmdline(config, dist, extra))
    snapshot = new_snapshot_name(dist, aptly.snapshots(), time.time())
    aptly.run(snapshot_create_cmdline(config, snapshot, dist))
    wait_for_later_second(_last_date(ctx, dist.name, run.live))
    fpr = aptly.key.fingerprint
    if dist.name in run.published:
        aptly.run(publish_switch_cmdline(config, dist.name, snapshot, fpr))
    else:
        aptly.run(
            publish_snapshot_cmdline(
                config, snapshot, dist.name, fpr, origin=options.origin, label=options.label
            )
        )
    run.published[dist.name] = snapshot
    return snapshot


def _live_files(run: _Run, suite: str, keys: Sequence[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for key in keys:
        path = run.live.file(key, suite) if run.live else None
        if path is not None:
            found[key] = path
    return found


def _now() -> str:
    return time.strftime(DATE_FORMAT, time.gmtime())


def _publish_suite(
    ctx: Context,
    run: _Run,
    dist: Distribution,
    debs: list[Path],
    options: PublishOptions,
) -> SuiteState | None:
    suite = run.history.suite(dist.name)
    new = _deb_keys(debs)
    clashes = conflicts(suite, {k: sha for k, (_p, sha) in new.items()})
    if clashes:
        raise _refuse_conflicts(dist.name, clashes)
    live = run.live_packages(dist.name)
    wanted = keep_newest({**live, **{k: sha for k, (_p, sha) in new.items()}}, options.keep)
    if not wanted:
        log.info("%s: nothing built yet, suite not published", dist.name)
        return None
    if wanted == live and run.local.get(dist.name) == wanted and dist.name in run.published:
        log.info("%s: unchanged, still %s", dist.name, run.published[dist.name])
        return SuiteState(dist.name, run.published[dist.name], False, tuple(sorted(wanted)))
    files = {**_live_files(run, dist.name, list(wanted)), **{k: p for k, (p, _s) in new.items()}}
    snapshot = _materialize(ctx, run, dist, wanted, files, options)
    if wanted != live:
        previous = len(suite.states) - 1 if suite.states else None
        suite.record(State(_now(), "publish", wanted, previous))
    log.info("%s: published %s (%d packages)", dist.name, snapshot, len(wanted))
    return SuiteState(dist.name, snapshot, True, tuple(sorted(wanted)))


def publish_repo(
    ctx: Context,
    targets: Sequence[Distribution],
    key: SigningKey,
    options: PublishOptions,
    *,
    recipe: str | None = None,
    version: str | None = None,
    builds: Sequence[tuple[str, str]] = (),
    base: LiveTree | None = None,
    inputs: Mapping[str, Sequence[tuple[str, str, Mapping[str, str]]]] | None = None,
) -> list[SuiteState]:
    """Add the targets' checked .debs to the live repository, publish, swap the tree into place.

    `builds` names several (recipe, version) pairs at once (a release publishes postfix and
    the packages its image needs in one step); otherwise `recipe`/`version` or every build.
    `base` is the verified live tree to start from (default: the workspace's own); `inputs`
    records, per suite, the (source, version, inputs) of the builds published.
    """
    pairs: Sequence[tuple[str | None, str | None]] = builds or [(recipe, version)]
    debs = {
        dist.name: [
            deb
            for r, v in pairs
            for deb in collect_debs(ctx, dist, r, v, allow_unchecked=options.allow_unchecked)
        ]
        for dist in targets
    }
    states: list[SuiteState] = []
    with _publishing(ctx, key, options, base) as run:
        for dist in targets:
            state = _publish_suite(ctx, run, dist, debs[dist.name], options)
            if state is not None:
                states.append(state)
                if state.changed and inputs:
                    record_builds(
                        run.history.suite(dist.name),
                        _with_build_env(inputs.get(dist.name, ()), debs[dist.name]),
                    )
        _keep_other_suites(ctx, run, targets, options)
        if run.published:
            refresh_tree(ctx, key, options.url, _live_suites(run), run.history)
    return states


def _with_build_env(
    builds: Sequence[tuple[str, str, Mapping[str, str]]], debs: Sequence[Path]
) -> list[tuple[str, str, Mapping[str, str]]]:
    """The builds' inputs with the packages each build ran with (from its checked .buildinfo)."""
    envs = {}
    for build_dir in sorted({deb.parent for deb in debs}):
        found = build_environment(build_dir)
        if found is not None:
            envs[found[:2]] = format_build_env(found[2])
    return [
        (source, version, {**inputs, BUILD_ENV: envs[(source, version)]})
        if (source, version) in envs
        else (source, version, inputs)
        for source, version, inputs in builds
    ]


def _live_suites(run: _Run) -> dict[str, str]:
    """Suite -> aptly snapshot of every suite the new tree serves."""
    return {s: snap for s, snap in run.published.items() if run.history.suite(s).live}


def _keep_other_suites(
    ctx: Context, run: _Run, targets: Sequence[Distribution], options: PublishOptions
) -> None:
    """A live suite this run does not touch is published as it is (a fresh workspace has none)."""
    names = {d.name for d in targets}
    for suite in sorted(run.history.suites):
        live = run.live_packages(suite)
        if suite in names or not live or run.local.get(suite) == live:
            continue
        dist = TARGETS.get(suite)
        if dist is None:
            raise PfbuildError(
                f"the live repository has suite {suite}, which pfbuild does not build",
                fix="publish from the tree pfbuild wrote",
            )
        _materialize(ctx, run, dist, live, _live_files(run, suite, list(live)), options)


def rollback_suite(
    ctx: Context,
    suite: str,
    key: SigningKey,
    options: PublishOptions,
    base: LiveTree | None = None,
) -> str:
    """Return `suite` to the state the live one replaced; return that state's date."""
    with _publishing(ctx, key, options, base) as run:
        history: SuiteHistory = run.history.suite(suite)
        if history.live is None:
            where = base.path if base else ctx.workspace
            raise PfbuildError(
                f"suite {suite} was never published in {where}",
                f"published suites: {', '.join(sorted(run.history.suites)) or 'none'}",
                "publish it first, or pass the --workspace or --base that published it",
            )
        _index, target = history.rollback_state(suite)
        files = _live_files(run, suite, list(target.packages))
        gone = sorted(set(target.packages) - set(files))
        if gone:
            raise PfbuildError(
                f"suite {suite} cannot roll back: {', '.join(gone)} left the repository",
                "the earlier state's packages were cut by the retention rule (--keep)",
                "publish an older build instead",
            )
        _materialize(ctx, run, TARGETS[suite], target.packages, files, options)
        history.record(State(_now(), "rollback", dict(target.packages), target.previous))
        _keep_other_suites(ctx, run, [TARGETS[suite]], options)
        refresh_tree(ctx, key, options.url, _live_suites(run), run.history)
    log.info("%s: rolled back to the state of %s", suite, target.date or "the first publish")
    return target.date or "the first publish"
