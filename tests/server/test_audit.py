"""The audit line's writer: the same line, whatever stream it goes to, and the same timestamp
format as datetime.isoformat(timespec="milliseconds") (docs/observability.md)."""

from __future__ import annotations

import datetime as dt
import io

import orjson
import pytest

from webhook.server import audit


@pytest.mark.parametrize("instant", [0.0, 1.5, 59.999, 1_764_913_620.0, 1_764_913_620.0005, 1_764_913_620.9991,
                                     4_102_444_799.25])
def test_timestamp_is_isoformat_with_milliseconds(instant: float) -> None:
    expected = dt.datetime.fromtimestamp(instant, dt.timezone.utc).isoformat(timespec="milliseconds")
    assert audit.timestamp(instant) == expected


def test_timestamp_follows_the_clock_across_seconds() -> None:
    """The cached date and time of day is replaced when the second changes, back or forth."""
    assert audit.timestamp(100.25) == "1970-01-01T00:01:40.250+00:00"
    assert audit.timestamp(101.5) == "1970-01-01T00:01:41.500+00:00"
    assert audit.timestamp(100.75) == "1970-01-01T00:01:40.750+00:00"


def _lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_emit_to_a_binary_backed_stream_keeps_order_and_fields() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    stream.write("printed before\n")  # still in the text layer's buffer
    audit.emit({"uid": "u1", "outcome": "patched", "when": dt.date(2026, 12, 5)}, stream)
    audit.emit({"uid": "u2", "outcome": "ignored"}, stream)
    first, *lines = raw.getvalue().decode().splitlines()
    assert first == "printed before"
    records = _lines("\n".join(lines))
    assert [r["uid"] for r in records] == ["u1", "u2"]
    assert records[0]["audit"] == "podmedic" and records[0]["when"] == "2026-12-05"
    assert dt.datetime.fromisoformat(str(records[0]["time"])).tzinfo == dt.timezone.utc
    assert raw.getvalue().endswith(b"\n")


def test_emit_to_a_text_only_stream() -> None:
    stream = io.StringIO()
    audit.emit({"uid": "u1", "outcome": "patched"}, stream)
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1
    assert _lines(stream.getvalue())[0]["uid"] == "u1"
