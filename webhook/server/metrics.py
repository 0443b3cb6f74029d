"""Prometheus metrics, correct across gunicorn workers.

Each worker is a separate process, so the metrics use prometheus_client's multiprocess mode:
`podmedic serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before gunicorn forks,
every worker writes its own memory-mapped files there, and /metrics (served by any worker)
aggregates them all. Without that variable (in-process tests, the CLI) the default registry is used.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE_LATEST  # re-exported for the app

from webhook.engine.decisions import Report
from webhook.kube.namespaces import KubeSource

REVIEWS = Counter("podmedic_reviews_total", "AdmissionReviews answered, by outcome.", ["outcome"])
LATENCY = Histogram(
    "podmedic_review_duration_seconds", "Time to answer one AdmissionReview (decode to encode).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DECISIONS = Counter(
    "podmedic_decisions_total", "Per-container feature decisions: injections and skips, by reason.",
    ["feature", "reason"],
)
PLAN_MEMO = Counter(
    "podmedic_plan_memo_total", "Patched reviews whose plan came from the per-template memo (hit) or was made (miss).",
    ["result"],
)
CERT_EXPIRY = Gauge(
    "podmedic_certificate_expiry_timestamp_seconds", "notAfter of the serving certificate (Unix time).",
    multiprocess_mode="livemostrecent",
)


NAMESPACE_SYNC = Gauge(
    "podmedic_namespace_cache_last_sync_timestamp_seconds",
    "When the namespace watch cache was last known current (Unix time; cluster mode only).",
    multiprocess_mode="livemin",  # the stalest worker is the one to alert on
)


def follow_namespaces(source: object) -> None:
    """Keep NAMESPACE_SYNC at the source's last_sync, in this worker, as it moves. Set from
    /metrics only, a worker that never served /metrics kept its initial 0, and `livemin` over the
    workers read 0: a permanent, false "stale cache" alert."""
    if isinstance(source, KubeSource):  # only the API-backed source syncs
        source.on_sync = NAMESPACE_SYNC.set
        if source.last_sync is not None:  # its first lists may be done already
            NAMESPACE_SYNC.set(source.last_sync)


def observe(outcome: str, seconds: float, report: Report, cached: bool = False) -> None:
    """One answered review; `cached`: its plan came from the memo (only patched plans are kept)."""
    _child(REVIEWS, outcome).inc()
    LATENCY.observe(seconds)
    # One increment per series, not per decision: in multiprocess mode each is a locked write to
    # a memory-mapped file, and a 20-container pod makes about 80 decisions in 4 or 5 series.
    counts: dict[tuple[str, str], int] = {}
    for d in report.decisions:
        labels = (d.feature, d.reason.code)
        counts[labels] = counts.get(labels, 0) + 1
    for (feature, reason), n in counts.items():
        _child(DECISIONS, feature, reason).inc(n)
    if outcome == "patched":
        _child(PLAN_MEMO, "hit" if cached else "miss").inc()


_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """metric.labels(*labels), memoised: labels() validates and locks on every call, and a
    review counts up to a handful of series. Bounded: outcomes, features and reasons are
    fixed sets."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def exposition() -> bytes:
    """The text format, aggregated over all live workers when running under gunicorn."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
