"""Kubernetes objects as the API server sends them (plain dicts), for the quarantine tests: a
Deployment with its ReplicaSet and pods, the other workload kinds, and the pre-flight's
objects. The unit tests feed them to the pure core; the integration tests create them."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webhook.quarantine.decide import Episode

PREFIX = "podmedic.io/"
NOW = 1_800_000_000.0  # the clock of the unit tests
Obj = dict[str, Any]


def iso(ts: float) -> str:
    from webhook.quarantine.decide import iso as _iso
    return _iso(ts)


def agreed(pods: list[Obj]) -> dict[str, Episode]:
    """What the controller observed (decide.observe) when its clock and the nodes' agree and it
    saw every NotReady pod at the moment it went NotReady: each episode first seen at its
    lastTransitionTime."""
    from webhook.quarantine.decide import Episode, parse_time, ready_condition

    out: dict[str, Episode] = {}
    for p in pods:
        condition = ready_condition(p)
        since = parse_time(condition.get("lastTransitionTime"))
        if condition.get("status") == "False" and since is not None:
            out[p["metadata"]["uid"]] = Episode(condition["lastTransitionTime"], since)
    return out


def deployment(name: str = "web", uid: str = "dep-1", labels: dict[str, str] | None = None) -> Obj:
    labels = labels or {"app": name}
    return {"kind": "Deployment", "metadata": {"name": name, "uid": uid},
            "spec": {"selector": {"matchLabels": dict(labels)}, "template": {"metadata": {"labels": dict(labels)}}}}


def replicaset(dep: Obj, template_hash: str = "5d8c9", uid: str | None = None) -> Obj:
    labels = {**dep["spec"]["selector"]["matchLabels"], "pod-template-hash": template_hash}
    return {"kind": "ReplicaSet", "metadata": {
        "name": f"{dep['metadata']['name']}-{template_hash}", "uid": uid or f"rs-{template_hash}",
        "ownerReferences": [{"kind": "Deployment", "name": dep["metadata"]["name"], "uid": dep["metadata"]["uid"],
                             "controller": True, "apiVersion": "apps/v1"}]},
        "spec": {"selector": {"matchLabels": labels}}}


def workload(kind: str, name: str, uid: str, labels: dict[str, str]) -> Obj:
    return {"kind": kind, "metadata": {"name": name, "uid": uid}, "spec": {"selector": {"matchLabels": dict(labels)}}}


def pod(name: str, owner: Obj | None = None, *, not_ready_for: float | None = 300, injected: bool = True,
        annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
        resources: dict[str, Any] | None = None, rv: str = "100") -> Obj:
    """A Running pod; NotReady for `not_ready_for` seconds before NOW (None: Ready)."""
    if labels is None:
        labels = dict(owner["spec"]["selector"]["matchLabels"]) if owner else {"app": name}
    meta: Obj = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": rv,
                 "labels": labels, "annotations": {**({PREFIX + "status": "{}"} if injected else {}), **(annotations or {})}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner["kind"], "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"], "controller": True}]
    ready = not_ready_for is None
    since = NOW - (not_ready_for or 1000)
    container: Obj = {"name": "app", "image": "app:1"}
    if resources:
        container["resources"] = resources
    return {"metadata": meta, "spec": {"containers": [container]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": iso(since),
                                       **({} if ready else {"message": "containers with unready status: [app]"})}],
                       "containerStatuses": [{"name": "app", "ready": ready, "started": True,
                                              "state": {"running": {"startedAt": iso(since - 10)}}}]}}


def with_(obj: Obj, **changes: Any) -> Obj:
    """A deep copy with dotted paths set, e.g. with_(p, **{"status.phase": "Pending"})."""
    out = copy.deepcopy(obj)
    for path, value in changes.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def pdb(name: str, labels: dict[str, str]) -> Obj:
    return {"metadata": {"name": name}, "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}}


def service(name: str, selector: dict[str, str]) -> Obj:
    return {"metadata": {"name": name}, "spec": {"selector": selector, "ports": [{"port": 80}]}}


def hpa(name: str, kind: str, target: str) -> Obj:
    return {"metadata": {"name": name}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
                                                 "minReplicas": 1, "maxReplicas": 3}}


def netpol(name: str, selector: Obj, types: list[str] | None = None) -> Obj:
    spec: Obj = {"podSelector": selector}
    if types is not None:
        spec["policyTypes"] = types
    return {"metadata": {"name": name}, "spec": spec}


def quota(name: str, hard: dict[str, str], used: dict[str, str]) -> Obj:
    return {"metadata": {"name": name}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}}


def claim(name: str, modes: list[str], bound_modes: list[str] | None = None) -> Obj:
    """A PersistentVolumeClaim asking for `modes`; `bound_modes`: its volume's, once bound."""
    out: Obj = {"metadata": {"name": name}, "spec": {"accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}}}
    out["status"] = {"phase": "Bound", "accessModes": bound_modes} if bound_modes else {"phase": "Pending"}
    return out
