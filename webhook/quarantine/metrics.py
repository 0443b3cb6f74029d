"""The controller's Prometheus metrics: its decisions by the same reason codes as its Events
(reasons.py), whether this replica leads, and its passes. One process, the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DECISIONS = Counter("podmedic_quarantine_decisions_total",
                    "Quarantine decisions carried out (or, in dry-run, logged), by action and reason code; "
                    "a skip counts once per pod and reason.", ["action", "reason"])
FAILURES = Counter("podmedic_quarantine_failures_total",
                   "Actions not carried out: conflict (the pod changed; decided again next pass) or error.",
                   ["action", "kind"])
LEADER = Gauge("podmedic_quarantine_leader", "1 while this replica holds the Lease and acts, else 0.")
QUARANTINED = Gauge("podmedic_quarantine_pods", "Pods carrying the quarantined label, seen at the last pass.")
PASSES = Counter("podmedic_quarantine_passes_total", "Passes over the cluster while leading, by outcome.", ["outcome"])
