"""The `podmedic` command line: one entry point, one sub-command per job.

Each command module of this package registers its own sub-parser (`register(sub)`); the work
is done by the packages below (server, admission, engine, kube, pki, toolbox), which neither
parse flags nor print. The command modules are imported when the parser is built, so importing
the package stays cheap, and only the invoked command's module is (COMMANDS): podmedic's init
containers run `podmedic toolbox install` and `podmedic logdir` under a memory limit that a
LimitRange may lower, and with every module (cryptography, flask, the engine) the interpreter
peaked at about 42 MB instead of about 14 MB (peak RSS, measured).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from webhook import __version__


# Each command word -> the module that registers it, in the order `podmedic --help` lists them.
COMMANDS = {"serve": "serve", "certs": "certs", "toolbox": "toolbox", "logdir": "toolbox", "inject": "manifests",
            "explain": "manifests", "uninject": "manifests", "quarantine": "quarantine", "logs": "logs"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with only `command`'s module when it names one (its
    words parse, and fail, exactly as with all: argparse reads no other command's sub-parser)."""
    parser = argparse.ArgumentParser(
        prog="podmedic",
        description="Kubernetes mutating admission webhook: default probes, supervisor wrapper, "
        "per-pod log directory and preStop forensics, driven by namespace and pod annotations.",
    )
    parser.add_argument("--version", action="version", version=f"podmedic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for name in modules:
        importlib.import_module(f"webhook.cli.{name}").register(sub)
    return parser


# Their --help documents exit 1 for a usage error: their 2 means "a document could not be injected".
USAGE_EXIT_1 = frozenset({"inject", "explain", "uninject"})


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words else None)
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse's usage error is status 2
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
