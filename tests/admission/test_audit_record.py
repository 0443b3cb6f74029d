"""The decisions in the audit line: their keys in order and plain-str values. The line is JSON
read by people and log pipelines, so the key order is part of its format; the goldens compare
the records as dicts, which ignores it."""

from __future__ import annotations

from webhook.admission.audit_record import audit_record
from webhook.engine.decisions import INJECTED, Decision, Reason, Report
from webhook.engine.keys import FeatureName, Level


def test_decision_keys_in_order_and_plain_strings() -> None:
    decisions = [Decision(FeatureName.PROBES, "app", INJECTED, "readiness:tcpSocket", Level.POD),
                 Decision(FeatureName.LOGS, "app", Reason.FEATURE_DISABLED),
                 Decision("pod", None, Reason.NAMESPACE_UNKNOWN, "ns-x", Level.NAMESPACE),
                 Decision("pod", None, Reason.NOT_A_POD_CREATE)]
    rendered = audit_record({"uid": "u"}, Report(decisions), 0, "unchanged")["decisions"]
    assert [list(d.items()) for d in rendered] == [
        [("feature", "probes"), ("applied", True), ("reason", "injected"), ("container", "app"),
         ("detail", "readiness:tcpSocket"), ("level", "pod")],
        [("feature", "logs"), ("applied", False), ("reason", "feature-disabled"), ("container", "app"), ("level", "global")],
        [("feature", "pod"), ("applied", False), ("reason", "namespace-unknown"), ("detail", "ns-x"), ("level", "namespace")],
        [("feature", "pod"), ("applied", False), ("reason", "not-a-pod-create"), ("level", "global")],
    ]
    # plain str, not the enums (a YAML dumper cannot represent an enum; `podmedic explain` dumps these)
    assert {type(value) for d in rendered for key, value in d.items() if key != "applied"} == {str}
    assert [list(d.as_dict().items()) for d in decisions] == [list(d.items()) for d in rendered]
