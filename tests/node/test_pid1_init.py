"""An init system as a container's command, on a real node: with podmedic it must run as without it.

Some inits refuse to run unless they are PID 1 (busybox init: "must be run as PID 1", systemd,
s6-overlay's /init, runit). Wrapped, the app is the wrapper's child, not PID 1: busybox init
exited at once, and the wrapper restarted it until FATAL, so the pod that ran fine without
podmedic never ran its init. The supervisor now leaves such a container unwrapped (decision
`pid1-required`, with a warning); the pod is still injected."""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

# container name -> (command, PID 1's command line: busybox init calls itself "init" where it is the program)
INITS = {"init": (["/sbin/init"], "init"), "applet": (["busybox", "init"], "busybox init")}


def _pod(namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inits", "namespace": namespace},
            "spec": {"containers": [
                {"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": command}
                for name, (command, _) in INITS.items()]}}


def _running(cluster: Cluster, namespace: str) -> dict | None:
    pod = cluster.get("pod", "inits", namespace)
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return pod if len(statuses) == len(INITS) and all("running" in s["state"] for s in statuses) else None


def _pid1(cluster: Cluster, namespace: str, container: str) -> str:
    """The command line of the container's PID 1, as it shows itself (busybox init renames
    itself "init"; the wrapper's PID 1 is /podmedic/bin/tini)."""
    done = cluster.exec(namespace, "inits", container, "cat", "/proc/1/cmdline")
    return done.stdout.replace("\0", " ").strip()


@pytest.mark.parametrize("inject", ["disabled", "enabled"])
def test_an_init_that_must_be_pid_1_runs_as_pid_1_with_and_without_podmedic(deployed: Cluster, inject: str) -> None:
    ns = deployed.namespace(inject=inject, supervisor="enabled")
    created = deployed.kubectl("apply", "-f", "-", input=json.dumps(_pod(ns)))
    pod = wait_for("both inits to run", lambda: _running(deployed, ns), timeout=90)
    for name, (_, pid1) in INITS.items():
        logs = deployed.kubectl("-n", ns, "logs", "inits", "-c", name, check=False).stdout
        assert _pid1(deployed, ns, name) == pid1, f"{name} is not PID 1; its logs:\n{logs[-2000:]}"
        assert "must be run as PID 1" not in logs
    if inject == "enabled":
        assert "podmedic.io/status" in pod["metadata"].get("annotations", {})  # the pod is injected
        for name in INITS:  # kubectl prints the warning: the supervisor is skipped, and why
            warned = [line for line in created.stderr.splitlines() if f"container {name}: supervisor: " in line]
            assert warned and "PID 1" in warned[0], created.stderr
    # and it stays up: an init that exits would restart the container (or be restarted by a wrapper)
    statuses = deployed.get("pod", "inits", ns)["status"]["containerStatuses"]
    assert [s["restartCount"] for s in statuses] == [0] * len(INITS)
