"""podmedic's init containers (`podmedic toolbox install`, `podmedic logdir`) are one Python
interpreter each, and memory is incompressible: under a limit below what they need the kernel
kills them at every start (OOMKilled, Init:CrashLoopBackOff) and the pod never starts, which is
worse than not injecting. A namespace's LimitRange `max` lowers that limit (webhook.engine.limitrange).
Measured on this node with the podmedic image: with every CLI module imported they were killed
under 26Mi and ran under 28-30Mi; importing only the invoked command's, killed under 12Mi, ran
under 14Mi. podmedic lowers no memory limit below limit_floors.MEMORY_LIMIT_FLOOR (32Mi): where the
LimitRange wants less, the features that need the init containers skip (limitrange-conflict)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
       "spec": {"terminationGracePeriodSeconds": 0, "containers": [
           {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/"], "ports": [{"containerPort": 8080}]}]}}


def killed(pod: dict[str, Any]) -> list[str]:
    """The init containers that were OOM-killed (the kubelet retries them with a growing back-off)."""
    return [s["name"] for s in pod["status"].get("initContainerStatuses", [])
            if "OOMKilled" in (s.get("lastState", {}).get("terminated", {}).get("reason"),
                               s.get("state", {}).get("terminated", {}).get("reason"))]


@pytest.mark.parametrize("max_memory, injected", [("24Mi", False), ("40Mi", True)])
def test_an_injected_pod_starts_under_a_limitrange_max_memory(deployed: Cluster, max_memory: str,
                                                              injected: bool) -> None:
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    deployed.apply({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "tenant", "namespace": ns},
                    "spec": {"limits": [{"type": "Container", "max": {"memory": max_memory}}]}})
    # Refused by LimitRanger (64Mi above max) until the webhook's namespace cache holds the LimitRange.
    wait_for("the pod to be admitted", lambda: deployed.kubectl(
        "-n", ns, "create", "-f", "-", input=json.dumps(POD), check=False).returncode == 0, timeout=60, interval=1)

    def ready() -> dict[str, Any] | None:
        pod = deployed.get("pod", "app", ns)
        assert not killed(pod), f"init containers OOMKilled under max memory {max_memory}"
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if conditions.get("Ready") == "True" else None

    pod = wait_for(f"the pod under max memory {max_memory} to be Ready", ready, timeout=90, interval=1)
    limits = [i["resources"]["limits"]["memory"] for i in pod["spec"].get("initContainers", [])]
    assert limits == ([max_memory] * len(limits) if injected else []) and bool(limits) == injected
