"""podgen's mix (tests/podgen.py) on a real node: each pod runs in a namespace podmedic injects and
in a plain one, and the app must not tell the difference. tests/test_kubeapi_generated.py shows
the API server accepts the patched pods; only a node shows that they also run the same: the same
phase, readiness, restarts and exit codes, and app processes with the same argv, executable,
cwd, uid/gids, umask, capabilities, no_new_privs, seccomp, signal dispositions, oom_score_adj,
rlimits and environment (apart from podmedic's documented PODMEDIC_* variables). podmedic's own
processes (tini, the wrapper: executables under /podmedic) are what it adds on purpose.
hostNetwork is left out: both pods would bind the same node port (checked by hand once)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, STATIC, Cluster, wait_for

pytestmark = pytest.mark.node

HARDENED = {"readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
ENV = [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"}, {"name": "C", "value": "$(MISSING)"},
       {"name": "D", "value": "$$(A)"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
       {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]
# Every process of the container older than this script, but podmedic's own: what the app is.
# Not one without a command line: gone, or a zombie on its way out, such as the child busybox
# httpd forks for each request (podmedic's httpGet probe makes some; a CI run listed one).
INSPECT = r"""me=$$
for d in /proc/[0-9]*; do [ "${d#/proc/}" -ge "$me" ] && continue
 cmd=$(tr '\0' ' ' < $d/cmdline 2>/dev/null); [ -n "$cmd" ] || continue
 exe=$(readlink $d/exe); case "$exe" in /podmedic/*) continue;; esac
 echo "== $cmd|exe $exe|cwd $(readlink $d/cwd)|oom $(cat $d/oom_score_adj)|$(md5sum < $d/limits)"
 grep -E '^(Uid|Gid|Groups|Umask|Cap...|NoNewPrivs|Seccomp|SigBlk|SigIgn|SigCgt):' $d/status
 tr '\0' '\n' < $d/environ | grep -v '^PODMEDIC_' | sort
done"""


def c(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": command, **extra}


def httpd(port: int, **extra: Any) -> dict[str, Any]:
    return c("app", ["httpd", "-f", "-p", str(port), "-h", "/"], ports=[{"containerPort": port}], **extra)


def sleeper(name: str = "app", **extra: Any) -> dict[str, Any]:
    return c(name, ["sleep", "3600"], **extra)


def run_once(script: str, policy: str) -> dict[str, Any]:
    """A run-to-completion pod; /w survives the container's restarts (OnFailure)."""
    return {"restartPolicy": policy, "containers": [c("app", ["sh", "-c", script], volumeMounts=[
        {"name": "w", "mountPath": "/w"}])], "volumes": [{"name": "w", "emptyDir": {}}]}


VARIANTS: dict[str, dict[str, Any]] = {
    "multi": {"initContainers": [c("setup", ["sh", "-c", "echo init > /w/init"],
                                   volumeMounts=[{"name": "w", "mountPath": "/w"}]),
                                 sleeper("side", restartPolicy="Always")],
              "containers": [c("web", ["httpd", "-f", "-p", "8080", "-h", "/w"], workingDir="/w",
                               ports=[{"name": "http", "containerPort": 8080}],
                               volumeMounts=[{"name": "w", "mountPath": "/w"}]),
                             c("tcp", ["sh", "-c", "while :; do nc -l -p 9090 -e true; done"],
                               ports=[{"name": "metrics", "containerPort": 9090}])],
              "volumes": [{"name": "w", "emptyDir": {}}]},
    "hardened": {"containers": [httpd(8080, securityContext=HARDENED, workingDir="/home")]},
    "hardened-pod": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                         "fsGroup": 2000, "supplementalGroups": [3000],
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [sleeper(securityContext={"readOnlyRootFilesystem": True,
                                                             "capabilities": {"drop": ["ALL"]}})]},
    "user-probes": {"containers": [c(
        "app", ["sh", "-c", "while :; do nc -l -p 9090 -e true; done & exec httpd -f -p 8080 -h /"],
        ports=[{"name": "web", "containerPort": 8080}, {"name": "admin", "containerPort": 9090}],
        readinessProbe={"exec": {"command": ["sh", "-c", "test -d /proc/1"]}, "periodSeconds": 2},
        livenessProbe={"httpGet": {"path": "/", "port": "web"}},
        startupProbe={"tcpSocket": {"port": "admin"}, "periodSeconds": 1})]},
    "hooks": {"terminationGracePeriodSeconds": 10, "containers": [
        sleeper("a", lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo bye > /proc/1/fd/1"]}}}),
        sleeper("b", lifecycle={"preStop": {"sleep": {"seconds": 2}}})]},
    "env-refs": {"containers": [c("app", ["sh", "-c", "echo $(B) $(C) $$(A); exec sleep 3600", "$(A)"],
                                  args=["$(B)"], env=ENV, resources={"limits": {"memory": "64Mi"}})]},
    "sub-paths": {"containers": [c("app", ["sh", "-c", "echo $(POD) > /data/name; exec sleep 3600"], env=ENV[4:5],
                                   volumeMounts=[{"name": "w", "mountPath": "/data", "subPathExpr": "$(POD)"},
                                                 {"name": "w", "mountPath": "/cfg", "subPath": "cfg",
                                                  "readOnly": True}])],
                  "volumes": [{"name": "w", "emptyDir": {}}]},
    "shared-pid": {"shareProcessNamespace": True, "containers": [
        {"name": "app", "image": STATIC, "imagePullPolicy": "IfNotPresent", "command": ["/app", "serve", "8080"],
         "ports": [{"containerPort": 8080}]}, sleeper("look")]},
    "never-ok": run_once("sleep 2; exit 0", "Never"),
    "never-fail": run_once("sleep 2; exit 1", "Never"),
    "on-failure": run_once("sleep 1; [ -e /w/once ] && exit 0; touch /w/once; exit 1", "OnFailure"),
    "grace-0": {"terminationGracePeriodSeconds": 0, "containers": [sleeper()]},
    "requests": {"containers": [httpd(8080, resources={"requests": {"cpu": "100m", "memory": "32Mi"}})]},
    "tight": {"containers": [httpd(8080, resources={"limits": {"cpu": "100m", "memory": "24Mi"}})]},
    # 100m: the node (2 CPUs) still runs the earlier node tests' pods (their namespaces go at the
    # package's end); at 500m twice the plain pod was not Ready within 180 s in a full CI run
    "pod-resources": {"resources": {"limits": {"cpu": "100m", "memory": "128Mi"}},
                      "containers": [httpd(8080), sleeper("b")]},
}


def state(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    """What the app's owner sees of the pod; podmedic's own init containers left out."""
    status = cluster.get("pod", name, ns).get("status", {})

    def containers(key: str) -> list[tuple[Any, ...]]:
        return [(s["name"], s.get("ready"), s.get("restartCount"), sorted(s.get("state", {})),
                 (s["state"].get("terminated") or s.get("lastState", {}).get("terminated") or {}).get("exitCode"))
                for s in status.get(key) or [] if not s["name"].startswith("podmedic-")]

    return {"phase": status.get("phase"), "init": containers("initContainerStatuses"),
            "containers": containers("containerStatuses"),
            "ready": [c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"]}


def settled(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    got = state(cluster, ns, name)
    if VARIANTS[name].get("restartPolicy", "Always") == "Always":
        return got if got["ready"] == ["True"] else None
    return got if got["phase"] in ("Succeeded", "Failed") else None


def processes(cluster: Cluster, ns: str, name: str) -> dict[str, list[str]]:
    """Each shell container's app processes as INSPECT prints them, sorted: in a shared PID
    namespace the containers' processes start in another order with podmedic's init containers."""
    spec = cluster.get("pod", name, ns)["spec"]
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    shells = [c for c in spec["containers"] + sidecars if c["image"] == BUSYBOX]
    found = {}
    for container in shells:
        done = cluster.exec(ns, name, container["name"], "sh", "-c", INSPECT)
        assert done.returncode == 0, (name, container["name"], done.stderr)
        found[container["name"]] = sorted(done.stdout.split("== ")[1:])
        assert found[container["name"]], (name, container["name"], done.stdout)  # the app was seen
    return found


def test_podgen_like_pods_run_the_same_with_and_without_podmedic(deployed: Cluster) -> None:
    plain, injected = deployed.namespace(), deployed.namespace(inject="enabled", supervisor="enabled")
    deployed.apply(*({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}
                     for name, spec in VARIANTS.items() for ns in (plain, injected)))
    for name in VARIANTS:
        want = wait_for(f"{name} to settle without podmedic", lambda: settled(deployed, plain, name), timeout=180)
        assert wait_for(f"{name} to settle with podmedic", lambda: settled(deployed, injected, name),
                        timeout=180) == want, name
        if want["phase"] == "Running":
            assert processes(deployed, injected, name) == processes(deployed, plain, name), name
    spec = deployed.get("pod", "multi", injected)["spec"]
    assert spec["containers"][0]["command"][0] == "/podmedic/bin/tini"  # it did run wrapped

    got = deployed.get("pod", "never-fail", injected)
    bundles = f"{injected}_never-fail_{got['metadata']['uid']}/app/forensics"
    assert [b.split("-", 1)[1] for b in deployed.node_ls(got["spec"]["nodeName"], bundles)] == ["app-exit-1"]

    # deletion: the injected pods go within their grace periods (30 s at most here), as the plain ones
    for ns in (plain, injected):
        deployed.kubectl("-n", ns, "delete", "pods", "--all", "--wait=false")
    for ns in (plain, injected):
        wait_for(f"the pods of {ns} to go", lambda: not deployed.kubectl(
            "-n", ns, "get", "pods", "-o", "name").stdout.strip(), timeout=180)
