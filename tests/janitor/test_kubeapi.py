"""The janitor against the real kube-apiserver, with the RBAC deploy/ gives it: its paged LIST of
pods (created through the API server) keeps every live pod's directory and deletes a dead one's;
a LIST it may not make deletes nothing; and the role grants nothing more than it uses."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import podmedic
from tests.janitor.hostile import pod_dir
from tests.test_deploy import JANITOR_NS, find, one, rendered  # noqa: F401  (session fixture)
from tests.test_integration import Cluster, cluster  # noqa: F401  (session fixture: the real API server)
from webhook.janitor import tree

pytestmark = pytest.mark.integration
PREFIX = "podmedic.io/"
ACCOUNT = f"system:serviceaccount:{JANITOR_NS}:podmedic-janitor"


@pytest.fixture(scope="module")
def janitor_rbac(cluster: Cluster, rendered: dict[str, list[dict[str, Any]]]) -> Cluster:  # noqa: F811
    """The rendered janitor Namespace, ServiceAccount, ClusterRole and binding, applied for real."""
    objs = rendered["self-managed"]
    mine = [one(objs, "Namespace", JANITOR_NS), one(objs, "ServiceAccount", "podmedic-janitor"),
            one(objs, "ClusterRole", "podmedic-janitor"), one(objs, "ClusterRoleBinding", "podmedic-janitor")]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": mine}))
    return cluster


def kubeconfig_as(kube: Cluster, account: str, path: Path) -> Path:
    """A kubeconfig holding a fresh token of `account` (a ServiceAccount in the janitor's namespace)."""
    token = kube.kubectl("-n", JANITOR_NS, "create", "token", account, "--duration=10m").stdout.strip()
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "janitor",
        "clusters": [{"name": "it", "cluster": {"server": kube.api.url, "certificate-authority": str(kube.api.ca)}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "janitor", "context": {"cluster": "it", "user": account}}]}))
    return path


def config(root: Path, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"logs: {{hostRoot: {root}, janitor: {{dryRun: false, minRetention: 1s}}}}\n")
    return path


def run_janitor(config_path: Path, kubeconfig: Path) -> tuple[int, list[dict[str, Any]]]:
    done = podmedic("logs", "janitor", "--config", str(config_path), "--kubeconfig", str(kubeconfig),
                    "--page-size", "1")
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_the_janitors_paged_list_keeps_live_pods_and_deletes_a_dead_ones_directory(janitor_rbac, tmp_path):
    kube = janitor_rbac
    ns = kube.namespace({PREFIX + "log-retention": "1s"})
    root = tmp_path / "logs"
    root.mkdir()
    live = []
    for i in range(3):  # page size 1: at least three pages, from one snapshot
        pinned = {PREFIX + "log-keep-until": "2030-01-01T00:00:00Z"} if i == 0 else {}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{i}", "annotations": pinned},
               "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}
        done = kube.create_pod(ns, pod)
        assert done.returncode == 0, done.stderr
        live.append(pod_dir(root, f"{ns}_web-{i}_{json.loads(done.stdout)['metadata']['uid']}").name)
    dead = pod_dir(root, f"{ns}_web-9_{uuid.uuid4()}").name
    time.sleep(1.2)  # past the namespace's 1 s retention
    code, lines = run_janitor(config(root, tmp_path), kubeconfig_as(kube, "podmedic-janitor", tmp_path / "kc"))
    assert code == 0, lines
    assert sorted(os.listdir(root)) == sorted(live)
    assert {(line["directory"], line["outcome"]) for line in lines if line["event"] == "janitor-deletion"} == {
        (dead, "deleted")}
    r = tree.open_root(str(root))
    try:  # the pin of the live pod, recorded for after its death
        assert tree.read_record(r, live[0]).keep_until == 1893456000.0  # type: ignore[union-attr]
    finally:
        r.close()


def test_a_list_the_janitor_may_not_make_deletes_nothing(janitor_rbac, tmp_path):
    kube = janitor_rbac
    kube.kubectl("-n", JANITOR_NS, "create", "serviceaccount", "no-rbac", check=False)
    root = tmp_path / "logs"
    root.mkdir()
    dead = pod_dir(root, f"nowhere_web-1_{uuid.uuid4()}")
    time.sleep(1.2)
    code, lines = run_janitor(config(root, tmp_path), kubeconfig_as(kube, "no-rbac", tmp_path / "kc"))
    assert code == 1
    (failed,) = [line for line in lines if line["event"] == "janitor-list-failed"]
    assert "403" in failed["error"]
    assert dead.is_dir() and (dead / "app" / "app.0.log").exists()


@pytest.mark.parametrize("verb,resource,allowed", [
    ("list", "pods", True), ("list", "namespaces", True), ("get", "namespaces", False),
    ("get", "pods", False), ("watch", "pods", False), ("delete", "pods", False), ("create", "pods/exec", False),
    ("list", "secrets", False), ("get", "configmaps", False), ("list", "nodes", False),
])
def test_the_janitors_role_grants_what_it_uses_and_nothing_else(janitor_rbac, verb, resource, allowed):
    done = janitor_rbac.kubectl("auth", "can-i", verb, resource, "--all-namespaces", "--as", ACCOUNT, check=False)
    assert done.stdout.strip() == ("yes" if allowed else "no"), done.stderr


def test_a_run_whose_metrics_cannot_be_written_fails_and_says_so_keeping_its_sweep(janitor_rbac, tmp_path):
    """The metrics file is the CronJob's only observer: a run that swept but could not write it
    exited 0 with `"errors": {}` (one stderr line), the Job succeeded and Prometheus kept stale
    figures. It fails now, under its own error kind; what it deleted stays deleted."""
    kube = janitor_rbac
    ns = kube.namespace({PREFIX + "log-retention": "1s"})
    root = tmp_path / "logs"
    root.mkdir()
    dead = pod_dir(root, f"{ns}_web-1_{uuid.uuid4()}")
    metrics = tmp_path / "m.prom"
    metrics.mkdir()  # not a file: the rename over it fails, as an unwritable or full filesystem would
    time.sleep(1.2)
    done = podmedic("logs", "janitor", "--config", str(config(root, tmp_path)), "--metrics-file", str(metrics),
                    "--kubeconfig", str(kubeconfig_as(kube, "podmedic-janitor", tmp_path / "kc")))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1]["event"] == "janitor-summary" and lines[-1]["errors"] == {"metrics-failed": 1}
    assert lines[-1]["directories"] == {"deleted": 1} and not dead.exists()
    assert done.stderr.startswith(f"podmedic logs janitor: cannot write metrics to {metrics}: ")
