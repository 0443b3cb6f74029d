"""A small service's CPU limit (`limits.cpu: 50m`, common), on a real node: the collectors run
inside the app's container, under its CFS quota, so its exit bundle and its preStop bundle are
written with a twentieth of a CPU, shared with the app. A collector cut by its time slice (a file
ending in "Terminated", summary.json's failed list) breaks the promise of a bundle of diagnostics
when a container stops, for a throttled service: when the diagnostics matter."""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

# A typical app: a few processes, one busy (it uses the whole quota: a throttled service, whose
# liveness probe fails and whose container is then stopped), then the server itself.
SCRIPT = "for i in 1 2; do sleep 3600 & done; yes > /dev/null & echo started; exec httpd -f -p 8080 -h /"


def bundle(cluster: Cluster, node: str, root: str, suffix: str) -> tuple[str, dict[str, str]]:
    """The bundle under `root` whose name ends in `suffix`, once its summary.json (written last)
    is there: (its name, its files' contents)."""
    def done() -> str | None:
        names = [b for b in cluster.node_ls(node, root) if b.endswith(suffix)]
        return names[0] if names and cluster.node_file(node, f"{root}/{names[0]}/summary.json") else None

    name = wait_for(f"a bundle *{suffix} in {root}", done, timeout=60)
    return name, {f: cluster.node_file(node, f"{root}/{name}/{f}") or "" for f in cluster.node_ls(node, f"{root}/{name}")}


def test_a_small_cpu_limit_still_gets_complete_exit_and_prestop_bundles(deployed: Cluster) -> None:
    """50m, the app busy: the processes collector was cut at 3 s in both bundles ("Terminated")
    and the exit bundle's disk collector found the budget exhausted (9 s for the bundle)."""
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "small", "namespace": ns},
                    "spec": {"containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                             "command": ["sh", "-c", SCRIPT],
                                             "resources": {"limits": {"cpu": "50m"}}}]}})
    node, log = deployed.wrapped_app_started(ns, "small")
    root = log.rsplit("/", 1)[0] + "/forensics"
    assert deployed.exec(ns, "small", "app", "sh", "-c", "kill $(pidof httpd)").returncode == 0
    exit_name, exit_files = bundle(deployed, node, root, "-app-exit-SIGTERM")
    deployed.kubectl("-n", ns, "delete", "pod", "small", "--wait=false")
    stop_name, stop_files = bundle(deployed, node, root, "Z-app")

    for name, files, collectors in ((exit_name, exit_files, 7), (stop_name, stop_files, 8)):
        summary = json.loads(files["summary.json"])
        cut = [f for f, text in files.items() if text.rstrip().endswith("Terminated")]
        assert (summary["failed"], cut, len(summary["ran"])) == ([], [], collectors), (name, summary)
    assert exit_files["left_behind.txt"].count("sleep 3600") >= 2, exit_files["left_behind.txt"]
    assert "httpd" in stop_files["processes.txt"], stop_files["processes.txt"]
