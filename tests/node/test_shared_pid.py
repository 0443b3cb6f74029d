"""`shareProcessNamespace: true` on a real node: the wrapped container's preStop collector sees
the pod's other containers' processes in /proc. It once listed them as its own and sent SIGQUIT
to every JVM it could see: the other container's JVM printed a thread dump on its stdout, a
container podmedic was not asked about. Without podmedic nothing signals it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.node.conftest import BUSYBOX, PREFIX, Cluster, image_archive, wait_for

pytestmark = pytest.mark.node

JVM = "localhost/e2e/jvm:1"


@pytest.fixture(scope="module")
def jvm_image(deployed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """tests/runtime/jvm.c as /jdk/bin/java (a JVM by its executable), alone in its image; it
    writes "SIGQUIT" to its stdout (the container's log) for each SIGQUIT, as a JVM's dump."""
    rootfs = tmp_path_factory.mktemp("jvm-rootfs")
    (rootfs / "jdk" / "bin").mkdir(parents=True)
    source = Path(__file__).parent.parent / "runtime" / "jvm.c"
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(rootfs / "jdk" / "bin" / "java"), str(source)],
                   check=True, capture_output=True, timeout=120)
    deployed.load(image_archive("rootfs", str(rootfs), JVM, "--entrypoint", '["/jdk/bin/java", "/dev/stdout"]'))
    return deployed


def test_the_prestop_collector_leaves_the_other_containers_jvm_alone(jvm_image: Cluster) -> None:
    cluster = jvm_image
    ns = cluster.namespace(inject="enabled", supervisor="enabled")
    untouched = {PREFIX + f"{key}.jvm": "disabled" for key in ("supervisor", "forensics", "logs", "probes")}
    cluster.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "shared", "namespace": ns, "annotations": untouched},
                   "spec": {"shareProcessNamespace": True, "terminationGracePeriodSeconds": 30, "containers": [
                       {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "echo started; exec sleep 3600"]},
                       {"name": "jvm", "image": JVM, "imagePullPolicy": "IfNotPresent"}]}})
    node, _ = cluster.wrapped_app_started(ns, "shared")
    pod = cluster.get("pod", "shared", ns)
    app, jvm = pod["spec"]["containers"]
    assert "lifecycle" not in jvm and jvm.get("command") is None  # podmedic left it as written
    # the namespace is shared: the other container's JVM is visible from the app's container, or
    # this test would pass without the collector ever choosing
    seen_from_app = cluster.exec(ns, "shared", "app", "sh", "-c",
                                 'for c in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$c"; echo; done')
    assert seen_from_app.returncode == 0, seen_from_app.stderr
    assert "/jdk/bin/java /dev/stdout " in seen_from_app.stdout, seen_from_app.stdout
    # the kubelet's preStop, by the same exec into the container
    done = cluster.exec(ns, "shared", "app", *app["lifecycle"]["preStop"]["exec"]["command"])
    assert done.returncode == 0, done.stderr
    meta = pod["metadata"]
    bundles = f"{meta['namespace']}_{meta['name']}_{meta['uid']}/app/forensics"
    (bundle,) = wait_for("the preStop bundle", lambda: cluster.node_ls(node, bundles), timeout=30)
    read = {name: cluster.node_file(node, f"{bundles}/{bundle}/{name}.txt") or ""
            for name in ("processes", "threads")}
    summary = json.loads(cluster.node_file(node, f"{bundles}/{bundle}/summary.json") or "null")
    assert {"processes", "threads"} <= set(summary["ran"]), summary
    time.sleep(1)  # a SIGQUIT's "dump" would be in the JVM container's log by now
    seen = {"the app listed": "sleep 3600" in read["processes"],
            "the other container's JVM listed": "/jdk/bin/java" in read["processes"],
            "the pod's pause listed": "/pause" in read["processes"],
            "SIGQUIT sent": "sent SIGQUIT" in read["threads"],
            "a dump in the JVM container's log": "SIGQUIT" in cluster.kubectl("-n", ns, "logs", "shared", "-c",
                                                                             "jvm").stdout}
    assert seen == {"the app listed": True, "the other container's JVM listed": False,
                    "the pod's pause listed": False, "SIGQUIT sent": False,
                    "a dump in the JVM container's log": False}, read
