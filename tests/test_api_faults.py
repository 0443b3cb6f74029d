"""Kubernetes API faults with the real kube-apiserver: the webhook's namespace cache converges
within its stated bound, keeps answering from the cache while the API is down, and never
injects where the namespace did not opt in (fail closed, always with an audit reason).
410 Gone and delete-then-recreate are driven through tests/fakekube.py in test_namespaces.py
(this API server has no controller-manager: deleted namespaces stay Terminating)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pods
from tests.conftest import start_server, stop_server
from tests.pods import patch_of, review
from tests.test_integration import KUBE, Cluster, _missing
from webhook.namespaces import CONVERGENCE_BOUND_SECONDS

pytestmark = pytest.mark.integration
PREFIX = "podmedic.io/"


def start(state: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run([str(KUBE / "start"), str(state)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own: it is stopped and started again."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    state = tmp_path / "kube"
    start(state)
    yield Cluster(state)
    subprocess.run([str(KUBE / "stop"), str(state), "--wipe"], capture_output=True, timeout=60)


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
    server = start_server(tmp_path, certs_dir, "--kubeconfig", str(cluster.state / "kubeconfig"))
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
        port = _env(cluster.state)["APISERVER_URL"].rsplit(":", 1)[1]
        subprocess.run([str(KUBE / "stop"), str(cluster.state)], capture_output=True, timeout=60)
        for _ in range(10):
            assert injected(server, off)[0] and not injected(server, on)[0]
        assert server.get("/readyz").status_code == 200
        unknown, line = injected(server, "created-during-outage")
        assert not unknown and line["decisions"][0]["reason"] == "namespace-unknown"

        # back on the same address: changes made from then on are seen within the bound
        start(cluster.state, env={**os.environ, "APISERVER_PORT": port})
        cluster.kubectl("annotate", "--overwrite", "namespace", off, f"{PREFIX}inject=disabled")
        took = wait_until(lambda: not injected(server, off)[0], CONVERGENCE_BOUND_SECONDS + 3)
        late = cluster.namespace({PREFIX + "inject": "enabled"})
        wait_until(lambda: injected(server, late)[0], CONVERGENCE_BOUND_SECONDS)
        print(f"converged {took:.1f} s after the API server came back (bound {CONVERGENCE_BOUND_SECONDS} s)")
    finally:
        stop_server(server)


def _env(state: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line)
