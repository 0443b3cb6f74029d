"""Every API call of the quarantine controller and its CLI, through the official client, with
raw JSON in and out (the pure core reads plain dicts, as the API server sends them).

Reads for a decision are made fresh, per namespace and pass, and only for namespaces that
have a candidate or a quarantined pod: a pre-flight must see the PDBs, Services and quotas as
they are now, not as a cache last saw them. Any failed read means no decision for that
namespace in this pass (an incomplete view would make owners look gone).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from webhook.quarantine.decide import NamespaceView, iso

if TYPE_CHECKING:
    import kubernetes

log = logging.getLogger("podmedic.quarantine")

Obj = dict[str, Any]  # raw JSON as the API server sends it

REQUEST_TIMEOUT = (2.0, 15.0)  # (connect, read) seconds of every single call
COMPONENT = "podmedic-quarantine"
API_VERSIONS = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
                "Job": "batch/v1", "Pod": "v1"}


def _raw(response: Any) -> Any:
    return json.loads(response.data)


class Cluster:
    def __init__(self, api_client: kubernetes.client.ApiClient):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    def _items(self, call: Any, namespace: str, kind: str | None = None, **params: Any) -> list[Obj]:
        items: list[Obj] = _raw(call(namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
                                     **params))["items"]
        if kind:
            for item in items:
                item["kind"] = kind  # list items carry no kind
        return items

    def view(self, namespace: str, annotations: Mapping[str, str], pods: Sequence[Mapping[str, Any]]) -> NamespaceView:
        """Everything a decision about this namespace's pods reads; raises on any failed read."""
        workloads = [w for call, kind in ((self.apps.list_namespaced_deployment, "Deployment"),
                                          (self.apps.list_namespaced_replica_set, "ReplicaSet"),
                                          (self.apps.list_namespaced_stateful_set, "StatefulSet"),
                                          (self.apps.list_namespaced_daemon_set, "DaemonSet"),
                                          (self.batch.list_namespaced_job, "Job"))
                     for w in self._items(call, namespace, kind)]
        return NamespaceView(
            namespace, annotations, pods, workloads,
            pdbs=self._items(self.policy.list_namespaced_pod_disruption_budget, namespace),
            hpas=self._items(self.autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace),
            services=self._items(self.core.list_namespaced_service, namespace),
            netpols=self._items(self.networking.list_namespaced_network_policy, namespace),
            quotas=self._items(self.core.list_namespaced_resource_quota, namespace),
            claims=self._items(self.core.list_namespaced_persistent_volume_claim, namespace),
            observed=self.readiness_failures(namespace),
        )

    def readiness_failures(self, namespace: str) -> dict[str, str]:
        """pod uid -> the message of the kubelet's latest readiness-probe Unhealthy event there
        (during a hold: `Readiness probe failed: podmedic: held since ...`)."""
        latest: dict[str, tuple[str, str]] = {}
        for event in self._items(self.core.list_namespaced_event, namespace, field_selector="reason=Unhealthy"):
            message = str(event.get("message") or "")
            uid = str((event.get("involvedObject") or {}).get("uid") or "")
            when = str(event.get("lastTimestamp") or event.get("eventTime") or "")
            if uid and message.startswith("Readiness probe failed") and when >= latest.get(uid, ("", ""))[0]:
                latest[uid] = (when, message)
        return {uid: message for uid, (_, message) in latest.items()}

    def get_pod(self, namespace: str, name: str) -> Obj:
        """For the `quarantine release|delete` CLI only, with the user's credentials: the
        controller decides from its pod cache, and its role grants no `get` on pods."""
        pod: Obj = _raw(self.core.read_namespaced_pod(name, namespace, _preload_content=False,
                                                      _request_timeout=REQUEST_TIMEOUT))
        return pod

    def quarantined_pods(self, label: str, namespace: str | None) -> list[Obj]:
        selector = f"{label}=true"
        if namespace:
            return self._items(self.core.list_namespaced_pod, namespace, label_selector=selector)
        pods: list[Obj] = _raw(self.core.list_pod_for_all_namespaces(
            label_selector=selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT))["items"]
        return pods

    def patch_pod(self, pod: Mapping[str, Any], ops: list[dict[str, Any]]) -> Obj:
        """A JSON Patch (the client sends a list as application/json-patch+json). 409 when the
        resourceVersion guard fails: the caller decides again on the fresh pod."""
        meta = pod["metadata"]
        patched: Obj = _raw(self.core.patch_namespaced_pod(meta["name"], meta["namespace"], ops, _preload_content=False,
                                                          _request_timeout=REQUEST_TIMEOUT))
        return patched

    def delete_pod(self, pod: Mapping[str, Any]) -> None:
        """Delete exactly this version of the pod (uid and resourceVersion preconditions)."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        meta = pod["metadata"]
        options = V1DeleteOptions(preconditions=V1Preconditions(uid=meta["uid"], resource_version=meta["resourceVersion"]))
        self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options, _request_timeout=REQUEST_TIMEOUT)

    def event(self, namespace: str, kind: str, name: str, uid: str, reason: str, message: str, warning: bool,
              now: float, identity: str) -> None:
        """A core/v1 Event on the pod or its workload (kubectl describe shows it)."""
        body: Any = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
                "involvedObject": {"apiVersion": API_VERSIONS.get(kind, "v1"), "kind": kind, "name": name,
                                   "namespace": namespace, "uid": uid},
                "reason": reason, "message": message[:1024], "type": "Warning" if warning else "Normal",
                "source": {"component": COMPONENT}, "reportingComponent": "podmedic.io/quarantine",
                "reportingInstance": identity[:128], "firstTimestamp": iso(now), "lastTimestamp": iso(now), "count": 1}
        try:
            self.core.create_namespaced_event(namespace, body, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # an event is a courtesy: never fail the action for it
            log.warning("cannot record event %s on %s %s/%s: %s", reason, kind, namespace, name, exc)
