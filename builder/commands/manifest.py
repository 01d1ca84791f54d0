"""`pfbuild manifest verify [PATH]`: re-hash every artifact a release manifest names."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.core.context import Context
from builder.core.errors import PfbuildError
from builder.pipeline.manifest import verify_manifest

NAME = "manifest"
HELP = "verify a release manifest against the artifacts on disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["verify"], help="what to do with the manifest")
    parser.add_argument("path", nargs="?", type=Path, help="the manifest (default: postfix's)")
    parser.add_argument("--release", metavar="VERSION", help="the release whose manifest to verify")


def run(ctx: Context, args: argparse.Namespace) -> int:
    path = args.path
    if path is None:
        if not args.release:
            raise PfbuildError(
                "manifest verify needs a PATH or --release", fix="e.g. --release 3.11.6"
            )
        path = ctx.manifest_path("postfix", args.release)
    problems = verify_manifest(path)
    if problems:
        raise PfbuildError(
            f"{len(problems)} artifact(s) do not match {path}",
            "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""),
            "rebuild with `pfbuild release`, or find what changed the files",
        )
    print(f"ok: every artifact in {path} matches")
    return 0
