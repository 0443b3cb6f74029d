"""A pod whose containers limit their ephemeral storage, on a real node: podmedic's toolbox volume
(an emptyDir on the node's disk, ~3.4 MB installed) is counted by the kubelet in the pod's local
ephemeral storage, and the eviction manager evicts a pod whose usage exceeds the containers'
limits added up. An app limited to 3Mi that writes nothing ran without podmedic and was Evicted
("Pod ephemeral local storage usage exceeds the total limit of containers 3Mi") with the toolbox.
Below the toolbox volume's sizeLimit the toolbox features skip (ephemeral-storage-limit): the pod
runs, with its probes and log directory (hostPath, not counted)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

LIMIT = 3 * 2**20


def measured(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    """The pod's entry in the kubelet's stats summary once its volumes were measured (the
    eviction manager compares that entry's ephemeral-storage usedBytes with the pod's limit), or
    its status once it failed (evicted before that)."""
    pod = cluster.get("pod", name, ns)
    if pod["status"].get("phase") == "Failed":
        return {"failed": pod["status"]}
    node = pod["spec"].get("nodeName")
    if not node:
        return None
    summary = json.loads(cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary").stdout)
    for entry in summary["pods"]:
        ref = entry["podRef"]
        if (ref["namespace"], ref["name"]) == (ns, name) and entry.get("volume") and \
                (entry.get("ephemeral-storage") or {}).get("usedBytes") is not None:
            return entry
    return None


def test_a_pod_limited_below_the_toolbox_volume_is_not_evicted_for_it(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "small", "namespace": ns}, "spec": {
        "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/"], "ports": [{"containerPort": 8080}],
                        "resources": {"limits": {"ephemeral-storage": str(LIMIT)}}}]}})
    entry = wait_for("the kubelet to measure the pod's volumes", lambda: measured(deployed, ns, "small"),
                     timeout=180)
    assert "failed" not in entry, entry
    assert entry["ephemeral-storage"]["usedBytes"] <= LIMIT, entry  # what the eviction manager checks
    wait_for("the pod to be Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in deployed.get("pod", "small", ns)["status"].get("conditions", [])), timeout=60)
    got = deployed.get("pod", "small", ns)
    assert "readinessProbe" in got["spec"]["containers"][0]  # still injected: probes, log directory
    assert [v["name"] for v in got["spec"]["volumes"] if v["name"].startswith("podmedic-")] == ["podmedic-logs"]
