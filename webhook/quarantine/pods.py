"""The controller's cache of every pod, kept by the shared list+watch loop (kube/reflector.py).

A relist replaces the dict in one assignment and events arrive in resourceVersion order, so a
pass's snapshot is always some consistent past state of the cluster, never a mix: a pod seen
quarantined implies every earlier change is seen too. A stale snapshot is harmless, because
every write is guarded by the pod's resourceVersion (patches.py).

Each pod is kept as `project(pod)`: only the fields the controller reads (decide.py, patches.py,
the controller and cluster.py), not the full object. A real pod is tens of KB of JSON, most of it
managedFields, env and volumes, and the cache holds every pod of the cluster.
"""

from __future__ import annotations

from typing import Any

from webhook.kube.reflector import Reflector

Obj = dict[str, Any]


_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences",
             "deletionTimestamp")
_CONTAINER = ("name", "resources", "restartPolicy", "ports")  # restartPolicy Always: a sidecar; ports: hostPort
_READY = ("type", "status", "lastTransitionTime", "reason", "message")


def _pick(obj: Obj | None, keys: tuple[str, ...]) -> Obj:
    return {k: (obj or {})[k] for k in keys if k in (obj or {})}


def project(pod: Obj) -> Obj:
    """The fields of a pod the controller reads: its identity, labels, annotations and owners;
    per container and init container its name, resources, restartPolicy and ports, and the
    overhead, and hostNetwork (max-hold is set per container name; the quota check counts what
    the replacement requests; a DaemonSet pod with a hostPort or hostNetwork is skipped);
    the volumes that name a PersistentVolumeClaim (a claim only one pod or node can use keeps
    the replacement from running); the Ready condition and each container's state."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    kept_spec: Obj = {key: [_pick(c, _CONTAINER) for c in spec[key]]
                      for key in ("containers", "initContainers") if spec.get(key)}
    kept_spec.update(_pick(spec, ("overhead", "hostNetwork")))
    if claims := [_pick(v, ("name", "persistentVolumeClaim")) for v in spec.get("volumes") or []
                  if v.get("persistentVolumeClaim")]:
        kept_spec["volumes"] = claims
    kept_status: Obj = _pick(status, ("phase",))
    kept_status["conditions"] = [_pick(c, _READY) for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    kept_status["containerStatuses"] = [_pick(c, ("name", "started", "state"))
                                        for c in status.get("containerStatuses") or []]
    return {"metadata": _pick(pod.get("metadata"), _METADATA), "spec": kept_spec, "status": kept_status}


class PodCache:
    """Pods by uid; `synced` once the first list is done."""

    def __init__(self, core: Any):
        self._pods: dict[str, Obj] = {}
        self._reflector = Reflector("pods", core.list_pod_for_all_namespaces, self)

    @property
    def synced(self) -> bool:
        return self._reflector.synced

    def snapshot(self) -> list[Obj]:
        return list(self._pods.values())

    def start(self) -> None:
        self._reflector.start()

    def stop(self) -> None:
        self._reflector.stop()

    # -- the reflector's handler

    def replace(self, items: list[Obj]) -> None:
        self._pods = {item["metadata"]["uid"]: project(item) for item in items}

    def apply(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            self._pods.pop(obj["metadata"]["uid"], None)
        else:
            self._pods[obj["metadata"]["uid"]] = project(obj)
