"""A slow starter under podmedic's default probes, on a real node. An app that opens its port
after ~45 s (a JVM, Elasticsearch, a database replaying its log) runs fine without probes; the
default liveness (tcpSocket, period 10, failureThreshold 3) once killed it at ~30 s, again and
again: CrashLoopBackOff for a pod that worked without podmedic."""

from __future__ import annotations

from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

PORT = 8080
SLOW = 45  # seconds before the app listens: longer than liveness's 3 failures x 10 s


def test_an_app_that_listens_after_45_s_becomes_ready_without_a_restart(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled")  # default probes, supervisor off (the defaults)
    deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow", "namespace": ns},
                    "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                        {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                         "ports": [{"containerPort": PORT}],
                         "command": ["sh", "-c", f"sleep {SLOW}; exec httpd -f -p {PORT} -h /"]}]}})

    def settled() -> dict[str, Any] | None:
        """The app's status once it is Ready or was restarted, whichever comes first."""
        statuses = deployed.get("pod", "slow", ns).get("status", {}).get("containerStatuses") or [{}]
        status: dict[str, Any] = statuses[0]
        return status if status.get("ready") or status.get("restartCount", 0) > 0 else None

    status = wait_for("the slow app to be Ready or restarted", settled, timeout=120, interval=1)
    spec = deployed.get("pod", "slow", ns)["spec"]["containers"][0]
    assert spec["livenessProbe"]["tcpSocket"] == {"port": PORT}  # podmedic's default liveness is there
    assert status["restartCount"] == 0, f"the slow app was restarted: {status}"
    assert status["ready"]
