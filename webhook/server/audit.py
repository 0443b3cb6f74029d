"""The audit trail: one JSON line per review on stdout.

The record is built by webhook.admission from decisions and request metadata only; it never holds
env values, so no secret from a pod spec can reach it. Lines are written whole with one
write() so that lines from concurrent threads never interleave.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from typing import Any, TextIO

import orjson

_lock = threading.Lock()


def emit(record: dict[str, Any], stream: TextIO | None = None) -> None:
    line = orjson.dumps({"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                         "audit": "podmedic", **record}, default=str).decode()
    out = stream or sys.stdout
    with _lock:
        out.write(line + "\n")
        out.flush()
