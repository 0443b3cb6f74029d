"""Kubernetes API faults with the real kube-apiserver: the webhook's namespace cache converges
within its stated bound, keeps answering from the cache while the API is down, and never
injects where the namespace did not opt in (fail closed, always with an audit reason).
410 Gone and delete-then-recreate are driven through tests/fakekube.py in test_namespaces.py
(this API server has no controller-manager: deleted namespaces stay Terminating)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from tests import kubeapi, pods
from tests.conftest import start_server, stop_server
from tests.pods import patch_of, review
from tests.test_integration import Cluster, running_cluster
from webhook.engine.decisions import Reason
from webhook.kube.client import kube_api_client
from webhook.kube.namespaces import ARRIVAL_WAIT_SECONDS, KubeSource
from webhook.kube.reflector import CONVERGENCE_BOUND_SECONDS

pytestmark = pytest.mark.integration
PREFIX = "podmedic.io/"


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own: it is stopped and started again."""
    with running_cluster(tmp_path / "kube") as cluster:
        yield cluster


def injected(server: Any, namespace: str) -> tuple[bool, dict[str, Any]]:
    body = review(pods.pod(), namespace=namespace)
    answer = server.post(body).json()
    return bool(patch_of(answer)), server.audit_for(body["request"]["uid"])


def wait_until(predicate: Any, bound: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < bound, f"not converged within {bound:.1f} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_cache_converges_survives_an_outage_and_fails_closed(own_cluster, certs_dir, tmp_path):
    cluster = own_cluster
    on = cluster.namespace({PREFIX + "inject": "enabled"})
    off = cluster.namespace({})
    server = start_server(tmp_path, certs_dir, "--kubeconfig", str(cluster.kubeconfig))
    try:
        assert injected(server, on)[0] and not injected(server, off)[0]
        never, line = injected(server, "never-created")
        assert not never and line["decisions"][0]["reason"] == "namespace-unknown"

        # annotation changes converge (a watch event: well within the bound)
        cluster.kubectl("annotate", "namespace", off, f"{PREFIX}inject=enabled")
        wait_until(lambda: injected(server, off)[0], CONVERGENCE_BOUND_SECONDS)
        cluster.kubectl("annotate", "--overwrite", "namespace", on, f"{PREFIX}inject=disabled")
        wait_until(lambda: not injected(server, on)[0], CONVERGENCE_BOUND_SECONDS)

        # API server down: reviews keep being answered from the cache, readiness stays true
        port = cluster.api.port
        kubeapi.stop(cluster.api, wipe=False)
        for _ in range(10):
            assert injected(server, off)[0] and not injected(server, on)[0]
        assert server.get("/readyz").status_code == 200
        unknown, line = injected(server, "created-during-outage")
        assert not unknown and line["decisions"][0]["reason"] == "namespace-unknown"

        # back on the same address: changes made from then on are seen within the bound
        cluster.api = kubeapi.start(cluster.state, port)
        cluster.kubectl("annotate", "--overwrite", "namespace", off, f"{PREFIX}inject=disabled")
        took = wait_until(lambda: not injected(server, off)[0], CONVERGENCE_BOUND_SECONDS + 3)
        late = cluster.namespace({PREFIX + "inject": "enabled"})
        wait_until(lambda: injected(server, late)[0], CONVERGENCE_BOUND_SECONDS)
        print(f"converged {took:.1f} s after the API server came back (bound {CONVERGENCE_BOUND_SECONDS} s)")
    finally:
        stop_server(server)


def test_a_namespace_the_watch_has_not_delivered_is_waited_for_once(own_cluster, certs_dir, tmp_path):
    """A review right after its namespace's create returned, before the namespace's watch event
    as a rule, finds it: the API server's NamespaceLifecycle guarantees a reviewed pod's namespace
    exists, so the cache is only behind. Through the server (whose reviews wait, within their
    deadline) and through the source: a name that never comes costs one bounded wait, then none,
    and a reader that passes no wait (the quarantine controller) never waits."""
    client = kube_api_client(str(own_cluster.kubeconfig))
    source = KubeSource(client)
    source.start()
    server = start_server(tmp_path, certs_dir, "--kubeconfig", str(own_cluster.kubeconfig))
    try:
        wait_until(source.ready, 10)
        for i in range(5):
            name = f"late-{i}"
            CoreV1Api(client).create_namespace({"metadata": {"name": name, "annotations": {PREFIX + "inject": "enabled"}}})
            found = source.get(name, wait=ARRIVAL_WAIT_SECONDS)
            assert found.namespace is not None and found.namespace.annotations[PREFIX + "inject"] == "enabled", found
            CoreV1Api(client).create_namespace({"metadata": {"name": f"{name}-served",
                                                             "annotations": {PREFIX + "inject": "enabled"}}})
            patched, line = injected(server, f"{name}-served")
            assert patched, line
        for wait, took in ((0.0, (0, 0.1)), (ARRIVAL_WAIT_SECONDS, (ARRIVAL_WAIT_SECONDS, ARRIVAL_WAIT_SECONDS + 2)),
                           (ARRIVAL_WAIT_SECONDS, (0, 0.1))):  # given up: no second wait
            started = time.monotonic()
            assert source.get("never-created", wait=wait).reason is Reason.NAMESPACE_UNKNOWN
            assert took[0] <= time.monotonic() - started < took[1], wait
    finally:
        stop_server(server)
        source.stop()


def apiserver_pid(api: kubeapi.KubeAPI) -> int:
    """The kube-apiserver process: the last one tests/kubeapi.py spawned, or ../shared's pid file."""
    return api.processes[-1].pid if api.processes else int((api.state / "kube-apiserver.pid").read_text())


def test_a_hung_api_server_is_noticed_and_the_cache_converges_once_it_answers(own_cluster):
    """kill -STOP: connections stay open and nothing answers (no FIN, no refusal), for longer than
    the client's read timeout; the cache keeps serving, stays ready, and last_sync (the staleness
    metric) stops moving; after -CONT a change made then is seen within the bound."""
    cluster = own_cluster
    name = cluster.namespace({PREFIX + "inject": "enabled"})
    timing = {"watch_timeout": 2, "connect_timeout": 1.0, "backoff_max": 1.0}  # read timeout 7 s
    source = KubeSource(kube_api_client(str(cluster.kubeconfig)), **timing)
    source.start()
    pid = apiserver_pid(cluster.api)
    try:
        wait_until(source.ready, 30)
        os.kill(pid, signal.SIGSTOP)
        hung = time.time()
        try:
            time.sleep(2 + 5 + 4)  # past the watch's end and its read timeout
            found = source.get(name).namespace
            assert found is not None and found.annotations[PREFIX + "inject"] == "enabled" and source.ready()
            last_sync = source.last_sync
            assert last_sync is not None and last_sync < hung + 1, "the view cannot have been current while hung"
        finally:
            os.kill(pid, signal.SIGCONT)
        cluster.kubectl("annotate", "--overwrite", "namespace", name, f"{PREFIX}inject=disabled")
        wait_until(lambda: source.get(name).namespace.annotations[PREFIX + "inject"] == "disabled",
                   source.convergence_bound + 15)  # + the backlog of a resumed API server on a slow box
        # last_sync is the stalest watch's: it moves once every watch has relisted
        wait_until(lambda: (source.last_sync or 0) > hung + 1, source.convergence_bound + 15)
        assert source.relists >= 1
    finally:
        source.stop()
