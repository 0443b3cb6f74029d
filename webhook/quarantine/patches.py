"""A decision -> explicit JSON Patch operations (never a diff), each guarded so that it applies
to exactly the pod the decision was made on:

- `test /metadata/uid`: never a pod of the same name created since;
- `replace /metadata/resourceVersion` with the version read: the API server treats it as a
  precondition and answers 409 Conflict if the pod changed meanwhile (the kubelet updated its
  status, another replica acted, a user relabelled it). The controller then decides again on the
  fresh pod, so a conflict never quarantines twice and never loses a label.
"""

from __future__ import annotations

import json
from typing import Any

from webhook.engine.patch import pointer
from webhook.quarantine.decide import SAFE_TO_EVICT, Decision, Marks, Obj, iso, saved_state
from webhook.quarantine.reasons import Action

Op = dict[str, Any]


def _guard(pod: Obj) -> list[Op]:
    meta = pod["metadata"]
    return [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
            {"op": "replace", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}]


def _put(ops: list[Op], pod: Obj, field: str, values: dict[str, str]) -> None:
    """Add (or overwrite: RFC 6902 `add` replaces a member) entries of metadata.labels or
    .annotations; the whole map when the pod has none (an add below a missing parent fails).
    A map that the patch empties first (every label removed) still exists: members are added."""
    if pod["metadata"].get(field) is None:
        if values:
            ops.append({"op": "add", "path": f"/metadata/{field}", "value": values})
        return
    ops.extend({"op": "add", "path": pointer(("metadata", field, k)), "value": v} for k, v in values.items())


def quarantine_ops(decision: Decision, marks: Marks, now: float) -> list[Op]:
    """QUARANTINE: remove the owner's selector labels, add the label and the annotations (the
    removed labels saved for `release`), safe-to-evict for the cluster autoscaler. MARK (a bare
    pod): the label and annotations only."""
    if decision.action not in (Action.QUARANTINE, Action.MARK):
        raise ValueError(f"not a quarantine: {decision.action}")
    pod = decision.pod
    annotations = pod["metadata"].get("annotations") or {}
    ops = _guard(pod)
    ops.extend({"op": "remove", "path": pointer(("metadata", "labels", k))} for k in decision.remove)
    _put(ops, pod, "labels", {marks.label: "true"})
    values = {marks.at: iso(now), marks.owner: str(decision.owner or "none"), marks.reason: decision.reason.value,
              marks.observed: decision.observed,
              marks.saved: json.dumps({"labels": dict(decision.remove), "safeToEvict": annotations.get(SAFE_TO_EVICT)},
                                      sort_keys=True)}
    if decision.action is Action.QUARANTINE and decision.expires is not None:
        values[marks.expires] = iso(decision.expires)
        values[SAFE_TO_EVICT] = "true"  # nothing depends on it any more: the autoscaler may drain its node
    _put(ops, pod, "annotations", values)
    return ops


def release_ops(pod: Obj, marks: Marks, now: float) -> list[Op]:
    """Put a quarantined pod back: its labels restored (its owner adopts it again and may scale
    the surplus pod down), the quarantine annotations removed, `quarantine-released` added so
    the controller leaves it alone. ValueError when the pod is not quarantined."""
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    if labels.get(marks.label) != "true":
        raise ValueError(f"pod {meta.get('namespace')}/{meta.get('name')} is not quarantined "
                         f"(no label {marks.label}=true)")
    saved = saved_state(pod, marks)
    annotations = meta.get("annotations") or {}
    ops = _guard(pod)
    ops.append({"op": "remove", "path": pointer(("metadata", "labels", marks.label))})
    ops.extend({"op": "add", "path": pointer(("metadata", "labels", k)), "value": v}
               for k, v in sorted(saved["labels"].items()))
    ops.extend({"op": "remove", "path": pointer(("metadata", "annotations", a))} for a in marks.written if a in annotations)
    before = saved.get("safeToEvict")
    if before is None and SAFE_TO_EVICT in annotations:
        ops.append({"op": "remove", "path": pointer(("metadata", "annotations", SAFE_TO_EVICT))})
    elif isinstance(before, str):
        ops.append({"op": "add", "path": pointer(("metadata", "annotations", SAFE_TO_EVICT)), "value": before})
    ops.append({"op": "add", "path": pointer(("metadata", "annotations", marks.released)), "value": iso(now)})
    return ops
