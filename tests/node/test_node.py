"""What podmedic promises inside a pod, shown on a real node: podmedic deployed from deploy/,
real workloads in an opted-in and a not-opted-in namespace, and what the kubelet, the
containers and the node's disk then really show. The API server accepting a patch proves
nothing about this: every injected pod once failed its init container unnoticed."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, PREFIX, STATIC, Cluster, wait_for

pytestmark = pytest.mark.node

PORT = 8080
LOGS = "/var/log/podmedic"  # log-path's default: where the pod's log directory is mounted
GRACE = 30
Obj = dict[str, Any]


def app(image: str, command: list[str] | None = None, **extra: Any) -> Obj:
    """The container `app`: a port (the default probes' target), no probes of its own."""
    spec: Obj = {"name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": PORT}], **extra}
    return {**spec, "command": command} if command else spec


def serve(marker: str) -> list[str]:
    return ["sh", "-c", f"echo {marker} >> {LOGS}/app.log; exec httpd -f -p {PORT} -h /"]


def deployment(name: str, container: Obj, annotations: dict[str, str] | None = None, **pod: Any) -> Obj:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {"terminationGracePeriodSeconds": GRACE, "containers": [container], **pod}}}}


def bare(name: str, container: Obj, annotations: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations or {}},
            "spec": {"terminationGracePeriodSeconds": GRACE, "containers": [container]}}


AS_1000 = {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}
WORKLOADS = {
    "root": deployment("root", app(BUSYBOX, serve("root-app-up"))),
    "user": deployment("user", app(BUSYBOX, serve("user-app-up")), **AS_1000),
    # No shell, no libc: only podmedic.io/entrypoint says what the image runs.
    "static": deployment("static", app(STATIC), {PREFIX + "entrypoint": json.dumps(
        ["/app", "serve", str(PORT), f"{LOGS}/app.log"])}, **AS_1000),
    # Exits at once: after one retry the supervisor holds it; liveness every 2 s would kill a
    # held container within 6 s if the hold were not visible to it. No port: readiness is the
    # wrapper's own check (pmctl ready), whose failure says that it is a hold.
    "crash": bare("crash", app(BUSYBOX, ["sh", "-c", "echo crashing; exit 3"], ports=[]),
                  {PREFIX + "startretries": "1", PREFIX + "probe-period-seconds": "2"}),
    # The user's own exec preStop lists the forensics bundles: ours must already be there.
    "stop": bare("stop", app(BUSYBOX, serve("stop-app-up"), lifecycle={"preStop": {"exec": {"command": [
        "sh", "-c", f"ls {LOGS}/forensics > {LOGS}/user-prestop.txt"]}}})),
}


@dataclass
class Workloads:
    cluster: Cluster
    on: str   # opted in (supervisor on too)
    off: str  # not opted in

    def ready(self, name: str, namespace: str | None = None) -> Obj:
        ns = namespace or self.on

        def ready_pod() -> Obj | None:
            for pod in self.cluster.pods(ns, f"app={name}"):
                conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
                if conditions.get("Ready") == "True":
                    return pod
            return None

        return wait_for(f"pod {name} in {ns} to be Ready", ready_pod, timeout=90)

    def node_file(self, pod: Obj, path: str) -> str | None:
        return self.cluster.node_file(pod["spec"]["nodeName"], f"{pod_dir(pod)}/app/{path}")


def pod_dir(pod: Obj) -> str:
    """`<namespace>_<pod>_<uid>`: the kubelet's naming, resolved on the node by subPathExpr."""
    meta = pod["metadata"]
    return f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


def container_status(pod: Obj, name: str = "app") -> Obj:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)


@pytest.fixture(scope="module")
def workloads(deployed: Cluster) -> Workloads:
    """All workloads at once (their pods start in parallel); each test waits for its own."""
    on = deployed.namespace(inject="enabled", supervisor="enabled")
    off = deployed.namespace()
    for obj in WORKLOADS.values():
        deployed.kubectl("-n", on, "apply", "-f", "-", input=json.dumps(obj))
    deployed.kubectl("-n", off, "apply", "-f", "-", input=json.dumps(bare("plain", app(BUSYBOX, ["sleep", "3600"]))))
    return Workloads(deployed, on, off)


@pytest.mark.parametrize("name, marker", [("root", "root-app-up"), ("user", "user-app-up"),
                                          ("static", "app serving on 8080 as uid 1000")])
