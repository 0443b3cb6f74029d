"""An app container hardened the way most Helm charts ship it, on a real node: read-only root
filesystem, an arbitrary UID with no /etc/passwd entry (as OpenShift assigns), no capabilities,
no privilege escalation, RuntimeDefault seccomp. The wrapper, its state dir, the exit collector
and pmctl all run as that UID: anything of podmedic's that wrote to the image's filesystem,
needed a capability or a passwd entry would fail only in such a container, and quietly (the
wrapper's writes send their errors to /dev/null)."""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

LOGS = "/var/log/podmedic"  # log-path's default: where the pod's log directory is mounted
PORT = 8080
UID = 1000770000
HARDENED = {"readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": UID,
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
# Serves until the test leaves the marker; every start after that exits 3 at once.
SCRIPT = (f"[ -e {LOGS}/crash ] && exit 3; echo started as $(id -u) | tee -a {LOGS}/app.log; "
          f"exec httpd -f -p {PORT} -h /")


def test_a_hardened_app_gets_ready_then_is_held_after_crashes_with_its_exit_bundle(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    annotations = {"podmedic.io/startretries": "1", "podmedic.io/probe-period-seconds": "2"}
    deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "hardened", "namespace": ns, "annotations": annotations},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [
            {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", SCRIPT],
             "ports": [{"containerPort": PORT}], "securityContext": HARDENED}]}})
    node, log = deployed.wrapped_app_started(ns, "hardened")
    deployed.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/hardened", "--timeout=60s")
    assert deployed.node_file(node, log) == f"started as {UID}\n"  # the UID writes the log dir
    # Ready is the port's answer, which can come within the wrapper's startsecs (1 s): an app
    # killed before it is a failed start (BACKOFF, one retry left), not an exit after RUNNING
    pmctl = ("/podmedic/bin/busybox", "sh", "/podmedic/pmctl")
    wait_for("the wrapper's RUNNING", lambda: deployed.exec(ns, "hardened", "app", *pmctl, "ready", "app").returncode == 0,
             timeout=30)

    # kubectl exec as that UID: the marker, then the app's end (SIGTERM: an unexpected exit)
    done = deployed.exec(ns, "hardened", "app", "sh", "-c", f"touch {LOGS}/crash && kill $(pidof httpd)")
    assert done.returncode == 0, done.stderr
    status = wait_for("pmctl status to show FATAL", lambda: (
        out := deployed.exec(ns, "hardened", "app", *pmctl, "status")
    ).returncode == 0 and "FATAL" in out.stdout and out.stdout, timeout=60)
    assert "last exit 3" in status
    state = wait_for("the held container to be NotReady", lambda: next(
        (s for s in deployed.get("pod", "hardened", ns)["status"]["containerStatuses"] if s["ready"] is False), None),
        timeout=30)
    assert "running" in state["state"] and state["restartCount"] == 0, state  # held, not restarted

    bundle_root = log.rsplit("/", 1)[0] + "/forensics"
    bundles = deployed.node_ls(node, bundle_root)
    # the SIGTERM, then the two starts that exit 3 (a second bundle in one second gets a -2 suffix)
    kinds = sorted(b.split("-app-exit-")[1].split("-")[0] for b in bundles)
    assert kinds == ["3", "3", "SIGTERM"], bundles
    for bundle in bundles:
        for name in ("exit.txt", "summary.json", "supervisor.txt", "processes.txt"):
            assert deployed.node_file(node, f"{bundle_root}/{bundle}/{name}"), f"{bundle}/{name} is empty or missing"
        summary = json.loads(deployed.node_file(node, f"{bundle_root}/{bundle}/summary.json") or "{}")
        assert summary["failed"] == [], summary  # no part of the collector failed as that UID

    logs = deployed.kubectl("-n", ns, "logs", "hardened", "-c", "app").stdout
    assert "Permission denied" not in logs and "Read-only file system" not in logs, logs
