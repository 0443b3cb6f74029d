"""The `podmedic` command line: one entry point, one sub-command per job.

Each concept module that has a command registers its own sub-parser (`register(sub)`), so the
CLI knows nothing about how a command works and a module's flags live next to its code.
Modules are imported lazily by `register`'s callers only, keeping `podmedic --help` fast.
"""

from __future__ import annotations

import argparse
import sys
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
    from webhook import certs, logdir, manifests, server, toolbox

    for module in (server, certs, toolbox, logdir, manifests):
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


if __name__ == "__main__":
    sys.exit(main())
