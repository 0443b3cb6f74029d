"""A container's own stop signal (`lifecycle.stopSignal`, Kubernetes ContainerStopSignals), on a
real node: the kubelet sends it to PID 1 -- tini, which hands it to the wrapper. The wrapper
once forwarded QUIT or USR1 as a plain signal, not a stop: an app that exits on it with a code
other than 0 (unexpected) was started again in the middle of its pod's shutdown, and ran until
the kubelet's SIGKILL at the end of the grace period. Without podmedic it stops once, at once."""

from __future__ import annotations

import time

import pytest

from tests.node.conftest import BUSYBOX, Cluster

pytestmark = pytest.mark.node

LOGS = "/var/log/podmedic"  # log-path's default: where the pod's log directory is mounted
GRACE = 30


@pytest.mark.parametrize("signal, authored", [("QUIT", None), ("USR1", None), ("USR1", "INT")],
                         ids=["QUIT", "USR1", "USR1-authored-INT"])
def test_an_app_stopped_by_its_own_stop_signal_is_not_started_again(deployed: Cluster, signal: str,
                                                                    authored: str | None) -> None:
    """With the pod author's stopsignal annotation (INT), the app gets INT when the kubelet sends
    the container's own signal: the wrapper forwarded that signal, and an app that exits on it was
    started again during the shutdown."""
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    script = "".join(f"trap 'echo {sig.lower()} >> {LOGS}/app.log; exit 3' {sig}; " for sig in {signal, authored or signal})
    script += f"echo started | tee -a {LOGS}/app.log; while :; do sleep 1 & wait; done"
    annotations = {"podmedic.io/stopsignal": authored} if authored else {}
    deployed.apply({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "stopper", "namespace": ns, "annotations": annotations},
                    "spec": {"os": {"name": "linux"}, "terminationGracePeriodSeconds": GRACE, "containers": [
                        {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                         "command": ["sh", "-c", script], "lifecycle": {"stopSignal": "SIG" + signal}}]}})
    pod = deployed.get("pod", "stopper", ns)
    if "stopSignal" not in pod["spec"]["containers"][0].get("lifecycle", {}):
        pytest.skip("the API server dropped lifecycle.stopSignal: its ContainerStopSignals feature gate is off")

    node, log = deployed.wrapped_app_started(ns, "stopper")
    began = time.monotonic()
    deployed.kubectl("-n", ns, "delete", "pod", "stopper", "--wait=true", timeout=90)
    took = time.monotonic() - began
    assert (deployed.node_file(node, log) or "").splitlines() == ["started", (authored or signal).lower()]
    assert took < GRACE / 2, f"the pod took {took:.0f}s to stop: the kubelet's SIGKILL, not the app's exit"
