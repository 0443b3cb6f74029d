"""Secret-sourced variables whose names hold `$`, on a real node: their values stay out of the exit
bundle the wrapper has written, as for any other name. Since Kubernetes 1.30 a variable's name
may hold any printable character but `=`. The wrapper is told the names in its command, where the
kubelet expands `$(VAR)` and turns `$$` into `$`: `--redact-env=TOKEN$$2` once reached it as
`TOKEN$2`, which no variable is named, and the bundle showed TOKEN$$2's value in the app's
arguments (the kubelet expands `$(TOKEN$$2)` there, as without podmedic)."""

from __future__ import annotations

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

SECRET = "hunter2-not-for-bundles"


def test_a_secret_under_a_name_with_dollars_stays_out_of_the_exit_bundle(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    deployed.kubectl("-n", ns, "create", "secret", "generic", "db", f"--from-literal=token={SECRET}")
    deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash", "namespace": ns},
                    "spec": {"containers": [{
                        "name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "echo started; sleep 2; exit 3", "crash"],
                        "args": ["--where", "$(TOKEN$$2)", "--from", "$(S$$_token)"],
                        "env": [{"name": "TOKEN$$2", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token"}}}],
                        "envFrom": [{"prefix": "S$$_", "secretRef": {"name": "db"}}]}]}})
    node, log = deployed.wrapped_app_started(ns, "crash")
    root = log.rsplit("/", 1)[0] + "/forensics"
    bundle = wait_for("an exit bundle", lambda: [b for b in deployed.node_ls(node, root) if b.endswith("-app-exit-3")],
                      timeout=60)[0]
    files = wait_for("the bundle's summary", lambda: "summary.json" in (
        found := deployed.node_ls(node, f"{root}/{bundle}")) and found, timeout=30)
    texts = {f: deployed.node_file(node, f"{root}/{bundle}/{f}") or "" for f in files}
    # the wrapper's command line ends with the app's: the kubelet did expand both references
    assert "--where <redacted> --from <redacted>" in texts["processes.txt"], texts["processes.txt"]
    assert not [f for f, text in texts.items() if SECRET in text], texts
