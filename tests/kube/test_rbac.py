"""The server's RBAC (deploy/base/rbac.yaml) against the real kube-apiserver: as its
ServiceAccount, with a token for it, every request the namespace source makes succeeds (the
lists, the watches, the re-watches after the API server ends one: a 403 would only be a logged
warning while the view went stale), and the role grants nothing that is not used."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.test_integration import Cluster, running_cluster
from webhook.kube.client import kube_api_client
from webhook.kube.namespaces import KubeSource

pytestmark = pytest.mark.integration
RBAC = ROOT / "deploy" / "base" / "rbac.yaml"
SERVER_NS = "podmedic-system"
ACCOUNT = f"system:serviceaccount:{SERVER_NS}:podmedic"
CLAIM = "podmedic-logs"


@pytest.fixture(scope="module")
def server_rbac(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """An API server of this module's own holding deploy/base/rbac.yaml as it is."""
    with running_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        cluster.kubectl("create", "namespace", SERVER_NS)
        cluster.kubectl("apply", "-f", str(RBAC))
        yield cluster


def kubeconfig_as_server(cluster: Cluster, path: Path) -> Path:
    token = cluster.kubectl("-n", SERVER_NS, "create", "token", "podmedic", "--duration=10m").stdout.strip()
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "server",
        "clusters": [{"name": "it", "cluster": {"server": cluster.api.url, "certificate-authority": str(cluster.api.ca)}}],
        "users": [{"name": "podmedic", "user": {"token": token}}],
        "contexts": [{"name": "server", "context": {"cluster": "it", "user": "podmedic"}}]}))
    return path


def wait_for(condition: Callable[[], Any], bound: float, what: str) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < bound, f"not within {bound:.0f} s: {what}"
        time.sleep(0.1)


def test_every_request_the_server_makes_is_allowed(server_rbac: Cluster, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cluster = server_rbac
    caplog.set_level(logging.WARNING, logger="podmedic.namespaces")
    # a 2 s watch: the API server ends several during the test, each re-opened from its position
    source = KubeSource(kube_api_client(str(kubeconfig_as_server(cluster, tmp_path / "kc"))), claim=CLAIM,
                        watch_timeout=2)
    source.start()
    try:
        wait_for(source.ready, 30, "the first lists")
        name = cluster.namespace({"podmedic.io/inject": "enabled"})
        cluster.apply({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr", "namespace": name},
                       "spec": {"limits": [{"type": "Container", "max": {"memory": "1Gi"}}]}})
        cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CLAIM, "namespace": name},
                       "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
        wait_for(lambda: (ns := source.get(name).namespace) is not None and ns.limit_range and ns.log_claim == "Pending",
                 30, "the namespace, its LimitRange and its claim")
        time.sleep(5)  # at least two watches ended by the API server and re-opened
        assert [r.getMessage() for r in caplog.records] == []
    finally:
        source.stop()


@pytest.mark.parametrize("verb,resource,allowed", [
    ("list", "namespaces", True), ("watch", "namespaces", True),
    ("list", "limitranges", True), ("watch", "limitranges", True),
    ("list", "persistentvolumeclaims", True), ("watch", "persistentvolumeclaims", True),
    # never a single read: the server serves every lookup from its watches
    ("get", "namespaces", False), ("get", "persistentvolumeclaims", False), ("get", "limitranges", False),
    ("get", "pods", False), ("list", "secrets", False), ("patch", "namespaces", False),
])
def test_the_servers_role_grants_what_it_uses_and_nothing_else(server_rbac: Cluster, verb: str, resource: str,
                                                              allowed: bool) -> None:
    done = server_rbac.kubectl("auth", "can-i", verb, resource, "--all-namespaces", "--as", ACCOUNT, check=False)
    assert done.stdout.strip() == ("yes" if allowed else "no"), done.stderr