def test_init_containers_complete_the_app_runs_wrapped_and_the_injected_probe_makes_it_ready(
        workloads: Workloads, name: str, marker: str) -> None:
    pod = workloads.ready(name)
    inits = {s["name"]: s["state"].get("terminated", {}) for s in pod["status"]["initContainerStatuses"]}
    assert set(inits) == {"podmedic-logdir", "podmedic-toolbox"}
    assert all(t.get("exitCode") == 0 and t.get("reason") == "Completed" for t in inits.values()), inits
    status = container_status(pod)
    assert "running" in status["state"] and status["restartCount"] == 0
    (spec,) = pod["spec"]["containers"]
    assert spec["command"][0] == "/podmedic/bin/tini"  # the supervisor runs the app
    assert spec["readinessProbe"]["tcpSocket"] == {"port": PORT}  # injected: the pod wrote none
    log = wait_for(f"{name}'s log line on the node", lambda: workloads.node_file(pod, "app.log"), timeout=30)
    assert marker in log


def test_an_app_that_exits_at_once_is_held_not_ready_for_exec(workloads: Workloads) -> None:
    cluster, ns = workloads.cluster, workloads.on
    status = wait_for("pmctl status to show FATAL", lambda: (
        done := cluster.exec(ns, "crash", "app", "/podmedic/bin/busybox", "sh", "/podmedic/pmctl", "status")
    ).returncode == 0 and "FATAL" in done.stdout and done.stdout, timeout=90)
    assert "last exit 3" in status
    time.sleep(8)  # longer than liveness needs to kill it (2 s x 3) if the hold were invisible to it
    pod = cluster.get("pod", "crash", ns)
    state = container_status(pod)
    assert "running" in state["state"] and state["restartCount"] == 0, state
    assert state["ready"] is False
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "False"
    # the kubelet's Unhealthy event carries the wrapper's word: a hold, since when, the last exit
    assert pod["spec"]["containers"][0]["readinessProbe"]["exec"]["command"][-2:] == ["ready", "app"]
    unhealthy = wait_for("an Unhealthy event saying the container is held", lambda: [
        e["message"] for e in json.loads(cluster.kubectl("-n", ns, "get", "events", "-o", "json").stdout)["items"]
        if e["involvedObject"]["name"] == "crash" and e["reason"] == "Unhealthy"
        and "podmedic: held since" in e["message"]], timeout=60)
    assert any(m.startswith("Readiness probe failed: podmedic: held since ") and m.rstrip().endswith(
        "(FATAL, last exit 3)") for m in unhealthy), unhealthy
    # no preStop runs after a crash: the wrapper had the collector write a bundle of each exit
    bundles = cluster.node_ls(pod["spec"]["nodeName"], f"{pod_dir(pod)}/app/forensics")
    assert any(b.endswith("-app-exit-3") for b in bundles), bundles


def test_a_crashed_apps_exit_bundle_holds_no_secret_value(deployed: Cluster) -> None:
    """A Secret's value under names that do not look secret (DATABASE_URL, envFrom's DB_url), and
    expanded by the kubelet into the app's arguments: the exit bundle the wrapper has written on
    the node's log volume shows neither (engine/secret_env.py, docs/toolbox.md)."""
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    deployed.kubectl("-n", ns, "create", "secret", "generic", "db", "--from-literal=url=postgres://u:hunter2@db")
    env = [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]
    container = app(BUSYBOX, ["sh", "-c", "echo started; sleep 2; exit 3", "crash"], ports=[],
                    args=["--dsn", "$(DATABASE_URL)"], env=env, envFrom=[{"prefix": "DB_", "secretRef": {"name": "db"}}])
    deployed.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(bare("secret", container)))
    node, _ = deployed.wrapped_app_started(ns, "secret")
    pod = deployed.get("pod", "secret", ns)
    bundle = wait_for("an exit bundle", lambda: [b for b in deployed.node_ls(node, f"{pod_dir(pod)}/app/forensics")
                                                 if b.endswith("-app-exit-3")], timeout=60)[0]
    files = wait_for("the bundle's summary", lambda: "summary.json" in (
        found := deployed.node_ls(node, f"{pod_dir(pod)}/app/forensics/{bundle}")) and found, timeout=30)
    texts = {f: deployed.node_file(node, f"{pod_dir(pod)}/app/forensics/{bundle}/{f}") or "" for f in files}
    assert "--dsn <redacted>" in texts["processes.txt"], texts["processes.txt"]
    assert not [f for f, text in texts.items() if "hunter2" in text], texts


