"""The `podmedic` command line: one entry point, one sub-command per job.

Each command module of this package registers its own sub-parser (`register(sub)`); the work
is done by the packages below (server, admission, engine, kube, pki, toolbox), which neither
parse flags nor print. The command modules are imported when the parser is built, so importing
the package stays cheap.
"""

from __future__ import annotations

import argparse
import os
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
    from webhook.cli import certs, logs, manifests, quarantine, serve, toolbox

    for module in (serve, certs, toolbox, manifests, quarantine, logs):
        module.register(sub)
    return parser


# Their --help documents exit 1 for a usage error: their 2 means "a document could not be injected".
USAGE_EXIT_1 = frozenset({"inject", "explain", "uninject"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage error is status 2
        words = list(sys.argv[1:] if argv is None else argv)
        if exc.code == 2 and words[:1] and words[0] in USAGE_EXIT_1:
            return 1
        raise
    if sys.stdout is None:  # started with fd 1 closed (`>&-`): print() would drop the result silently
        print(f"podmedic {args.command}: standard output is closed", file=sys.stderr)
        return 1
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk fails here, with a message, not at interpreter exit (status 120)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader is gone (`| head`): not an error
        _drop_stdout()
        return 0
    except OSError as exc:  # the output could not be written (ENOSPC, EIO)
        print(f"podmedic {args.command}: {exc}", file=sys.stderr)
        _drop_stdout()
        return 1


def _drop_stdout() -> None:
    """Point fd 1 at /dev/null: the unwritten rest of stdout's buffer would otherwise fail again
    at interpreter exit, as 'Exception ignored' and exit status 120 instead of ours."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
