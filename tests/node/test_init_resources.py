"""What podmedic's init containers (podmedic-logdir, podmedic-toolbox) carry follows the app's QoS
class and charge (webhook.engine.init_resources._qos_and_charge): none in a BestEffort pod, the
app's own small limits (with equal requests) in a small Guaranteed one, and where a LimitRange would
default them in a pod with pod-level resources, explicit values within the pod's budget. The API
server accepting such a pod says nothing about whether it starts: here each one runs on a real
node, wrapped, writing its log directory, in the QoS class its app alone gives it (the same pod
with inject disabled, beside it).

The cpu limit follows the app down to limit_floors.CPU_LIMIT_FLOOR (50m), not to the app's 10m (a
1 ms quota per 100 ms period, the least the kubelet enforces): there each init container, one
Python interpreter, ran on 1 % of a cpu and the app started about 50 s late.
test_the_time_to_start_an_app_at_the_least_cpu_limit measures what the floor costs."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, PREFIX, Cluster, wait_for

pytestmark = pytest.mark.node

PORT = 8080
LOGS = "/var/log/podmedic"  # log-path's default: where the pod's log directory is mounted
INITS = ["podmedic-logdir", "podmedic-toolbox"]
Obj = dict[str, Any]

SMALL = {"cpu": "10m", "memory": "32Mi"}
FLOORED = {"cpu": "50m", "memory": "32Mi"}  # the app's, the cpu limit raised to its floor
DEFAULTING = {"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"},
              "defaultRequest": {"cpu": "500m", "memory": "512Mi"}}
BUDGET = {"cpu": "200m", "memory": "128Mi"}
# name -> (the app's resources, the pod's spec.resources, the namespace's LimitRange,
#          status.qosClass, what the init containers carry)
CASES: dict[str, tuple[Obj, Obj | None, Obj | None, str, Obj]] = {
    "best-effort": ({}, None, None, "BestEffort", {}),
    "small-guaranteed": ({"requests": SMALL, "limits": SMALL}, None, None, "Guaranteed",
                         {"requests": FLOORED, "limits": FLOORED}),
    "pod-level": ({"requests": {"cpu": "50m", "memory": "8Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}},
                  {"requests": BUDGET, "limits": BUDGET}, DEFAULTING, "Guaranteed",
                  {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}),
}


def pod(name: str, resources: Obj, pod_resources: Obj | None = None, inject: bool = True) -> Obj:
    """A busybox httpd app that writes a line into its log directory first (what a wrapped app
    with its log directory mounted can do); inject disabled: the same pod as without podmedic."""
    annotations = {} if inject else {PREFIX + "inject": "disabled"}
    app = {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "resources": resources,
           "ports": [{"containerPort": PORT}],
           "command": ["sh", "-c", f"echo {name}-up >> {LOGS}/app.log; exec httpd -f -p {PORT} -h /"
                       if inject else f"exec httpd -f -p {PORT} -h /"]}
    spec: Obj = {"terminationGracePeriodSeconds": 0, "containers": [app]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
            "spec": {**spec, "resources": pod_resources} if pod_resources else spec}


def create(cluster: Cluster, namespace: str, obj: Obj) -> None:
    """Created once the webhook's namespace cache holds the namespace's LimitRange (until then
    the pod-level pod is refused: LimitRanger's defaults exceed its budget)."""
    wait_for(f"pod {obj['metadata']['name']} to be admitted", lambda: cluster.kubectl(
        "-n", namespace, "create", "-f", "-", input=json.dumps(obj), check=False).returncode == 0,
        timeout=60, interval=1)


def ready(cluster: Cluster, namespace: str, name: str, timeout: float = 120) -> Obj:
    def probe() -> Obj | None:
        got = cluster.get("pod", name, namespace)
        conditions = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
        return got if conditions.get("Ready") == "True" else None

    try:
        return wait_for(f"pod {name} in {namespace} to be Ready", probe, timeout=timeout, interval=1)
    except AssertionError as timed_out:
        described = cluster.kubectl("-n", namespace, "describe", "pod", name, check=False).stdout
        raise AssertionError(f"{timed_out}\n{described[-4000:]}") from None


@pytest.mark.parametrize("case", list(CASES))
def test_an_injected_pod_starts_wrapped_in_the_qos_class_of_its_app(deployed: Cluster, case: str) -> None:
    resources, pod_resources, limit_range, qos, init_resources = CASES[case]
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    if limit_range:
        deployed.apply({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "tenant", "namespace": ns},
                        "spec": {"limits": [limit_range]}})
    create(deployed, ns, pod("plain", resources, pod_resources, inject=False))
    create(deployed, ns, pod("app", resources, pod_resources))
    plain, injected = ready(deployed, ns, "plain"), ready(deployed, ns, "app")
    assert plain["status"]["qosClass"] == injected["status"]["qosClass"] == qos
    assert [(c["name"], c.get("resources", {})) for c in injected["spec"]["initContainers"]] == [
        (name, init_resources) for name in INITS]
    inits = {s["name"]: s["state"].get("terminated", {}) for s in injected["status"]["initContainerStatuses"]}
    assert all(t.get("exitCode") == 0 and t.get("reason") == "Completed" for t in inits.values()), inits
    (status,) = injected["status"]["containerStatuses"]
    assert "running" in status["state"] and status["restartCount"] == 0, status
    assert injected["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"  # the supervisor runs the app
    meta = injected["metadata"]
    log = wait_for("the app's log line on the node", lambda: deployed.node_file(
        injected["spec"]["nodeName"], f"{meta['namespace']}_{meta['name']}_{meta['uid']}/app/app.log"), timeout=30)
    assert "app-up" in log


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def started(cluster: Cluster, namespace: str, obj: Obj, timeout: float) -> tuple[float, Obj]:
    """Seconds from `kubectl create` to the app container running (measured here, polled every
    0.2 s), and the pod then."""
    name = obj["metadata"]["name"]
    begin = time.monotonic()
    cluster.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(obj))

    def running() -> Obj | None:
        got = cluster.get("pod", name, namespace)
        states = [s["state"] for s in got.get("status", {}).get("containerStatuses", [])]
        return got if states and "running" in states[0] else None

    got = wait_for(f"the app of {name} to start", running, timeout=timeout, interval=0.2)
    return time.monotonic() - begin, got


