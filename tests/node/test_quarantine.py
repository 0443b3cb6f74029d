"""`podmedic quarantine` on a real node, deployed from deploy/ with everything else (`make
deploy`): a Deployment whose app crashes at once is held by the supervisor, NotReady; the
controller, running in-cluster with its shipped ServiceAccount, quarantines the pod, the real
ReplicaSet controller releases it and creates a replacement, and the quarantined container keeps
running for `kubectl exec`. Then `release` gives a pod back to its owner and the expiry deletes
another. Timings are shortened with annotations (quarantine-after 5 s; the controller's pass
interval is the shipped 10 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.node.conftest import BUSYBOX, PREFIX, Cluster, wait_for

pytestmark = pytest.mark.node

Obj = dict[str, Any]
QUARANTINED = PREFIX + "quarantined"


def crashing(name: str, expiry: str) -> Obj:
    """One replica whose app exits at once: after one retry the supervisor holds it, NotReady."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": {
                    PREFIX + "startretries": "1", PREFIX + "probe-period-seconds": "2",
                    PREFIX + "quarantine-expiry": expiry}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
                    "name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "echo crashing; exit 3"], "ports": [{"containerPort": 8080}]}]}}}}


@pytest.fixture(scope="module")
def controller(deployed: Cluster) -> Cluster:
    deployed.kubectl("-n", "podmedic-system", "rollout", "status", "deployment/podmedic-quarantine", "--timeout=180s")
    return deployed


def pods(cluster: Cluster, ns: str, selector: str) -> list[Obj]:
    return cluster.pods(ns, selector)


def events(cluster: Cluster, ns: str, name: str, reason: str) -> list[Obj]:
    out = cluster.kubectl("-n", ns, "get", "events", "-o", "json").stdout
    return [e for e in json.loads(out)["items"] if e["involvedObject"]["name"] == name and e["reason"] == reason]


def quarantined_of(cluster: Cluster, ns: str, workload: str) -> Obj | None:
    for pod in pods(cluster, ns, f"{QUARANTINED}=true"):
        if pod["metadata"]["annotations"].get(PREFIX + "quarantine-owner", "").startswith(f"Deployment/{workload}/"):
            return pod
    return None


def test_a_held_pod_is_kept_replaced_released_and_expired(controller: Cluster) -> None:
    cluster = controller
    ns = cluster.namespace(inject="enabled", supervisor="enabled", quarantine="enabled", **{"quarantine-after": "5s"})
    for obj in (crashing("expiring", "60s"), crashing("kept", "1h")):
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(obj))
    kept = wait_for("kept's pod quarantined", lambda: quarantined_of(cluster, ns, "kept"), timeout=150)
    expiring = wait_for("expiring's pod quarantined", lambda: quarantined_of(cluster, ns, "expiring"), timeout=60)
    name = kept["metadata"]["name"]
    annotations = kept["metadata"]["annotations"]
    saved = json.loads(annotations[PREFIX + "quarantine-saved"])["labels"]
    assert set(saved) == {"app", "pod-template-hash"} and saved["app"] == "kept"
    assert kept["metadata"]["labels"] == {QUARANTINED: "true"}
    assert annotations[PREFIX + "quarantine-reason"] in ("held", "not-ready")
    observed = annotations[PREFIX + "quarantine-observed"]
    assert observed and (annotations[PREFIX + "quarantine-reason"] == "held") == ("podmedic: held since" in observed)
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"

    # the ReplicaSet controller released it and created a replacement; the kept pod runs on
    wait_for("the ReplicaSet to release the pod", lambda: not cluster.get("pod", name, ns)["metadata"].get(
        "ownerReferences"), timeout=30)
    replacement = wait_for("a replacement owned by the ReplicaSet", lambda: next(
        (p for p in pods(cluster, ns, "app=kept") if p["metadata"].get("ownerReferences")), None), timeout=60)
    assert replacement["metadata"]["name"] != name
    pod = cluster.get("pod", name, ns)
    (status,) = pod["status"]["containerStatuses"]
    assert "running" in status["state"] and status["restartCount"] == 0 and pod["status"]["phase"] == "Running"
    done = cluster.exec(ns, name, "app", "/podmedic/bin/busybox", "true")
    assert done.returncode == 0, done.stderr  # the scene is there for kubectl exec
    assert events(cluster, ns, name, "Quarantined") and events(cluster, ns, "kept", "Quarantined")

    # the replacement crashes too: it is not quarantined (same template), and the event says so
    replacement_name = replacement["metadata"]["name"]
    (skip,) = wait_for("QuarantineSkipped on the replacement",
                       lambda: events(cluster, ns, replacement_name, "QuarantineSkipped"), timeout=120)
    assert skip["message"].startswith("same-template:")
    assert not cluster.get("pod", replacement_name, ns)["metadata"]["labels"].get(QUARANTINED)

    # release: the labels come back and the ReplicaSet adopts the pod again
    done = subprocess.run([sys.executable, "-m", "webhook.cli", "quarantine", "release", name, "-n", ns],
                          cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    released = cluster.get("pod", name, ns)["metadata"]
    assert released["labels"] == saved
    assert PREFIX + "quarantine-released" in released["annotations"]
    assert events(cluster, ns, name, "Released")
    wait_for("the ReplicaSet back at one pod (it scales the surplus down)",
             lambda: len(pods(cluster, ns, "app=kept")) == 1, timeout=90)

    # expiry: the other workload's quarantined pod is deleted after its 60 s
    gone = expiring["metadata"]["name"]
    wait_for("the expired pod deleted", lambda: cluster.kubectl("-n", ns, "get", "pod", gone, check=False).returncode != 0,
             timeout=150)
    (expired,) = events(cluster, ns, gone, "Expired")
    assert expired["message"].startswith("expired:")
