"""The decisions counter counts decisions, not series: observe() increments each (feature,
reason) series once per review by the number of its decisions (one locked write per series in
multiprocess mode, where a 20-container pod makes about 80 decisions)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from webhook.engine.decisions import Decision, Reason, Report
from webhook.engine.keys import FeatureName
from webhook.server import metrics


def decisions(feature: str, reason: str) -> float:
    return REGISTRY.get_sample_value("podmedic_decisions_total", {"feature": feature, "reason": reason}) or 0.0


def test_every_decision_counts_once():
    report = Report([Decision(FeatureName.PROBES, f"c{i}", Reason.INJECTED) for i in range(3)]
                    + [Decision(FeatureName.PROBES, "d", Reason.NO_PROBE_PORT),
                       Decision(FeatureName.LOGS, "c0", Reason.INJECTED)])
    before = {key: decisions(*key) for key in [("probes", "injected"), ("probes", "no-probe-port"), ("logs", "injected")]}
    metrics.observe("patched", 0.001, report)
    after = {key: decisions(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {("probes", "injected"): 3,
                                                                 ("probes", "no-probe-port"): 1,
                                                                 ("logs", "injected"): 1}
