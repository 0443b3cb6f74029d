"""The environment a wrapped app and its chained preStop get, on a real node: what the app gets
without podmedic. Since Kubernetes 1.30 a variable may be named `spring.datasource.url` (Spring
Boot's relaxed binding reads it) and an envFrom ConfigMap's dotted or dashed keys are passed
through; busybox sh drops them from what it starts, so a wrapped Spring app once ran with its
default datasource."""

from __future__ import annotations

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

LOGS = "/var/log/podmedic"  # log-path's default: where the pod's log directory is mounted
ENV = [{"name": "spring.datasource.url", "value": "jdbc:postgresql://db/app"}, {"name": "db-url", "value": "y"},
       {"name": "DB URL", "value": "a b"}, {"name": "OK_NAME", "value": "kept"}]


def pod(ns: str, name: str, command: list[str], **extra: object) -> dict[str, object]:
    container = {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": command,
                 "env": ENV, "envFrom": [{"configMapRef": {"name": "settings"}}], **extra}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 30, "containers": [container]}}


def printed_env(cluster: Cluster, ns: str) -> list[str]:
    """The `env` applet's output (a program, not a shell) without the wrapper's log lines and the
    logs feature's own PODMEDIC_POD_* variables, once the pod has run to its end."""
    wait_for("the pod to finish", lambda: cluster.get("pod", "printer", ns)["status"].get("phase") == "Succeeded",
             timeout=90)
    lines = cluster.kubectl("-n", ns, "logs", "printer").stdout.splitlines()
    return [line for line in lines if not line.startswith(("podmedic-supervise:", "PODMEDIC_"))]


def test_a_wrapped_app_and_its_prestop_get_the_environment_they_get_without_podmedic(deployed: Cluster) -> None:
    plain, wrapped = deployed.namespace(), deployed.namespace(inject="enabled", supervisor="enabled")
    for ns in (plain, wrapped):
        deployed.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
                        "data": {"app.mode": "blue", "feature-flag": "on"}}, pod(ns, "printer", ["env"]))
    assert deployed.get("pod", "printer", wrapped)["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"
    unwrapped = printed_env(deployed, plain)
    assert {"spring.datasource.url=jdbc:postgresql://db/app", "DB URL=a b", "app.mode=blue"} <= set(unwrapped)
    # the same entries; not in the same order: the kubelet builds a container's environment from a
    # Go map, in a different order for each container, with or without podmedic
    assert sorted(printed_env(deployed, wrapped)) == sorted(unwrapped)

    # the user's exec preStop, chained after the collector: cp reads its own block, no shell between
    deployed.apply(pod(wrapped, "stopper", ["sleep", "3600"], lifecycle={"preStop": {"exec": {"command": [
        "cp", "/proc/self/environ", f"{LOGS}/prestop.environ"]}}}))
    wait_for("the pod to run", lambda: deployed.get("pod", "stopper", wrapped)["status"].get("phase") == "Running",
             timeout=90)
    got = deployed.get("pod", "stopper", wrapped)
    assert len(got["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]) > 3  # chained
    deployed.kubectl("-n", wrapped, "delete", "pod", "stopper", "--wait=true", timeout=90)
    meta = got["metadata"]
    block = deployed.node_file(got["spec"]["nodeName"], f"{wrapped}_stopper_{meta['uid']}/app/prestop.environ")
    entries = (block or "").split("\0")[:-1]
    expected = {"spring.datasource.url=jdbc:postgresql://db/app", "db-url=y", "DB URL=a b", "app.mode=blue",
                "feature-flag=on"}
    assert expected <= set(entries), entries
    assert not any(e.startswith(("SHLVL=", "PWD=")) for e in entries), entries
