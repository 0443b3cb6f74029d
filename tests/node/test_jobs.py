"""Run-to-completion pods under the supervisor, on a real node: the Job controller, not the
wrapper, decides what happens after the app exits. A Job's pod is wrapped like any other where
the admin turned the supervisor on, and the wrapper's service semantics (a start shorter than
startsecs is retried, FATAL is held for an hour) once ran a migration four times and kept the
pod alive instead of letting the Job complete."""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import BUSYBOX, Cluster, wait_for

pytestmark = pytest.mark.node

LOGS = "/var/log/podmedic"  # log-path's default: where the pod's log directory is mounted


def test_a_job_whose_app_succeeds_at_once_runs_it_once_and_completes(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": ns},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", f"echo migrated >> {LOGS}/app.log"]}]}}}}
    deployed.apply(job)

    def finished() -> str | None:
        conditions = deployed.get("job", "migrate", ns).get("status", {}).get("conditions", [])
        return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"),
                    None)

    assert wait_for("the Job to finish", finished, timeout=90) == "Complete"
    (pod,) = json.loads(deployed.kubectl("-n", ns, "get", "pods", "-l", "job-name=migrate", "-o", "json").stdout)["items"]
    assert pod["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"  # it did run wrapped
    meta = pod["metadata"]
    log = deployed.node_file(pod["spec"]["nodeName"], f"{meta['namespace']}_{meta['name']}_{meta['uid']}/app/app.log")
    assert (log or "").splitlines() == ["migrated"]  # once, not once per failed start
