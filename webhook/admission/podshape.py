"""Is the object shaped like a Pod the API server would send?

The API server decodes a Pod into its typed struct before calling webhooks, so a real review
never carries a list where a map belongs. Anything else reaching /mutate is malformed input: it
gets a 400 naming the first bad field, and the engine only ever sees pods of the right shape.
Only the fields podmedic reads are checked.

The webhook's decoder (decode.py) makes msgspec types of these tables and checks a review's pod
with them while decoding it, in C; problem() then runs only for a pod that failed that check (to
name the field) and for the offline CLI's manifests.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

# field -> expected JSON type of its value; "[map]" is a list of maps, "[str]" a list of strings.
CONTAINER = {"name": str, "command": "[str]", "args": "[str]", "ports": "[map]", "env": "[map]",
             "volumeMounts": "[map]", "lifecycle": dict, "readinessProbe": dict, "livenessProbe": dict,
             "startupProbe": dict, "restartPolicy": str, "securityContext": dict}
SPEC = {"containers": "[map]", "initContainers": "[map]", "ephemeralContainers": "[map]", "volumes": "[map]",
        "terminationGracePeriodSeconds": int, "securityContext": dict, "os": dict, "nodeSelector": dict,
        "affinity": dict}
METADATA = {"name": str, "generateName": str, "namespace": str, "annotations": dict, "labels": dict,
            "ownerReferences": "[map]"}


def _well_typed(value: Any, expected: Any) -> bool:
    if value is None:
        return True  # null is how an absent optional field may arrive
    if expected == "[map]":
        return isinstance(value, list) and all(map(isinstance, value, repeat(dict)))
    if expected == "[str]":
        return isinstance(value, list) and all(map(isinstance, value, repeat(str)))
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _bad_field(obj: dict[str, Any], fields: dict[str, Any]) -> str | None:
    """The first of `fields` (in their order) that `obj` has with the wrong type, or None.
    Most objects are fine: the fields it has are checked first, and only a failure looks for
    the first bad field in the table's order, so the answer is the same as an ordered scan's."""
    for key, value in obj.items():
        expected = fields.get(key)
        if expected is not None and not _well_typed(value, expected):
            break
    else:
        return None
    for key, expected in fields.items():
        if not _well_typed(obj.get(key), expected):
            return key
    return None


def problem(pod: Any) -> str | None:
    """The first field that is not shaped as in a Pod, or None."""
    if not isinstance(pod, dict):
        return "request.object must be an object"
    for where, value, fields in (("metadata", pod.get("metadata"), METADATA), ("spec", pod.get("spec"), SPEC)):
        if value is None:
            continue
        if not isinstance(value, dict):
            return f"request.object.{where} must be an object"
        bad = _bad_field(value, fields)
        if bad:
            return f"request.object.{where}.{bad} has the wrong type"
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if not all(isinstance(v, str) for v in annotations.values()):
        return "request.object.metadata.annotations values must be strings"
    spec = pod.get("spec") or {}
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for i, c in enumerate(spec.get(kind) or []):
            bad = _bad_field(c, CONTAINER)
            if bad:
                return f"request.object.spec.{kind}[{i}].{bad} has the wrong type"
    return None
