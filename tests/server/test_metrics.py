"""The decisions counter counts decisions, not series: observe() increments each (feature,
reason) series once per review by the number of its decisions (one locked write per series in
multiprocess mode, where a 20-container pod makes about 80 decisions)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import REGISTRY

from tests.conftest import start_server, stop_server
from tests.fakekube import FakeKube

from webhook.engine.decisions import Decision, Reason, Report
from webhook.engine.keys import FeatureName
from webhook.server import metrics


def decisions(feature: str, reason: str) -> float:
    return REGISTRY.get_sample_value("podmedic_decisions_total", {"feature": feature, "reason": reason}) or 0.0


def test_every_decision_counts_once():
    report = Report([Decision(FeatureName.PROBES, f"c{i}", Reason.INJECTED) for i in range(3)]
                    + [Decision(FeatureName.PROBES, "d", Reason.NO_PROBE_PORT),
                       Decision(FeatureName.LOGS, "c0", Reason.INJECTED)])
    before = {key: decisions(*key) for key in [("probes", "injected"), ("probes", "no-probe-port"), ("logs", "injected")]}
    metrics.observe("patched", 0.001, report)
    after = {key: decisions(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {("probes", "injected"): 3,
                                                                 ("probes", "no-probe-port"): 1,
                                                                 ("logs", "injected"): 1}


def test_namespace_sync_gauge_is_current_in_every_worker(tmp_path: Path, certs_dir: Path) -> None:
    """The gauge is the stalest worker's (livemin): each worker must set it, not only the one
    that serves /metrics (the other's initial 0 read as a cache that never synced)."""
    with FakeKube() as kube:
        kube.set_namespace("demo")
        server = start_server(tmp_path, certs_dir, "--kubeconfig", str(kube.kubeconfig(tmp_path / "kubeconfig")),
                              "--workers", "2", env={"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
        try:
            started, value = time.time(), 0.0
            deadline = time.monotonic() + 5  # the other worker may still be making its first list
            while value == 0.0 and time.monotonic() < deadline:
                value = next(float(line.split()[1]) for line in server.get("/metrics").text.splitlines()
                             if line.startswith("podmedic_namespace_cache_last_sync_timestamp_seconds "))
                time.sleep(0.1)
            assert started - 60 < value <= time.time()
        finally:
            stop_server(server)


def test_the_masters_child_exit_hook_leaves_no_value_files_of_its_own(tmp_path: Path) -> None:
    """The master never dies, so a gauge file of its own would hold 0 for ever: the namespace-sync
    gauge (livemin) would then read 0 after the first worker restart. The hook runs in a fresh
    interpreter, as in a master that has not imported webhook.server.metrics."""
    (tmp_path / "gauge_livemin_4242.db").write_bytes(b"")  # the dead worker's file
    script = ("import types; from webhook.server import gunicorn; "
              "gunicorn._child_exit(None, types.SimpleNamespace(pid=4242, podmedic_slot=None))")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the worker's gone, and nothing of the master's