def test_the_time_to_start_an_app_at_the_least_cpu_limit(deployed: Cluster) -> None:
    """From creation to the app running, one pod at a time: apps limited to cpu 10m and 200m
    (memory 64Mi, Guaranteed), each injected and with inject disabled. The init containers get
    the cpu floor, 50m, under 10m (before the floor, the app's 10m: about 50 s later than without
    podmedic) and the configured 100m under 200m."""
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    rows = []
    for cpu in ("10m", "200m"):
        limits = {"cpu": cpu, "memory": "64Mi"}
        for inject in (False, True):
            name = f"cpu-{cpu}-{'injected' if inject else 'plain'}"
            seconds, got = started(deployed, ns, pod(name, {"limits": limits}, inject=inject), timeout=240)
            created = _at(got["metadata"]["creationTimestamp"])
            app_at = _at(got["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])
            inits = {s["name"]: s["state"]["terminated"] for s in got["status"].get("initContainerStatuses", [])}
            spans = {n: (_at(t["finishedAt"]) - _at(t["startedAt"])).total_seconds() for n, t in inits.items()}
            init_cpu = {c["resources"]["limits"]["cpu"] for c in got["spec"].get("initContainers", [])}
            rows.append((name, seconds, (app_at - created).total_seconds(), spans, init_cpu))
            assert got["status"]["qosClass"] == "Guaranteed"
            assert init_cpu == ({"50m" if cpu == "10m" else "100m"} if inject else set())
    print("\npod, seconds to app running (here; server timestamps), init containers' run time, their cpu limit")
    for name, seconds, server, spans, init_cpu in rows:
        print(f"{name:22} {seconds:6.1f} s ({server:.0f} s)  {spans}  {sorted(init_cpu)}")
