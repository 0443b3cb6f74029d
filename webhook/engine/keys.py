"""The settings' keys: each annotation key, its parser and its feature, the feature names, and
the configuration level that decided a value. A leaf module: the global configuration, the
resolver, the decisions and the features all read it, it reads none of them.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Callable, Literal


class Level(str, Enum):
    """Which layer of configuration decided a value (shown by `podmedic explain`)."""

    GLOBAL = "global"
    NAMESPACE = "namespace"
    POD = "pod"
    CONTAINER = "container"


class FeatureName(StrEnum):
    """The features, by the name users see: the switch annotation's key, the marker's entry, the
    `feature` of a decision in the audit line, the metrics and `podmedic explain`. A StrEnum, so
    it formats as its value and serialises as plain text."""

    SUPERVISOR = "supervisor"
    PROBES = "probes"
    LOGS = "logs"
    FORENSICS = "forensics"


# What a key or a decision is about when it is not one feature: the whole pod (the `inject`
# switch, the gates), the pod's podmedic annotations as a whole, or the quarantine controller
# (`podmedic quarantine`, which reads its keys after admission, never in it).
OtherScope = Literal["pod", "settings", "quarantine"]
Scope = FeatureName | OtherScope


# ------------------------------------------------------------------ parsers

def parse_switch(raw: str) -> bool:
    if raw in ("enabled", "disabled"):
        return raw == "enabled"
    raise ValueError("expected enabled or disabled")


_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def parse_port(raw: str) -> int | str:
    """A port number, or a port name (IANA_SVC_NAME) that must match a declared containerPort."""
    if raw.isdigit():
        port = int(raw)
        if 1 <= port <= 65535:
            return port
        raise ValueError("expected a port number 1-65535 or a port name")
    if len(raw) <= 15 and _SVC_NAME.match(raw) and "--" not in raw:
        return raw
    raise ValueError("expected a port number 1-65535 or a port name (lowercase, <= 15 characters)")


def parse_http_path(raw: str) -> str:
    if raw.startswith("/") and raw.isprintable() and " " not in raw and len(raw) <= 1024:
        return raw
    raise ValueError("expected an HTTP path starting with '/' without spaces")


def parse_command(raw: str) -> list[str]:
    """A JSON array of strings, or words separated by spaces (no shell is involved)."""
    text = raw.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise ValueError("expected a JSON array of non-empty strings or space-separated words")
        return value
    words = text.split()
    if not words:
        raise ValueError("expected a command")
    return words


_DURATION = re.compile(r"^(\d+)(s|m|h)?$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}  # parse_duration takes no "d"


def parse_duration(raw: str) -> int:
    """Seconds, written as 90, 90s, 3m or 1h; positive and at most a day."""
    match = _DURATION.match(raw)
    if match:
        seconds = int(match.group(1)) * _UNIT[match.group(2)]
        if 0 < seconds <= 86400:
            return seconds
    raise ValueError("expected a duration such as 180s, 3m or 1h (at most 24h)")


def _int_parser(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if raw.isdigit() and low <= int(raw) <= high:
            return int(raw)
        raise ValueError(f"expected a whole number from {low} to {high}")
    return parse


# The signals the wrapper can stop on (its stopsignal): a container's lifecycle.stopSignal among
# them becomes the wrapper's (a SIGTERM keeps the settings' one), any other one skips the
# supervisor (features/supervisor.py).
STOP_SIGNALS = ("TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "WINCH")


def _choice_parser(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw in choices:
            return raw
        raise ValueError("expected one of " + ", ".join(choices))
    return parse


def parse_exitcodes(raw: str) -> list[int]:
    parts = raw.split(",")
    if all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return [int(p) for p in parts]
    raise ValueError("expected exit codes 0-255 separated by commas, e.g. 0,2")


# What the runtime and the kubelet mount in every container: a directory mounted at or under one
# of these breaks the container or hides what it needs (measured on a real node, runc via
# containerd 2.3): /proc and below, /dev, a device in it (/dev/null: "open /dev/null: is a
# directory"), a new directory in /sys (read-only) and anything under a file fail at container
# creation; /sys and the kubelet's three files start but hide sysfs (the cgroup files the
# supervisor reads), the pod's own names and its DNS configuration.
_RUNTIME_MOUNTS = ("/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def parse_mount_path(raw: str) -> str:
    """An in-container path: absolute, normalised, no '..', not '/' (tenants choose only this).
    No '$': the mountPath keeps `$(VAR)` as written but the kubelet expands it in the args that
    pass the path on (--forensics-out=), so the two would differ. No leading '//', which
    normpath keeps (POSIX leaves its meaning open). Not at or under _RUNTIME_MOUNTS."""
    if (raw.startswith("/") and raw != "/" and not raw.startswith("//") and posixpath.normpath(raw) == raw
            and ".." not in raw.split("/") and ":" not in raw and "$" not in raw and raw.isprintable()
            and len(raw) <= 512):
        owner = _runtime_mount(raw)
        if owner:
            raise ValueError(f"the container runtime or the kubelet mounts {owner} in every container")
        return raw
    raise ValueError("expected an absolute, normalised path without '..', ':' or '$' (e.g. /var/log/app)")


def _runtime_mount(path: str) -> str | None:
    """The entry of _RUNTIME_MOUNTS that the normalised `path` is at or under, or None. One
    prefix test settles the usual path (/var/log/app); /procfs is not under /proc."""
    if not path.startswith(_RUNTIME_MOUNTS):
        return None
    return next((ours for ours in _RUNTIME_MOUNTS if path == ours or path.startswith(ours + "/")), None)


_RETENTION = re.compile(r"([0-9]{1,6})(s|m|h|d)")  # fullmatch: "$" lets "7d\n" pass, \d other digits


def parse_retention(raw: str) -> int:
    """Seconds, written as 90s, 30m, 12h or 7d (a unit is required: a bare number is ambiguous)."""
    match = _RETENTION.fullmatch(raw)
    if match and int(match.group(1)) > 0:
        return int(match.group(1)) * _UNIT[match.group(2)]
    raise ValueError("expected a duration with a unit, such as 12h or 7d")


def parse_rfc3339(raw: str) -> datetime:
    """An RFC 3339 time with its offset (2026-01-31T18:00:00Z); a time without one is ambiguous."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None or "T" not in raw.upper():
        raise ValueError("expected an RFC 3339 time with an offset, such as 2026-01-31T18:00:00Z")
    return value