def test_deleting_a_pod_writes_the_forensics_bundle_then_runs_the_users_prestop(workloads: Workloads) -> None:
    cluster, ns = workloads.cluster, workloads.on
    pod = workloads.ready("stop")
    started = time.monotonic()
    cluster.kubectl("-n", ns, "delete", "pod", "stop", "--wait", f"--timeout={GRACE + 30}s")
    assert time.monotonic() - started < GRACE  # nothing waited for the grace period to run out
    (bundle,) = cluster.node_ls(pod["spec"]["nodeName"], f"{pod_dir(pod)}/app/forensics")
    assert bundle.endswith("-app")
    summary = json.loads(workloads.node_file(pod, f"forensics/{bundle}/summary.json") or "null")
    assert summary["container"] == "app" and "processes" in summary["ran"], summary
    assert workloads.node_file(pod, f"forensics/{bundle}/processes.txt")
    assert (workloads.node_file(pod, "user-prestop.txt") or "").split() == [bundle]


def test_a_pod_in_a_namespace_that_is_not_opted_in_is_created_exactly_as_written(workloads: Workloads) -> None:
    pod = workloads.ready("plain", workloads.off)
    assert "podmedic" not in json.dumps(pod)
    assert "initContainers" not in pod["spec"]
    (spec,) = pod["spec"]["containers"]
    assert spec["command"] == ["sleep", "3600"] and "readinessProbe" not in spec and "lifecycle" not in spec


def webhook_audit(cluster: Cluster) -> list[Obj]:
    out = cluster.kubectl("-n", "podmedic-system", "logs", "-l", "app.kubernetes.io/component=webhook",
                          "--tail=-1", "--max-log-requests=10").stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"audit":"podmedic"' in line]


def test_the_supervised_app_reads_the_line_sent_to_the_containers_stdin(deployed: Cluster) -> None:
    """`stdin: true` and `kubectl attach -i`: the line reaches the app under the wrapper (the
    wrapper once started it with /dev/null: it read EOF and the line was lost)."""
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    script = 'read -r line; echo "app read: [$line]"; exec sleep 3600'
    deployed.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(
        bare("reader", app(BUSYBOX, ["sh", "-c", script], ports=[], stdin=True, stdinOnce=True))))
    pod = Workloads(deployed, ns, ns).ready("reader")
    assert pod["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"
    attach = subprocess.Popen(["kubectl", "-n", ns, "attach", "-i", "reader", "-c", "app"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=deployed.env)
    try:
        assert attach.stdin is not None
        attach.stdin.write("hello from attach\n")
        attach.stdin.close()
        said = wait_for("the app to print what it read", lambda: [
            line for line in deployed.kubectl("-n", ns, "logs", "reader", "-c", "app").stdout.splitlines()
            if line.startswith("app read: ")], timeout=60)
    finally:
        attach.kill()
        attach.wait(timeout=10)
    assert said == ["app read: [hello from attach]"]


def test_with_the_webhook_scaled_to_zero_pods_are_still_created_and_nothing_is_audited(workloads: Workloads) -> None:
    """Last in this file: it takes the webhook away (and brings it back)."""
    cluster, ns = workloads.cluster, workloads.on
    assert any(a["namespace"] == ns and a["name"] == "crash" for a in webhook_audit(cluster))  # it audits when up
    cluster.kubectl("-n", "podmedic-system", "scale", "deployment/podmedic", "--replicas=0")
    wait_for("the webhook's pods to be gone, terminating ones too (they serve until they exit)",
             lambda: not cluster.kubectl("-n", "podmedic-system", "get", "pods", "-o", "name", "-l",
                                         "app.kubernetes.io/component=webhook").stdout.strip(), timeout=90)
    cluster.apply({**bare("unserved", app(BUSYBOX, ["sleep", "3600"])), "metadata": {
        "name": "unserved", "namespace": ns, "labels": {"app": "unserved"}}})
    pod = workloads.ready("unserved")  # failurePolicy Ignore: created and running, unmodified
    assert PREFIX + "status" not in pod["metadata"].get("annotations", {})
    assert "initContainers" not in pod["spec"]
    cluster.kubectl("-n", "podmedic-system", "scale", "deployment/podmedic", "--replicas=2")
    cluster.kubectl("-n", "podmedic-system", "rollout", "status", "deployment/podmedic", "--timeout=180s")
    assert not [a for a in webhook_audit(cluster) if a["namespace"] == ns and a["name"] == "unserved"]
