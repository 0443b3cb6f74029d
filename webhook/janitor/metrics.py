"""The janitor's metrics, in the Prometheus text format: a CronJob's pod is gone before anyone
could scrape it, so each run writes its figures to a file (node-exporter's textfile collector
reads such files) and the summary audit line carries the same numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from webhook.janitor.run import Tally


def render(tally: Tally, seconds: float, finished_at: float) -> bytes:
    registry = CollectorRegistry()
    directories = Gauge("podmedic_janitor_directories", "Pod log directories in the last run, by outcome",
                        ["namespace", "outcome"], registry=registry)
    size = Gauge("podmedic_janitor_bytes", "Bytes of the dead pods' directories in the last run, by outcome",
                 ["namespace", "outcome"], registry=registry)
    errors = Gauge("podmedic_janitor_errors", "Errors in the last run, by kind", ["kind"], registry=registry)
    for (namespace, outcome), count in tally.directories.items():
        directories.labels(namespace, outcome).set(count)
        size.labels(namespace, outcome).set(tally.bytes[(namespace, outcome)])
    for kind, count in tally.errors.items():
        errors.labels(kind).set(count)
    Gauge("podmedic_janitor_run_seconds", "Duration of the last run", registry=registry).set(seconds)
    Gauge("podmedic_janitor_last_run_timestamp_seconds", "When the last run finished",
          registry=registry).set(finished_at)
    return generate_latest(registry)
