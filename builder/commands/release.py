"""`pfbuild release VERSION`: the whole pipeline as one resumable, cached command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from builder.commands.common import (
    add_base_argument,
    add_ccache_argument,
    add_jobs_argument,
    add_parallel_argument,
    add_target_argument,
    selected_targets,
)
from builder.commands.exits import Exit
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.core.lock import workspace_lock
from builder.core.run import interrupt_on_sigterm
from builder.model.distro import TARGETS
from builder.pipeline.actions import (
    Action,
    Outputs,
    PlannedAction,
    Progress,
    StateStore,
    execute,
    plan,
)
from builder.pipeline.manifest import build_manifest, write_manifest
from builder.pipeline.release import release_actions, release_builds
from builder.pipeline.request import ReleaseRequest
from builder.pipeline.revisions import Revision, plan_revisions
from builder.publish import cosign
from builder.publish.live import read_live
from builder.publish.tree import check_repo_url

NAME = "release"
HELP = "fetch, source, build, check, publish and image in one resumable command"
VARIANTS = tuple(d.variant for d in TARGETS.values())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", help="the Postfix release, e.g. 3.11.6")
    parser.add_argument("--recipe", default="postfix", help="the main recipe (default postfix)")
    add_target_argument(parser)
    parser.add_argument(
        "--variant", action="append", default=[], choices=VARIANTS,
        help="image variant (repeatable; default: those of the selected targets)",
    )  # fmt: skip
    parser.add_argument("--no-image", action="store_true", help="stop after publishing")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    add_jobs_argument(parser)
    add_ccache_argument(parser)
    add_parallel_argument(parser)
    parser.add_argument("--json", action="store_true", help="progress as JSON lines on stdout")
    parser.add_argument(
        "--url", default=os.environ.get("PFBUILD_REPO_URL", "http://127.0.0.1:8080/"),
        help="where apt clients will reach the repository (goes into the .sources snippet; "
        "env PFBUILD_REPO_URL)",
    )  # fmt: skip
    add_base_argument(
        parser,
        "versions it has get the next +pfN when their inputs changed, and nothing is done "
        "when none did (exit 10)",
    )
    parser.add_argument(
        "--force-rebuild", action="store_true",
        help="with --base: build every version again under its next +pfN even when its inputs "
        "did not change (check-updates' age and build-env reasons); chroots and base images are "
        "made again",
    )  # fmt: skip
    parser.add_argument(
        "--cosign-key", type=Path, metavar="FILE",
        default=os.environ.get(cosign.KEY_FILE_ENV) or None,
        help="the cosign private key that signs the images, its password in COSIGN_PASSWORD "
        f"(env {cosign.KEY_FILE_ENV}); default: a local key pair made in the workspace",
    )  # fmt: skip


def request_from_args(ctx: Context, args: argparse.Namespace) -> ReleaseRequest:
    """Validate the options into a ReleaseRequest."""
    targets = tuple(selected_targets(ctx, args))
    by_variant = {d.variant: d for d in targets}
    variants = tuple(dict.fromkeys(args.variant)) or tuple(by_variant)
    missing = [v for v in variants if v not in by_variant]
    if missing and not args.no_image:
        raise PfbuildError(
            f"image variant {missing[0]} needs its target, which this release does not build",
            fix="add its --target, or drop the --variant",
        )
    return ReleaseRequest(
        recipe=args.recipe,
        version=args.version,
        targets=targets,
        variants=variants,
        images=not args.no_image,
        jobs=args.jobs,
        ccache=args.ccache,
        repo_url=check_repo_url(args.url),
        cosign_key=args.cosign_key,
        base=args.base,
    )


@contextmanager
def executed(
    ctx: Context, actions: Sequence[Action], *, parallel: int, as_json: bool
) -> Iterator[tuple[list[PlannedAction], dict[str, Outputs]]]:
    """Plan and run `actions` under the release lock, held while the block uses the results."""
    progress = Progress(sys.stdout if as_json else sys.stderr, as_json=as_json)
    with interrupt_on_sigterm(), workspace_lock(ctx.release_lock, "release"):
        state = StateStore(ctx.release_state_dir)
        planned = plan(actions, state)
        yield planned, execute(planned, state, progress, parallel=parallel)


def live_revisions(ctx: Context, request: ReleaseRequest, *, force: bool) -> list[Revision]:
    """The rebuild counters the live repository at `request.base` asks of this release."""
    if request.base is None:
        return []
    live = read_live(ctx, request.base, os.environ)
    return plan_revisions(
        live.history, release_builds(request.recipe, request.version), request.targets, force=force
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    request = request_from_args(ctx, args)
    if args.force_rebuild and not request.base:
        raise PfbuildError(
            "--force-rebuild needs --base", fix="pass the live repository with --base URL|DIR"
        )
    revisions = live_revisions(ctx, request, force=args.force_rebuild)
    if args.force_rebuild:
        # A forced rebuild is for what moved outside the inputs (the archive, age): it runs on
        # chroots and base images made now, not on ones cached before.
        ctx = dataclasses.replace(ctx, envs_after=time.time())
    for rev in revisions:
        print(f"{'same' if rev.same else 'new':6}{rev.recipe} {rev.version:<32} {rev.reason}")
    if revisions and all(r.same for r in revisions):
        print(f"nothing to do: {request.base} has every build of this release, same inputs")
        return Exit.NOTHING_TO_DO
    request = dataclasses.replace(
        request, rebuilds={(r.recipe, r.target): r.rebuild for r in revisions}
    )
    actions = release_actions(ctx, request)
    if args.dry_run:
        for item in plan(actions, StateStore(ctx.release_state_dir)):
            verdict = "reuse" if item.reuse else "run"
            print(f"{verdict:6}{item.action.name:<40} {item.reason}")
        return 0
    with executed(ctx, actions, parallel=args.parallel, as_json=args.json) as (planned, outputs):
        manifest = build_manifest(request, outputs, {p.action.name: p.key for p in planned})
        path = ctx.manifest_path(request.recipe, request.version)
        write_manifest(path, manifest)
    if args.json:
        print(json.dumps({"manifest": str(path)}))
    else:
        print(f"manifest  {path}")
    return 0
