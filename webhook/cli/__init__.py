"""The `podmedic` command line: one entry point, one sub-command per job.

Each command module of this package registers its own sub-parser (`register(sub)`); the work
is done by the packages below (server, admission, engine, kube, pki, toolbox), which neither
parse flags nor print. The command modules are imported when the parser is built, so importing
the package stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from webhook import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podmedic",
        description="Kubernetes mutating admission webhook: default probes, supervisor wrapper, "
        "per-pod log directory and preStop forensics, driven by namespace and pod annotations.",
    )
    parser.add_argument("--version", action="version", version=f"podmedic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from webhook.cli import certs, logs, manifests, quarantine, serve, toolbox

    for module in (serve, certs, toolbox, manifests, quarantine, logs):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
