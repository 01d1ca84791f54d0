"""`pfbuild publish [RECIPE VERSION]`: the signed apt repository, switched into place atomically."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from builder.commands.common import (
    add_base_argument,
    add_target_argument,
    positive_int,
    selected_targets,
)
from builder.core.atomic import pid_temp_dir
from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.model.distro import TARGETS, Distribution
from builder.pipeline.revisions import built_rebuilds, published_inputs
from builder.publish import repo as publish
from builder.publish import serve, signing
from builder.publish.aptly import ORIGIN
from builder.publish.artifact import find_artifacts, verify_artifacts
from builder.publish.handoff import import_verified
from builder.publish.history import DEFAULT_KEEP
from builder.publish.live import LiveTree, fetch_live
from builder.publish.tree import export_tree, live_generation

NAME = "publish"
HELP = "publish the checked .debs of every target as a signed apt repository (dist/apt)"


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", help="the recipe whose build to add (default: all)")
    parser.add_argument("version", nargs="?", help="the version of that recipe's build")
    add_target_argument(parser)
    parser.add_argument(
        "--from",
        dest="from_dirs",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="publish the build artifacts in DIR (made by `pfbuild build`/`check` elsewhere), "
        "each verified against its artifact.json first; repeatable",
    )
    parser.add_argument(
        "--rollback",
        metavar="SUITE",
        choices=sorted(TARGETS),
        help="return SUITE to the state the live one replaced (from the repository's history)",
    )
    add_base_argument(
        parser, "its packages and history carry over (default: the workspace's own dist/apt)"
    )
    parser.add_argument(
        "--keep",
        type=positive_int,
        default=DEFAULT_KEEP,
        metavar="N",
        help="versions of each package a suite keeps in its index (default %(default)s)",
    )
    parser.add_argument(
        "--to",
        type=Path,
        metavar="DIR",
        help="also write the published tree into DIR, replaced in one step (for rsync or an "
        "object store sync)",
    )
    parser.add_argument(
        "--origin",
        default=os.environ.get("PFBUILD_ORIGIN") or os.environ.get("DEBFULLNAME") or ORIGIN,
        help="the Origin of the suites' Release files (env PFBUILD_ORIGIN, else DEBFULLNAME; "
        "default %(default)s); set on a suite's first publish",
    )
    parser.add_argument(
        "--label",
        default=os.environ.get("PFBUILD_LABEL") or None,
        help="the Label of the suites' Release files (env PFBUILD_LABEL; default: the Origin)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "PFBUILD_REPO_URL", f"http://{serve.DEFAULT_HOST}:{serve.DEFAULT_PORT}/"
        ),
        help="where clients reach the repository; written into the exported .sources snippets "
        "(env PFBUILD_REPO_URL; default: where `pfbuild serve` listens)",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=publish.DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for another publisher (default %(default)g)",
    )
    parser.add_argument(
        "--allow-unchecked",
        action="store_true",
        help="publish builds whose hardening check did not pass or never ran (local use only)",
    )
    parser.add_argument(
        "--signing-key",
        default=os.environ.get("PFBUILD_SIGNING_KEY") or None,
        metavar="FPR",
        help="fingerprint of the signing key (env PFBUILD_SIGNING_KEY); default: a local key "
        "generated in the workspace",
    )
    parser.add_argument(
        "--gnupghome",
        default=os.environ.get("PFBUILD_GNUPGHOME") or None,
        metavar="DIR",
        help="the GNUPGHOME holding --signing-key (env PFBUILD_GNUPGHOME; default GNUPGHOME)",
    )
    parser.add_argument(
        "--signing-key-file",
        default=os.environ.get("PFBUILD_SIGNING_KEY_FILE") or None,
        metavar="FILE",
        help="an exported secret key to import into the workspace key store "
        "(env PFBUILD_SIGNING_KEY_FILE)",
    )
    parser.add_argument(
        "--key-algo",
        choices=signing.KEY_ALGOS,
        default="ed25519",
        help="algorithm of a generated local key (default %(default)s)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    if (args.recipe is None) != (args.version is None):
        raise PfbuildError(
            "publish takes a RECIPE and a VERSION, or neither",
            fix="e.g. `pfbuild publish postfix 3.11.6`, or `pfbuild publish` for every build",
        )
    if args.rollback and (args.recipe or args.from_dirs):
        raise PfbuildError(
            "--rollback takes no RECIPE VERSION or --from", fix="pass only --rollback SUITE"
        )
    if args.from_dirs and args.recipe:
        raise PfbuildError(
            "--from takes no RECIPE VERSION: the artifacts name their builds",
            fix="e.g. `pfbuild publish --from artifacts/`",
        )
    config = signing.SigningConfig(
        fingerprint=args.signing_key,
        gnupghome=_optional_path(args.gnupghome),
        key_file=_optional_path(args.signing_key_file),
        algo=args.key_algo,
    )
    if (
        args.base
        and args.from_dirs
        and Path(args.base).resolve() in {d.resolve() for d in args.from_dirs}
    ):
        raise PfbuildError(
            "--base and --from name the same folder",
            fix="--base is the live repository, --from the new build artifacts",
        )
    options = publish.PublishOptions(
        url=args.url,
        lock_timeout=args.lock_timeout,
        allow_unchecked=args.allow_unchecked,
        keep=args.keep,
        origin=args.origin,
        label=args.label or args.origin,
    )
    targets = selected_targets(ctx, args)
    builds: list[tuple[str, str]] = []
    if args.from_dirs:
        # Every artifact is verified, and the request checked, before any enters the workspace:
        # the manifests first, then every artifact's contents on a copy (packages read whole,
        # build records, the hardening check run here); only then are they all installed.
        imported = verify_artifacts(find_artifacts(args.from_dirs))
        names = {a.target for a in imported}
        targets = [t for t in targets if t.name in names]
        if not targets:
            raise PfbuildError(
                f"the artifacts are for {', '.join(sorted(names))}, not the --target given",
                fix="drop --target, or pass artifacts of that target",
            )
        staged = import_verified(ctx, imported, allow_unchecked=args.allow_unchecked)
        builds = sorted({(a.recipe, a.version) for a in imported})
        for build in staged:
            artifact = build.artifact
            print(
                f"{artifact.target:10}{'imported':10}{artifact.recipe} {artifact.version} "
                f"(hardening check here: {build.report.verdict})"
            )
    if args.rollback and not args.base and live_generation(ctx) is None:
        raise PfbuildError(
            f"suite {args.rollback} was never published in {ctx.workspace}",
            fix="publish it first, or pass the --workspace or --base that published it",
        )
    key = signing.ensure_signing_key(ctx, config)
    try:
        with pid_temp_dir(ctx.tmp_dir, "live-") as scratch:
            # The live tree must be signed by the key that signs this publish: clients pinned it.
            base = fetch_live(args.base, scratch / "tree", key.fingerprint) if args.base else None
            _publish(ctx, args, key, base, options, targets, builds)
    finally:
        signing.stop_agent(ctx, key)
    print(f"tree      {ctx.apt_tree} (key {key.fingerprint})")
    if args.to:
        live = live_generation(ctx)
        if live is not None:
            export_tree(live, args.to)
            print(f"copied to {args.to}")
    return 0


def _publish(
    ctx: Context,
    args: argparse.Namespace,
    key: signing.SigningKey,
    base: LiveTree | None,
    options: publish.PublishOptions,
    targets: list[Distribution],
    builds: list[tuple[str, str]],
) -> None:
    """Publish the builds, or roll back, on top of `base` (None: the workspace's own tree)."""
    if args.rollback:
        when = publish.rollback_suite(ctx, args.rollback, key, options, base)
        print(f"{args.rollback:10}rolled back to the state published {when}")
        return
    recipe, version = args.recipe, args.version
    pairs: list[tuple[str | None, str | None]] = [*builds] or [(recipe, version)]
    states = publish.publish_repo(
        ctx,
        targets,
        key,
        options,
        recipe=recipe,
        version=version,
        builds=builds,
        base=base,
        inputs=published_inputs(targets, pairs, built_rebuilds(ctx, targets, pairs)),
    )
    if not states:
        raise PfbuildError(
            "nothing to publish",
            f"no build results for {', '.join(t.name for t in targets)} in {ctx.workspace}",
            "run `pfbuild build RECIPE VERSION` (and `pfbuild check`) first",
        )
    for state in states:
        verb = "published" if state.changed else "unchanged"
        print(f"{state.suite:10}{verb:10}{state.snapshot} ({len(state.packages)} packages)")
