"""The environment equivalents of the command-line flags (each flag's help names its variable):
one reading of them for every command."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Any

_FLAG = {"true": True, "1": True, "false": False, "0": False, "": False}


def env(name: str, default: Any = None) -> Any:
    """The variable's value, else `default` (a flag's default when the variable is unset)."""
    return os.environ.get(name, default)


def env_kubeconfig() -> str | None:
    """$KUBECONFIG, unset or empty: None (in-cluster). The variable is kubectl's, so kubectl's
    convention holds (empty is unset, as kube_api_client reads it too); an empty PODMEDIC_* file
    name is `path`'s to refuse instead."""
    return os.environ.get("KUBECONFIG") or None


def env_flag(name: str) -> bool:
    """A boolean variable: true/1 or false/0 (any case), unset or empty is false. Anything else
    is a ValueError naming it, so PODMEDIC_QUARANTINE_DRY_RUN=0 never turns dry-run on and a
    typo never silently means either."""
    raw = os.environ.get(name, "")
    try:
        return _FLAG[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"{name}={raw!r}: expected true, false, 1 or 0") from None


# argparse `type=` functions. A flag's default read from its variable is a string, and argparse
# passes a string default through `type` too, but only when that sub-command runs: so a bad
# variable stops the command that uses it with a one-line usage error (exit 2), never a
# traceback while building the parser (which `podmedic certs --help` would hit as well).
# `var` names the variable in the message, since the value may have come from it.

def _also(var: str | None) -> str:
    return f" (from the flag or {var})" if var else ""


def whole(minimum: int, maximum: int | None = None, var: str | None = None) -> Callable[[str], int]:
    """An integer in [minimum, maximum]."""
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"of {minimum} or more"
            raise argparse.ArgumentTypeError(f"{raw!r}: expected a whole number {bound}{_also(var)}")
        return value
    return parse


def path(var: str | None = None) -> Callable[[str], str]:
    """A file name, never empty, from the flag or its variable: `--config "$CONFIG"` with the
    variable unset, or PODMEDIC_CONFIG='' from an overlay (the shipped manifests pass the config
    only so), would otherwise mean "none given", silently: the embedded defaults (`serve`
    injecting under the default hostRoot, the janitor sweeping it), `--namespaces-file` every
    namespace opted in, `--kubeconfig` in-cluster, no metrics file, certs/tls.crt."""
    def parse(raw: str) -> str:
        if not raw:
            raise argparse.ArgumentTypeError(f"an empty file name{_also(var)}")
        return raw
    return parse


def seconds(var: str | None = None) -> Callable[[str], float]:
    """A positive, finite number of seconds."""
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{raw!r}: expected a positive number of seconds{_also(var)}")
        return value
    return parse


def host_port(var: str | None = None, empty: bool = False) -> Callable[[str], str]:
    """HOST:PORT with a port from 1 to 65535 (HOST may be empty: all addresses); `empty`: "" too."""
    def parse(raw: str) -> str:
        if empty and raw == "":
            return raw
        _, colon, port = raw.rpartition(":")
        if not (colon and port.isdigit() and 1 <= int(port) <= 65535):
            raise argparse.ArgumentTypeError(f"{raw!r}: expected HOST:PORT with a port from 1 to 65535{_also(var)}")
        return raw
    return parse


def add_certificate_options(parser: argparse.ArgumentParser, connection: str, handshake_default: float) -> None:
    """--cert-reload-interval and --handshake-timeout, the same for every TLS server podmedic runs
    (`serve`, and the quarantine controller's /metrics): `connection` names what the timeout
    gives its time to, such as "a new connection gets ... its first request"."""
    parser.add_argument("--cert-reload-interval", type=seconds("PODMEDIC_CERT_RELOAD_INTERVAL"),
                        default=env("PODMEDIC_CERT_RELOAD_INTERVAL", "5"),
                        help="seconds between checks of the certificate files' content [PODMEDIC_CERT_RELOAD_INTERVAL]")
    parser.add_argument("--handshake-timeout", type=seconds("PODMEDIC_HANDSHAKE_TIMEOUT"),
                        default=env("PODMEDIC_HANDSHAKE_TIMEOUT", str(handshake_default)),
                        help=f"seconds {connection} (default {handshake_default:g}) [PODMEDIC_HANDSHAKE_TIMEOUT]")
