"""`pfbuild serve`: the published apt tree over HTTP on 127.0.0.1."""

from __future__ import annotations

import argparse
import os

from builder.commands.common import port_number
from builder.core.context import Context
from builder.publish import serve

NAME = "serve"
HELP = "serve the published apt repository over HTTP on 127.0.0.1 until interrupted"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=port_number,
        default=os.environ.get("PFBUILD_SERVE_PORT", str(serve.DEFAULT_PORT)),
        help="TCP port (env PFBUILD_SERVE_PORT; default %(default)s; 0 picks a free one)",
    )
    parser.add_argument(
        "--bind",
        default=serve.DEFAULT_HOST,
        help="address to listen on (default %(default)s: only this host)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    serve.serve_forever(ctx.apt_tree, args.bind, args.port)
    return 0
