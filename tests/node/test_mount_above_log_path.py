"""The app's own volume above the log path, on a real node. The runtime creates the log
directory's mount point inside that volume. In a read-only one (`readOnly: true`, an image
volume) it cannot, and the container fails at creation (RunContainerError, mkdir: read-only file
system): podmedic must skip the logs feature there and let the app run. The kubelet itself makes
the nested mount points of configMap, secret, downwardAPI and projected volumes, read-only as
they are -- at the volume's root, so not in a subPath of one, which skips too. There, as in a
writable volume, the log directory is injected, and the app's files stay as they were beside its
empty mount point. Only the deepest mount above counts: a read-only volume with a writable one
mounted below it, above the log path, gets its log directory."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, PREFIX, Cluster, wait_for

pytestmark = pytest.mark.node
LOGS = "podmedic-logs"


def _pod(ns: str, name: str, volume: dict[str, Any], mount_path: str = "/var/log", read_only: bool = False,
         annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
            "spec": {"terminationGracePeriodSeconds": 0, **spec, "containers": [
                {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "mine", "mountPath": mount_path, "readOnly": read_only}]}],
                "volumes": [{"name": "mine", **volume}]}}


def _running(node: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    got = node.get("pod", name, ns)
    (status,) = got.get("status", {}).get("containerStatuses") or [{}]
    waiting = status.get("state", {}).get("waiting", {})
    assert waiting.get("reason") not in ("CreateContainerError", "RunContainerError"), (name, waiting)
    return got if "running" in status.get("state", {}) else None


def _mounts(pod: dict[str, Any]) -> list[str]:
    return [m["name"] for m in pod["spec"]["containers"][0]["volumeMounts"]]


def test_log_dir_skipped_below_a_read_only_mount_and_injected_below_others(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled")
    deployed.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns},
                    "data": {"app.conf": "x=1\n"}})
    seed = {"name": "seed", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "echo mine > /var/log/app.txt"],
            "volumeMounts": [{"name": "mine", "mountPath": "/var/log"}]}
    by_sub_path = _pod(ns, "configmap-subpath", {"configMap": {"name": "cfg", "items": [
        {"key": "app.conf", "path": "d/app.conf"}]}})
    by_sub_path["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = "d"
    skipped = [_pod(ns, "read-only", {"emptyDir": {}}, "/app", True, {PREFIX + "log-path": "/app/logs"}),
               _pod(ns, "image", {"image": {"reference": BUSYBOX, "pullPolicy": "IfNotPresent"}}), by_sub_path]
    deepest = _pod(ns, "deepest-writable", {"emptyDir": {}}, "/data", True, {PREFIX + "log-path": "/data/logs/app"},
                   initContainers=[{**seed, "command": ["mkdir", "/data/logs"],
                                    "volumeMounts": [{"name": "mine", "mountPath": "/data"}]}])
    deepest["spec"]["containers"][0]["volumeMounts"].append({"name": "logs", "mountPath": "/data/logs"})
    deepest["spec"]["volumes"].append({"name": "logs", "emptyDir": {}})
    injected = [_pod(ns, "configmap", {"configMap": {"name": "cfg"}}, read_only=True),
                _pod(ns, "writable", {"emptyDir": {}}, initContainers=[seed]), deepest]
    applied = deployed.kubectl("apply", "-f", "-", input="\n---\n".join(map(json.dumps, skipped + injected)))

    for pod in skipped:
        name = pod["metadata"]["name"]
        got = wait_for(f"{name} to run", lambda: _running(deployed, ns, name), timeout=90)
        assert LOGS not in _mounts(got), name  # skipped: the app runs without its log directory
    assert applied.stderr.count("read-only mount") == 3, applied.stderr
    for pod in injected:
        name = pod["metadata"]["name"]
        got = wait_for(f"{name} to run", lambda: _running(deployed, ns, name), timeout=90)
        assert LOGS in _mounts(got), name
    done = deployed.exec(ns, "writable", "app", "sh", "-c",
                         "cat /var/log/app.txt; ls -A /var/log; grep -c ' /var/log/podmedic ' /proc/mounts")
    assert done.stdout.split() == ["mine", "app.txt", "podmedic", "1"], done.stdout + done.stderr
