"""Container restart rules (Kubernetes 1.35+, on by default in 1.36: ContainerRestartRules and
RestartAllContainersOnContainerExits), on a real node, with and without podmedic: the kubelet
acts on the container's exit code, so the wrapper must hand it every exit of the app, and a
pod restarted in place (RestartAllContainers: init containers again, on the same volumes) must
get podmedic's init containers through a second run and the app wrapped again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node


def rule(action: str, operator: str, *codes: int) -> dict[str, Any]:
    return {"action": action, "exitCodes": {"operator": operator, "values": list(codes)}}


def pod(name: str, ns: str, script: str, policy: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A pod whose app runs `script` with /work (an emptyDir) kept across its restarts, after an
    init container of its own that counts its runs in /work/inits."""
    mount = [{"name": "work", "mountPath": "/work"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
                     "volumes": [{"name": "work", "emptyDir": {}}],
                     "initContainers": [{"name": "count", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sh", "-c", "echo x >> /work/inits"], "volumeMounts": mount}],
                     "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                     "restartPolicy": policy, "restartPolicyRules": rules,
                                     "command": ["sh", "-c", script], "volumeMounts": mount}]}}


def app_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    statuses = cluster.get("pod", name, ns).get("status", {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


@pytest.mark.parametrize("policy,rules", [
    ("Never", [rule("Restart", "In", 42)]),
    ("OnFailure", [rule("Restart", "NotIn", 0, 1)]),  # 42 is neither: restarted; 0 ends it (OnFailure)
])
def test_an_exit_code_the_rules_restart_is_the_kubelets_as_without_podmedic(deployed: Cluster, policy, rules) -> None:
    """The app exits 42 once, then 0: restarted by the kubelet once, and the pod Succeeds."""
    script = "echo x >> /work/runs; [ $(wc -l < /work/runs) -gt 1 ] || exit 42"
    plain, wrapped = deployed.namespace(), deployed.namespace(inject="enabled", supervisor="enabled")
    for ns in (plain, wrapped):
        deployed.apply(pod("once", ns, script, policy, rules))
    def ended(ns: str) -> tuple[str, int] | None:
        phase = deployed.get("pod", "once", ns).get("status", {}).get("phase")
        return (phase, app_status(deployed, ns, "once")["restartCount"]) if phase in ("Succeeded", "Failed") else None

    for ns in (plain, wrapped):
        assert wait_for(f"the pod in {ns} to end", lambda: ended(ns), timeout=90) == ("Succeeded", 1), \
            (ns == wrapped, app_status(deployed, ns, "once"))
    assert deployed.get("pod", "once", wrapped)["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"


@pytest.mark.parametrize("policy", ["Never", "Always"])
def test_restart_all_containers_reruns_the_init_containers_and_the_wrapped_app(deployed: Cluster, policy) -> None:
    """The app exits 42 on the first run of the init containers: the kubelet restarts the whole
    pod in place, podmedic's init containers run again on the volumes they filled, and the app
    starts again, wrapped. A service's wrapper (restartPolicy Always) once restarted the app
    itself: the kubelet never saw the 42 and the pod was never restarted."""
    script = "echo x >> /work/runs; [ $(wc -l < /work/inits) -gt 1 ] || exit 42; exec sleep 3600"
    plain, wrapped = deployed.namespace(), deployed.namespace(inject="enabled", supervisor="enabled")
    for ns in (plain, wrapped):
        deployed.apply(pod("all", ns, script, policy, [rule("RestartAllContainers", "In", 42)]))

    def counts(ns: str) -> tuple[str, str] | None:
        """(init runs, app runs) once both ran again. An exec can reach the new app container
        before its app has run (the wrapper's own start; a loaded node): ('2', '1') is not yet."""
        done = deployed.exec(ns, "all", "app", "sh", "-c", "wc -l < /work/inits; wc -l < /work/runs")
        got = tuple(done.stdout.split())
        return (got[0], got[1]) if done.returncode == 0 and len(got) == 2 and "1" not in got else None

    for ns in (plain, wrapped):
        assert wait_for(f"the pod in {ns} to restart in place", lambda: counts(ns), timeout=90) == ("2", "2")
    cmdline = deployed.exec(wrapped, "all", "app", "cat", "/proc/1/cmdline").stdout
    assert cmdline.startswith("/podmedic/bin/tini\0"), cmdline  # the second run is wrapped too
