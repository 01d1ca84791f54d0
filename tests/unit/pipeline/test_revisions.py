"""The next +pfN against the live repository's history, and check-updates' reasons."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path

import pytest

from builder.bootstrap.buildenv import EnvRecord
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import RESOLUTE, TRIXIE, Distribution
from builder.model.loader import load_recipe, maintainer_from_env
from builder.model.recipe import Recipe
from builder.model.version import rebuild_counter, target_version
from builder.pipeline import triggers
from builder.pipeline.revisions import (
    build_inputs,
    built_rebuilds,
    plan_revisions,
    published_inputs,
    revision,
)
from builder.publish.history import BUILD_ENV, History, State, format_build_env, parse_build_env
from builder.publish.live import IndexedFile, LiveTree
from builder.publish.sbom import BomComponent, BomSubject
from tests.fixtures.builds import write_changes

pytestmark = pytest.mark.unit

POSTFIX = load_recipe("postfix")
MALLOC = load_recipe("mimalloc-secure")
MALLOC_VERSION = dict(POSTFIX.companions)["mimalloc-secure"]
SHA = "0" * 64


def _published(
    history: History,
    recipe: Recipe,
    version: str,
    rebuild: int,
    inputs: dict[str, str] | None = None,
) -> str:
    """Record `recipe` `version` at +pf`rebuild` as published for trixie; return its version."""
    bumped = dataclasses.replace(recipe, rebuild=rebuild)
    debian = target_version(bumped, version, TRIXIE)
    suite = history.suite("trixie")
    key = f"{recipe.binary_packages['trixie'][0]}_{debian}_amd64"
    state = dict(suite.live.packages) if suite.live else {}
    suite.record(State("2026-12-01T00:00:00Z", "publish", {**state, key: SHA}, None))
    recorded = build_inputs(recipe, version, TRIXIE) if inputs is None else inputs
    suite.builds.setdefault(recipe.source_package, {})[debian] = recorded
    return debian


def test_a_version_the_repository_lacks_keeps_the_recipe_counter() -> None:
    rev = revision(History(), POSTFIX, "3.11.6", TRIXIE)
    assert (rev.rebuild, rev.same, rev.version) == (1, False, "3.11.6-1+pf1~trixie")


def test_the_same_inputs_need_nothing_and_other_inputs_get_the_next_counter() -> None:
    history = History()
    _published(history, POSTFIX, "3.11.6", 1)
    rev = revision(history, POSTFIX, "3.11.6", TRIXIE)
    assert rev.same and rev.rebuild == 1
    other = {**build_inputs(POSTFIX, "3.11.6", TRIXIE), "templates": "edited"}
    _published(history, POSTFIX, "3.11.6", 2, other)
    rev = revision(history, POSTFIX, "3.11.6", TRIXIE)
    assert (rev.same, rev.rebuild, rev.version) == (False, 3, "3.11.6-1+pf3~trixie")
    assert rev.reason == "3.11.6-1+pf2~trixie was built from other templates"


def test_a_published_file_without_recorded_inputs_is_never_built_again() -> None:
    history = History()
    key = f"postfix_{target_version(POSTFIX, '3.11.6', TRIXIE)}_amd64"
    history.suite("trixie").record(State("", "publish", {key: SHA}, None))
    rev = revision(history, POSTFIX, "3.11.6", TRIXIE)
    assert (rev.rebuild, rev.reason) == (2, "3.11.6-1+pf1~trixie has no record of its inputs")


def test_a_release_moves_as_one_unit() -> None:
    history = History()
    _published(history, POSTFIX, "3.11.6", 1, {"templates": "old"})
    _published(history, MALLOC, MALLOC_VERSION, 1)
    builds = [(POSTFIX, "3.11.6"), (MALLOC, MALLOC_VERSION)]
    revs = {(r.recipe, r.target): r for r in plan_revisions(history, builds, [TRIXIE, RESOLUTE])}
    assert revs[("postfix", "trixie")].rebuild == 2
    # Unchanged, but published: rebuilt with the release under the next counter, never again +pf1.
    malloc = revs[("mimalloc-secure", "trixie")]
    assert malloc.rebuild == 2 and malloc.reason.startswith("rebuilt with the release")
    assert revs[("postfix", "resolute")].rebuild == 1  # never published there
    # Everything the same: nothing to do.
    same = History()
    _published(same, POSTFIX, "3.11.6", 1)
    _published(same, MALLOC, MALLOC_VERSION, 1)
    assert all(r.same for r in plan_revisions(same, builds, [TRIXIE]))


def test_a_handed_off_version_may_carry_a_later_counter_only() -> None:
    bumped = target_version(dataclasses.replace(POSTFIX, rebuild=4), "3.11.6", TRIXIE)
    assert rebuild_counter(POSTFIX, "3.11.6", TRIXIE, bumped) == 4
    assert rebuild_counter(POSTFIX, "3.11.6", TRIXIE, "3.11.6-1+pf4~resolute") == 1
    assert rebuild_counter(POSTFIX, "3.11.6", TRIXIE, "3.11.5-1+pf4~trixie") == 1


def test_changelog_identity_comes_from_debfullname_and_debemail() -> None:
    assert maintainer_from_env({}) is None
    env = {"DEBFULLNAME": "Jane Admin", "DEBEMAIL": "jane@example.org"}
    assert maintainer_from_env(env) == "Jane Admin <jane@example.org>"
    assert maintainer_from_env({"DEBEMAIL": "Ops <ops@example.org>"}) == "Ops <ops@example.org>"
    with pytest.raises(PfbuildError, match="not 'Name <email>'"):
        maintainer_from_env({"DEBFULLNAME": "Jane\nX-Evil: 1", "DEBEMAIL": "j@example.org"})


# ---- check-updates ----------------------------------------------------------------------------


def _live(history: History, index: dict[str, dict[str, IndexedFile]]) -> LiveTree:
    return LiveTree(Path("/live"), "A" * 40, tuple(index), index, history)


def test_published_release_is_read_from_the_live_index() -> None:
    index = {
        "trixie": {
            "postfix_3.11.5-1+pf1~trixie_amd64": IndexedFile("a", SHA),
            "postfix_3.11.6-1+pf2~trixie_amd64": IndexedFile("b", SHA),
            "libmimalloc-secure_2.0.9+ds-2+pf1~trixie_amd64": IndexedFile("c", SHA),
        }
    }
    assert triggers.published_release(_live(History(), index), POSTFIX) == "3.11.6"
    assert triggers.published_release(_live(History(), {}), POSTFIX) is None


def test_upstream_packaging_and_age_reasons() -> None:
    assert triggers.upstream_reason("3.11.6", "3.11.6", "x") is None
    reason = triggers.upstream_reason("3.11.6", "3.11.7", "https://mirror/")
    assert reason is not None and reason.action == "build" and "3.11.7" in reason.evidence
    pinned = POSTFIX.packaging_for("3.11.6").version
    assert triggers.packaging_reason(POSTFIX, "3.11.6", [pinned, "3.11.5-2"]) is None
    newer = triggers.packaging_reason(POSTFIX, "3.11.6", ["3.11.6-2", pinned])
    assert newer is not None and "3.11.6-2" in newer.evidence
    history = History()
    history.suite("trixie").record(State("2026-11-01T00:00:00Z", "publish", {}, None))
    now = 1796083200.0  # 2026-12-01T00:00:00Z
    assert triggers.age_reason(_live(history, {}), 31, now) is None
    old = triggers.age_reason(_live(history, {}), 29, now)
    assert old is not None and "30 days old" in old.evidence


def test_image_base_changes_call_for_images_alone() -> None:
    bom = BomSubject(
        "pfbuild/postfix", "3.11.6-debian", SHA,
        (BomComponent("libc6", "2.41-12", "amd64", "pkg:deb/debian/libc6@2.41-12", SHA),
         BomComponent("postfix", "3.11.6-1+pf1~trixie", "amd64", "pkg:deb/x/postfix", SHA)),
    )  # fmt: skip
    base = {"libc6": "2.41-12+deb13u1", "base-files": "13.8"}
    reasons = triggers.image_reasons({"debian": bom}, [TRIXIE], lambda _d: base)
    assert [(r.kind, r.action) for r in reasons] == [("image-base", "image")]
    assert "libc6 2.41-12 -> 2.41-12+deb13u1" in reasons[0].evidence
    check = triggers.UpdateCheck("postfix", "3.11.6", "3.11.6", tuple(reasons))
    assert check.action == "image"
    assert triggers.image_reasons({"debian": bom}, [TRIXIE], lambda _d: {"libc6": "2.41-12"}) == []
    assert triggers.UpdateCheck("postfix", "3.11.6", "3.11.6").action == "none"


def test_a_moved_build_environment_calls_for_a_build_of_the_unchanged_inputs() -> None:
    history = History()
    env = {"gcc-14": "14.2.0-19", "libc6-dev": "2.41-12", "debhelper": "13.24.2"}
    recorded = {**build_inputs(POSTFIX, "3.11.6", TRIXIE), BUILD_ENV: format_build_env(env)}
    version = _published(history, POSTFIX, "3.11.6", 1, recorded)
    # What the build ran with is no planner input: the same version is still "the same".
    assert revision(history, POSTFIX, "3.11.6", TRIXIE).same
    live = _live(history, {})
    asked: list[tuple[str, set[str]]] = []

    def archive(moved: dict[str, set[str]]) -> triggers.ArchivePackages:
        def packages(dist: Distribution, names: Collection[str]) -> dict[str, set[str]]:
            asked.append((dist.name, set(names)))
            return {n: moved.get(n, {env[n]}) for n in names}

        return packages

    builds = [(POSTFIX, "3.11.6")]
    assert triggers.build_env_reasons(live, builds, [TRIXIE], archive({})) == []
    assert asked == [("trixie", set(env))]
    # A point release moved libc6-dev and removed debhelper's version.
    moved = archive({"libc6-dev": {"2.41-12+deb13u1"}, "debhelper": set()})
    reasons = triggers.build_env_reasons(live, builds, [TRIXIE], moved)
    assert [(r.kind, r.action) for r in reasons] == [("build-env", "build")]
    assert version in reasons[0].evidence
    assert "debhelper 13.24.2 -> gone, libc6-dev 2.41-12 -> 2.41-12+deb13u1" in reasons[0].evidence
    assert "gcc-14" not in reasons[0].evidence
    # A history that does not record the environment (or a build that is rebuilt anyway for
    # its inputs) is not compared.
    bare = History()
    _published(bare, POSTFIX, "3.11.6", 1)
    assert triggers.build_env_reasons(_live(bare, {}), builds, [TRIXIE], moved) == []
    edited = History()
    _published(edited, POSTFIX, "3.11.6", 1, {**recorded, "templates": "old"})
    assert triggers.build_env_reasons(_live(edited, {}), builds, [TRIXIE], moved) == []


def test_the_build_environment_round_trips_through_the_history_format() -> None:
    env = {"libc6": "2.41-12", "dpkg-dev": "1.22.21", "gcc-14-base": "1:14.2.0-19"}
    text = format_build_env(env)
    assert text == "dpkg-dev=1.22.21 gcc-14-base=1:14.2.0-19 libc6=2.41-12"
    assert parse_build_env(text) == env


def test_a_forced_rebuild_makes_its_build_environments_again(tmp_path: Path) -> None:
    record = EnvRecord("trixie", "chroot", "x.tar", "inputs", created=1000.0)
    ctx = Context(workspace=tmp_path)
    assert record.is_fresh("inputs", ctx, now=2000.0)
    assert not record.is_fresh("other", ctx, now=2000.0)
    assert not record.is_fresh("inputs", dataclasses.replace(ctx, envs_after=1500.0), now=2000.0)
    assert record.is_fresh("inputs", dataclasses.replace(ctx, envs_after=1000.0), now=2000.0)


def test_a_build_is_recorded_under_the_counter_its_packages_carry(ctx: Context) -> None:
    """`build --rebuild 2`, then publish: the history keys its inputs by +pf2, not +pf1."""
    bumped = target_version(dataclasses.replace(POSTFIX, rebuild=2), "3.11.6", TRIXIE)
    build_dir = ctx.build_dir("postfix", "3.11.6", "trixie")
    build_dir.mkdir(parents=True)
    write_changes(build_dir, "postfix", bumped, [])
    pairs: list[tuple[str | None, str | None]] = [("postfix", "3.11.6"), ("elsewhere", "1.0")]
    rebuilds = built_rebuilds(ctx, [TRIXIE, RESOLUTE], pairs)
    assert rebuilds == {("postfix", "trixie"): 2}  # resolute: not built here
    recorded = published_inputs([TRIXIE], pairs, rebuilds)["trixie"]
    assert [(source, version) for source, version, _inputs in recorded] == [("postfix", bumped)]
