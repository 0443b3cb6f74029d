"""What Kubernetes decides by labels, computed the way the API server and controllers do:
label selectors (metav1.LabelSelector, and a Service's plain map) and resource quantities.
Pure: the pre-flight of `decide` asks these, never the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
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


_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")
_SUFFIX = {None: Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
           "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
           "P": Fraction(10**15), "E": Fraction(10**18), "Ki": Fraction(2**10), "Mi": Fraction(2**20),
           "Gi": Fraction(2**30), "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60)}


def quantity(raw: str | int | float) -> Fraction:
    """A resource.Quantity ("100m", "1Gi", "1e3", "2") as an exact number; ValueError otherwise."""
    match = _QUANTITY.match(str(raw).strip())
    if not match:
        raise ValueError(f"not a quantity: {raw!r}")
    number = Fraction(match.group(1))
    if match.group(3):
        return number * Fraction(10) ** int(match.group(3)[1:])
    return number * _SUFFIX[match.group(4)]