# ------------------------------------------------------------------ the key table

@dataclass(frozen=True)
class Key:
    name: str
    feature: Scope
    parse: Callable[[str], Any]
    doc: str
    optional: bool = False  # may be unset (""); other keys always have a global default


def _keys(*keys: Key) -> dict[str, Key]:
    return {k.name: k for k in keys}


_F = FeatureName
_SECONDS = _int_parser(0, 86400)
_POSITIVE = _int_parser(1, 3600)

KEYS: dict[str, Key] = _keys(
    Key("inject", "pod", parse_switch, "namespace opts in; a pod can opt out"),
    Key("probes", _F.PROBES, parse_switch, "default probes"),
    Key("supervisor", _F.SUPERVISOR, parse_switch, "supervisor entrypoint wrapper"),
    Key("logs", _F.LOGS, parse_switch, "per-pod log directory"),
    Key("forensics", _F.FORENSICS, parse_switch, "preStop forensics hook"),
    Key("probe-port", _F.PROBES, parse_port, "port probed by tcpSocket/httpGet", optional=True),
    Key("readiness-path", _F.PROBES, parse_http_path, "httpGet path of the readiness probe", optional=True),
    Key("liveness-path", _F.PROBES, parse_http_path, "httpGet path of the liveness (and startup) probe", optional=True),
    Key("readiness-command", _F.PROBES, parse_command, "exec command of the readiness probe", optional=True),
    Key("liveness-command", _F.PROBES, parse_command, "exec command of the liveness (and startup) probe", optional=True),
    Key("startup-timeout", _F.PROBES, parse_duration, "bounds the startupProbe's start-up (none: no bound)", optional=True),
    Key("probe-period-seconds", _F.PROBES, _POSITIVE, "periodSeconds of readiness/liveness (`pmctl alive`: at least 60)"),
    Key("probe-timeout-seconds", _F.PROBES, _POSITIVE, "timeoutSeconds of every probe (`pmctl alive`/`ready`, startup included: at least 10)"),
    Key("probe-failure-threshold", _F.PROBES, _POSITIVE, "failureThreshold of readiness/liveness"),
    Key("readiness-initial-delay-seconds", _F.PROBES, _SECONDS, "initialDelaySeconds of readiness"),
    Key("liveness-initial-delay-seconds", _F.PROBES, _SECONDS, "initialDelaySeconds of liveness"),
    Key("startup-period-seconds", _F.PROBES, _POSITIVE, "periodSeconds of the startupProbe"),
    Key("entrypoint", _F.SUPERVISOR, parse_command, "the image ENTRYPOINT, for containers without command", optional=True),
    Key("autorestart", _F.SUPERVISOR, _choice_parser("false", "unexpected", "true"), "supervisord autorestart"),
    Key("startsecs", _F.SUPERVISOR, _SECONDS, "supervisord startsecs"),
    Key("startretries", _F.SUPERVISOR, _int_parser(0, 100), "supervisord startretries"),
    Key("exitcodes", _F.SUPERVISOR, parse_exitcodes, "supervisord exitcodes (expected exit codes)"),
    Key("stopsignal", _F.SUPERVISOR, _choice_parser(*STOP_SIGNALS),
        "supervisord stopsignal"),
    Key("stopwaitsecs", _F.SUPERVISOR, _SECONDS,
        "supervisord stopwaitsecs (unset: the pod's terminationGracePeriodSeconds)", optional=True),
    Key("on-fatal", _F.SUPERVISOR, _choice_parser("exit", "hold"), "after FATAL: exit, or hold the container"),
    Key("max-hold", _F.SUPERVISOR, _SECONDS, "longest hold after FATAL, seconds"),
    Key("restart-limit", _F.SUPERVISOR, _int_parser(0, 1000),
        "unexpected exits after RUNNING allowed within restart-window (more is FATAL; 0: no limit)"),
    Key("restart-window", _F.SUPERVISOR, _int_parser(1, 86400),
        "seconds of the restart-limit window; up that long resets the back-off"),
    Key("restart-backoff-max", _F.SUPERVISOR, _int_parser(0, 3600),
        "longest back-off before a restart after RUNNING, seconds (1 s doubling; 0: none)"),
    Key("memwatch-interval", _F.SUPERVISOR, _int_parser(1, 3600),
        "seconds between two looks at the memory cgroup's usage (only with a memory limit)"),
    Key("memwatch-threshold", _F.SUPERVISOR, _int_parser(0, 100),
        "percent of the memory limit that triggers the pre-mortem snapshot (0: no memory watch)"),
    Key("log-path", _F.LOGS, parse_mount_path, "in-container mount path of the log directory"),
    Key("forensics-budget-seconds", _F.FORENSICS, _int_parser(1, 300), "time budget of the collector"),
    # `podmedic quarantine` (docs/quarantine.md)
    Key("quarantine", "quarantine", parse_switch, "keep a long-NotReady pod and let its owner replace it"),
    Key("quarantine-after", "quarantine", parse_duration, "NotReady this long with containers running: quarantine"),
    Key("quarantine-expiry", "quarantine", parse_duration, "delete a quarantined pod after this (default: max-hold)",
        optional=True),
    Key("quarantine-max-per-owner", "quarantine", _int_parser(1, 100), "quarantined pods per workload at most"),
    Key("quarantine-max-per-namespace", "quarantine", _int_parser(1, 1000), "quarantined pods per namespace at most"),
    Key("quarantine-daemonset", "quarantine", parse_switch, "also quarantine DaemonSet pods (replaced on the same node)"),
    Key("quarantine-isolation", "quarantine", _choice_parser("required", "optional"),
        "required: skip when removing labels loses NetworkPolicy isolation"),
    # Read by the log janitor (webhook/janitor), not by the injector.
    Key("log-retention", _F.LOGS, parse_retention, "how long a dead pod's log directory is kept"),
    Key("quarantine-log-retention", _F.LOGS, parse_retention, "extra retention for a quarantined pod's directory"),
    Key("log-keep-until", _F.LOGS, parse_rfc3339, "pin: keep this pod's log directory until then", optional=True),
)

# Annotations under the prefix that are podmedic's own output, not settings.
OUTPUT_KEYS = frozenset({"status",
                         # written by `podmedic quarantine` on the pods it keeps (docs/quarantine.md)
                         "quarantined-at", "quarantine-owner", "quarantine-reason", "quarantine-expires",
                         "quarantine-saved", "quarantine-observed", "quarantine-released"})
