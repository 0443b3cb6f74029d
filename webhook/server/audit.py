"""The audit trail: one JSON line per review on stdout.

The record is built by webhook.admission from decisions and request metadata only; it never holds
env values, so no secret from a pod spec can reach it. Lines are written whole with one
write() so that lines from concurrent threads never interleave.

It is written on every review, so it is kept cheap (docs/benchmark.md): the line is encoded
once, to bytes, and written as bytes where the stream has a binary layer; the timestamp's
date and time of day are formatted once per second.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

import orjson

_lock = threading.Lock()
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def timestamp(now: float | None = None) -> str:
    """UTC, ISO 8601 with milliseconds, as datetime's isoformat(timespec="milliseconds") writes
    it ("2026-12-05T05:47:00.123+00:00"), without building a datetime for every line."""
    global _second
    now = time.time() if now is None else now
    whole = int(now)
    second, text = _second
    if second != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)  # one tuple: a thread reads an old or a new pair, never a mix
    return f"{text}.{int((now - whole) * 1000):03d}+00:00"


def emit(record: dict[str, Any], stream: TextIO | None = None) -> None:
    line = orjson.dumps({"time": timestamp(), "audit": "podmedic", **record}, default=str,
                        option=orjson.OPT_APPEND_NEWLINE)
    out = stream or sys.stdout
    binary = getattr(out, "buffer", None)
    with _lock:
        if binary is None:  # a text-only stream (io.StringIO)
            out.write(line.decode())
            out.flush()
        else:
            out.flush()  # whatever was printed before the line stays before it
            binary.write(line)
            binary.flush()
