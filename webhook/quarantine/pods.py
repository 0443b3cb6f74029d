"""The controller's cache of every pod, kept by the shared list+watch loop (kube/reflector.py).

A relist replaces the dict in one assignment and events arrive in resourceVersion order, so a
pass's snapshot is always some consistent past state of the cluster, never a mix: a pod seen
quarantined implies every earlier change is seen too. A stale snapshot is harmless, because
every write is guarded by the pod's resourceVersion (patches.py).
"""

from __future__ import annotations

from typing import Any

from webhook.kube.reflector import Reflector

Obj = dict[str, Any]


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
        self._pods = {item["metadata"]["uid"]: item for item in items}

    def apply(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            self._pods.pop(obj["metadata"]["uid"], None)
        else:
            self._pods[obj["metadata"]["uid"]] = obj
