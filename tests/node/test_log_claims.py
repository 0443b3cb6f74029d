"""The pvc log backend on a real node: podmedic as deployed, reconfigured with `logs.backend: auto`
(rolled out like an admin's change), a namespace that enforces Pod Security restricted, a claim
the controller-manager binds to a statically provisioned volume whose root is mode 1777, and a
non-root app whose log line lands in its per-pod directory on that volume.

There is no CephFS or CSI driver here: the PersistentVolume is hostPath-typed (a directory under
the node's log root, so the reader pod of tests/node/conftest.py can read it back) where a
cluster would use `podmedic logs provision`'s ceph-csi one; the claim, the binding, the pod's
volume, subPathExpr, Pod Security admission and the kubelet's mounts are the real ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.node.conftest import BUSYBOX, PREFIX, Cluster, log_root, wait_for

pytestmark = pytest.mark.node
SYSTEM = "podmedic-system"
CLAIM = "podmedic-logs"
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
              "runAsUser": 1000, "runAsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
Obj = dict[str, Any]


def _config_volume(node: Cluster) -> tuple[int, str]:
    volumes = node.get("deployment", "podmedic", SYSTEM)["spec"]["template"]["spec"]["volumes"]
    (index,) = [i for i, v in enumerate(volumes) if "configMap" in v]
    return index, volumes[index]["configMap"]["name"]


def _roll_to(node: Cluster, index: int, config_map: str) -> None:
    node.kubectl("-n", SYSTEM, "patch", "deployment", "podmedic", "--type=json", "-p", json.dumps([
        {"op": "replace", "path": f"/spec/template/spec/volumes/{index}/configMap/name", "value": config_map}]))
    node.kubectl("-n", SYSTEM, "rollout", "status", "deployment/podmedic", "--timeout=180s", timeout=200)
    # A terminating old pod still serves the API server's kept-alive connections, and its audit
    # lines leave with it: later tests that read the audit need the old pods gone, not just down.
    replicas = node.get("deployment", "podmedic", SYSTEM)["spec"]["replicas"]
    wait_for("only the new webhook pods to be left", lambda: len(json.loads(node.kubectl(
        "-n", SYSTEM, "get", "pods", "-l", "app.kubernetes.io/component=webhook", "-o", "json",
    ).stdout)["items"]) == replicas, timeout=120)


@pytest.fixture(scope="module")
def auto_backend(deployed: Cluster) -> Iterator[Cluster]:
    """The deployed server with its own configuration plus `logs.backend: auto`; put back after."""
    node = deployed
    index, original = _config_volume(node)
    config = yaml.safe_load(node.get("configmap", original, SYSTEM)["data"]["config.yaml"])
    config["logs"]["backend"] = "auto"
    name = "podmedic-config-auto-e2e"
    node.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": SYSTEM},
                "data": {"config.yaml": yaml.safe_dump(config)}})
    _roll_to(node, index, name)
    try:
        yield node
    finally:
        _roll_to(node, index, original)
        node.kubectl("-n", SYSTEM, "delete", "configmap", name, "--wait=false", check=False)


def _one_shot(node: Cluster, namespace: str, name: str, script: str) -> None:
    """A root pod with the node's log root mounted (in a namespace without Pod Security), run to
    completion: what the admin does on the CephFS before `kubectl apply`."""
    node.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": [
                    {"name": "admin", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", script],
                     "volumeMounts": [{"name": "root", "mountPath": "/logs"}]}],
                    "volumes": [{"name": "root", "hostPath": {"path": log_root(), "type": "DirectoryOrCreate"}}]}})
    wait_for(f"pod {name} to succeed",
             lambda: node.get("pod", name, namespace).get("status", {}).get("phase") == "Succeeded", timeout=90)


def _claim(node: Cluster, namespace: str, subdir: str) -> None:
    """The namespace's root (mode 1777, as documented), a static PV on it and the claim, bound."""
    node.log_subdirs.append(subdir)
    _one_shot(node, node.namespace(), "mkroot", f"mkdir -p /logs/{subdir} && chmod 1777 /logs/{subdir}")
    pv = f"podmedic-logs-{namespace}"
    node.apply(
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"accessModes": ["ReadWriteMany"], "capacity": {"storage": "1Gi"}, "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem",
                  "claimRef": {"namespace": namespace, "name": CLAIM},
                  "hostPath": {"path": f"{log_root()}/{subdir}", "type": "Directory"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CLAIM, "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}},
                  "storageClassName": "", "volumeName": pv, "volumeMode": "Filesystem"}})
    wait_for("the claim to be Bound", lambda: node.get("pvc", CLAIM, namespace).get("status", {}).get("phase") == "Bound",
             timeout=60)


def _injected_with_claim(node: Cluster, namespace: str, pod: Obj) -> bool:
    out = node.kubectl("-n", namespace, "create", "--dry-run=server", "-f", "-", "-o", "json",
                       input=json.dumps(pod), check=False).stdout
    return bool(out) and any(v.get("persistentVolumeClaim") for v in json.loads(out)["spec"].get("volumes", []))


def test_a_non_root_pods_log_line_lands_on_the_claim_in_a_restricted_namespace(auto_backend: Cluster) -> None:
    node = auto_backend
    ns = node.namespace(inject="enabled", supervisor="enabled")
    node.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    subdir = "claim-e2e-" + uuid.uuid4().hex[:6]
    _claim(node, ns, subdir)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": ns},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
               {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "securityContext": RESTRICTED,
                "ports": [{"containerPort": 8080}],
                "command": ["sh", "-c", "echo claim-app-up >> /var/log/podmedic/app.log; exec httpd -f -p 8080 -h /"]}]}}
    wait_for("the webhook to see the Bound claim", lambda: _injected_with_claim(node, ns, pod), timeout=60)
    created = node.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(pod))
    assert "would violate PodSecurity" not in created.stderr, created.stderr
    node.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/web", "--timeout=120s")
    running = node.get("pod", "web", ns)
    volumes = {v["name"]: v for v in running["spec"]["volumes"]}
    assert volumes[CLAIM]["persistentVolumeClaim"] == {"claimName": CLAIM}
    assert PREFIX + "status" in running["metadata"]["annotations"]
    inits = {s["name"]: s for s in running["status"]["initContainerStatuses"]}
    assert inits["podmedic-logdir"]["state"]["terminated"]["exitCode"] == 0
    logdir_said = node.kubectl("-n", ns, "logs", "web", "-c", "podmedic-logdir").stdout
    assert "ready" in logdir_said and "cannot prepare" not in logdir_said, logdir_said  # the non-root step did it
    pod_dir = f"{ns}_web_{running['metadata']['uid']}"
    where = running["spec"]["nodeName"]
    assert wait_for("the app's log line on the claim",
                    lambda: node.node_file(where, f"{subdir}/{pod_dir}/app/app.log"), timeout=30) == "claim-app-up\n"
    assert node.node_ls(where, subdir) == [pod_dir]
