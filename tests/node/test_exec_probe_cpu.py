"""A wrapped container without a port is probed with `pmctl ready` (exec). An exec probe runs in
the container's cgroup: under a small CPU limit with a busy app, runc exec + busybox sh + sed +
head share the app's throttled quota. Measured at 50m (ExecSync of the probe, 5 runs): one busy
process 0.2-0.7 s, four 1.3-3.1 s (`true` alone: 0.5-1.5 s). With a 1 s timeout the probe timed
out and the pod went NotReady while its app ran fine; the same pod without podmedic (no probe)
stays Ready."""

from __future__ import annotations

import json
import time

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

# An app with a few busy workers (a thread pool, a JVM's GC) using the whole quota
SCRIPT = "for i in 1 2 3 4; do yes > /dev/null & done; echo started; exec sleep 86400"
WATCH = 120  # seconds: 12 readiness periods; three failures in a row make the pod NotReady


def busy(namespace: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy", "namespace": namespace},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", SCRIPT],
                 "resources": {"limits": {"cpu": "50m"}}}]}}


def ready(cluster: Cluster, namespace: str) -> bool:
    conditions = cluster.get("pod", "busy", namespace)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def timeouts(cluster: Cluster, namespace: str) -> list[str]:
    """The Unhealthy events whose probe timed out (not the failures before the app's RUNNING)."""
    events = json.loads(cluster.kubectl("-n", namespace, "get", "events", "--field-selector", "reason=Unhealthy",
                                        "-o", "json").stdout)["items"]
    return [f"{e['count']}x {e['message']}" for e in events if "timed out" in e["message"]]


def test_a_busy_portless_wrapped_container_under_a_small_cpu_limit_stays_ready(deployed: Cluster) -> None:
    """Before (timeoutSeconds 1): 12 timeouts in about 3.5 min, NotReady twice; the plain pod stayed Ready."""
    wrapped, plain = deployed.namespace(inject="enabled", supervisor="enabled"), deployed.namespace()
    deployed.apply(busy(wrapped), busy(plain))
    try:
        for ns in (wrapped, plain):
            wait_for(f"busy in {ns} to be Ready", lambda ns=ns: ready(deployed, ns), timeout=90)
        probe = deployed.get("pod", "busy", wrapped)["spec"]["containers"][0]["readinessProbe"]
        assert "ready" in probe["exec"]["command"], probe  # podmedic did give it `pmctl ready`
        not_ready: list[str] = []
        deadline = time.monotonic() + WATCH
        while time.monotonic() < deadline and not not_ready and not timeouts(deployed, wrapped):
            not_ready = [ns for ns in (wrapped, plain) if not ready(deployed, ns)]
            time.sleep(2)
        assert (not_ready, timeouts(deployed, wrapped)) == ([], []), f"timeoutSeconds {probe['timeoutSeconds']}"
    finally:  # four busy processes each: not left to slow the node tests after this one
        for ns in (wrapped, plain):
            deployed.kubectl("-n", ns, "delete", "pod", "busy", "--wait=false", check=False)
