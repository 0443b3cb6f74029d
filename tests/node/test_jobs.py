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


def test_a_failed_apps_last_log_lines_are_its_termination_message_as_without_podmedic(deployed: Cluster) -> None:
    """terminationMessagePolicy FallbackToLogsOnError: the kubelet makes the log's tail the
    termination message (what `kubectl describe pod` and CI systems show) only when the
    termination-message file is empty. The wrapper's summary there once replaced the app's
    `FATAL: config missing` with podmedic's JSON."""
    plain, wrapped = deployed.namespace(), deployed.namespace(inject="enabled", supervisor="enabled")
    for ns in (plain, wrapped):
        deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fails", "namespace": ns},
                        "spec": {"restartPolicy": "Never", "containers": [
                            {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                             "terminationMessagePolicy": "FallbackToLogsOnError",
                             "command": ["sh", "-c", "echo 'FATAL: config missing'; exit 1"]}]}})

    def terminated(ns: str) -> dict[str, object] | None:
        statuses = deployed.get("pod", "fails", ns).get("status", {}).get("containerStatuses", [])
        state: dict[str, object] | None = statuses[0]["state"].get("terminated") if statuses else None
        return state

    unwrapped = wait_for("the unwrapped app to fail", lambda: terminated(plain), timeout=90)
    got = wait_for("the wrapped app to fail", lambda: terminated(wrapped), timeout=90)
    assert deployed.get("pod", "fails", wrapped)["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"
    assert unwrapped["exitCode"] == got["exitCode"] == 1
    assert unwrapped["message"] == "FATAL: config missing\n"
    # the log's tail, the app's line in it (and the wrapper's own log lines after it), no summary
    message = str(got.get("message", ""))
    assert "FATAL: config missing\n" in message and '"podmedic":"summary"' not in message, message
