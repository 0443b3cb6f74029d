"""What Kubernetes decides by labels, computed the way the API server and controllers do:
label selectors (metav1.LabelSelector, and a Service's plain map); resource quantities are
webhook.engine.quantity's.
Pure: the pre-flight of `decide` asks these, never the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Labels = Mapping[str, str]


def selects(selector: Mapping[str, Any] | None, labels: Labels) -> bool:
    """A LabelSelector against labels (apimachinery's semantics): null selects nothing, `{}`
    selects everything, every matchLabels pair and every matchExpressions requirement must hold."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req["key"], req["operator"], req.get("values") or []
        present = key in labels
        if ((op == "In" and not (present and labels[key] in values))
                or (op == "NotIn" and present and labels[key] in values)
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present)):
            return False
    return True


def selected_keys(selector: Mapping[str, Any] | None) -> set[str]:
    """The label keys whose removal can take a pod out of this selector (matchLabels, In, Exists)."""
    if not selector:
        return set()
    keys = set((selector.get("matchLabels") or {}))
    keys |= {r["key"] for r in selector.get("matchExpressions") or [] if r.get("operator") in ("In", "Exists")}
    return keys


def map_selects(selector: Mapping[str, str] | None, labels: Labels) -> bool:
    """A Service's selector: a plain map; empty or absent selects no pods (endpoints are manual)."""
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())
