"""A wrapped app's graceful shutdown, on a real node: it gets the time the pod gives it. The pod's
terminationGracePeriodSeconds is the pod author's promise to the app (drain connections, commit
offsets, flush a database); the kubelet sends SIGTERM and kills only when it runs out. The
wrapper once killed the app 10 s after SIGTERM (supervisord's stopwaitsecs default), whatever
the grace period: an app that needs 15 s of a 40 s grace period never finished its shutdown."""

from __future__ import annotations

import pytest

from tests.node.conftest import BUSYBOX, Cluster

pytestmark = pytest.mark.node

LOGS = "/var/log/podmedic"  # log-path's default: where the pod's log directory is mounted
DRAIN = 15  # seconds the app takes to stop after SIGTERM


def test_an_app_that_drains_for_15_s_of_a_40_s_grace_period_finishes(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    script = (f"trap 'sleep {DRAIN}; echo drained >> {LOGS}/app.log; exit 0' TERM; "
              f"echo started | tee -a {LOGS}/app.log; while :; do sleep 1; done")
    deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "drainer", "namespace": ns},
                    "spec": {"terminationGracePeriodSeconds": 40, "containers": [
                        {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                         "command": ["sh", "-c", script]}]}})
    node, log = deployed.wrapped_app_started(ns, "drainer")
    deployed.kubectl("-n", ns, "delete", "pod", "drainer", "--wait=true", timeout=90)
    assert (deployed.node_file(node, log) or "").splitlines() == ["started", "drained"]
