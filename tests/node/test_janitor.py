"""The log janitor on a real node: a Job made from the deployed CronJob's own template (its image,
its ServiceAccount and RBAC, its hostPath mount and security context), given a configuration that
turns deletion on with a one-second retention, deletes a deleted pod's directory from the node's
log root and keeps a live pod's."""

from __future__ import annotations

import copy
import json
import time
import uuid

import pytest
import yaml

from tests.node.conftest import BUSYBOX, ROOT, Cluster, wait_for

pytestmark = pytest.mark.node
JANITOR_NS = "podmedic-janitor"


def sleeper(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", "echo up >> /var/log/podmedic/app.log; exec sleep 3600"]}]}}


def janitor_job(node: Cluster, name: str) -> dict[str, object]:
    """The CronJob's jobTemplate as deployed, reading a test configuration: the shipped one with
    deletion on and minRetention 1s (the shipped bounds would make the test wait an hour)."""
    config = yaml.safe_load((ROOT / "deploy" / "base" / "config.yaml").read_text())
    config["logs"]["janitor"] = {"dryRun": False, "minRetention": "1s"}
    node.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": JANITOR_NS},
                "data": {"config.yaml": yaml.safe_dump(config)}})
    template = copy.deepcopy(node.get("cronjob", "podmedic-janitor", JANITOR_NS)["spec"]["jobTemplate"])
    (volume,) = [v for v in template["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    volume["configMap"]["name"] = name
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": JANITOR_NS},
            "spec": template["spec"]}


def test_a_job_from_the_cronjob_deletes_a_dead_pods_directory_and_keeps_a_live_ones(deployed: Cluster) -> None:
    node = deployed
    ns = node.namespace(**{"inject": "enabled", "log-retention": "1s"})
    for name in ("live", "dead"):
        node.apply({**sleeper(name), "metadata": {"name": name, "namespace": ns}})
    node.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/live", "pod/dead", "--timeout=120s")
    pods = {n: node.get("pod", n, ns) for n in ("live", "dead")}
    where = pods["live"]["spec"]["nodeName"]
    dirs = {n: f"{ns}_{n}_{p['metadata']['uid']}" for n, p in pods.items()}
    assert node.node_file(where, f"{dirs['dead']}/app/app.log") == "up\n"
    node.kubectl("-n", ns, "delete", "pod", "dead", "--wait=true", "--timeout=60s")
    time.sleep(2)  # past the namespace's 1 s retention
    name = "janitor-e2e-" + uuid.uuid4().hex[:6]
    node.apply(janitor_job(node, name))
    done = wait_for(f"job {name} to finish", lambda: {
        c["type"] for c in node.get("job", name, JANITOR_NS).get("status", {}).get("conditions") or []
        if c["status"] == "True"} & {"Complete", "Failed"}, timeout=180)
    logs = node.kubectl("-n", JANITOR_NS, "logs", f"job/{name}").stdout
    assert done == {"Complete"}, logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    verdicts = {line["directory"]: line["reason"] for line in lines if line["event"] == "janitor"}
    assert verdicts[dirs["live"]] == "pod-exists" and verdicts[dirs["dead"]] == "expired", logs
    listing = node.node_ls(where, "")
    assert dirs["live"] in listing and dirs["dead"] not in listing, listing
    assert node.node_file(where, f"{dirs['live']}/app/app.log") == "up\n"
    node.kubectl("-n", JANITOR_NS, "delete", f"job/{name}", f"configmap/{name}", "--wait=false", check=False)
