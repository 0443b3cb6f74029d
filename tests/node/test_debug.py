"""`kubectl debug` on injected pods, on a real node, with kubectl 1.36's default flags.

- An ephemeral container (`--target=app`) is a pods/ephemeralcontainers update, which podmedic
  does not review: it joins the app's PID namespace and sees the wrapper and what it runs, even
  in a pod the wrapper holds (uninjected, the target has exited and the debug container cannot
  start at all).
- `--copy-to` creates a pod that carries podmedic's init containers, volumes and wrapped command
  but neither its marker (annotations are dropped) nor its probes (dropped on purpose, so that
  the kubelet leaves the copy's debug shell alone). It once got fresh probes on the app's port:
  a shell that serves nothing was never Ready, and killed at the startup bound.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.node.conftest import BUSYBOX, PREFIX, STATIC, Cluster, wait_for

pytestmark = pytest.mark.node

PORT = 8080


def _pod(name: str, command: str, annotations: dict[str, str] | None = None, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [
                {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", command], **container}]}}


def _ready(cluster: Cluster, ns: str, pod: str) -> bool:
    conditions = cluster.get("pod", pod, ns).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_an_ephemeral_container_sees_the_held_app_and_leaves_the_wrapper_alone(deployed: Cluster) -> None:
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    deployed.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(
        _pod("crash", "echo started; exit 3", {PREFIX + "startretries": "1"})))
    wait_for("the wrapper to hold the crashed app", lambda: "FATAL" in deployed.exec(
        ns, "crash", "app", "/podmedic/bin/busybox", "sh", "/podmedic/pmctl", "status").stdout, timeout=90)
    done = deployed.kubectl("-n", ns, "debug", "crash", "--image=" + BUSYBOX, "--target=app",
                            "--container=dbg", "--", "sh", "-c", "ps -o args")
    assert "podmedic" not in done.stderr, done.stderr  # admitted as it is, no warning

    def finished() -> dict[str, Any] | None:
        statuses = deployed.get("pod", "crash", ns)["status"].get("ephemeralContainerStatuses", [])
        return next((s["state"]["terminated"] for s in statuses if "terminated" in s["state"]), None)

    assert wait_for("the debug container to finish", finished, timeout=60)["exitCode"] == 0
    seen = deployed.kubectl("-n", ns, "logs", "crash", "-c", "dbg").stdout
    assert "/podmedic/supervise --name app" in seen, seen  # the app's PID namespace
    (app,) = deployed.get("pod", "crash", ns)["status"]["containerStatuses"]
    assert "running" in app["state"] and app["restartCount"] == 0, app  # still held, not restarted


def test_a_held_app_without_a_shell_is_inspected_with_the_command_its_log_names(deployed: Cluster) -> None:
    """docs/operations.md's runbook in an image with nothing but the app (no shell, no libc): the
    wrapper's hold line names the command to exec, and the toolbox's busybox shell runs there,
    with its own applets (ls, ps), beside the held scene."""
    ns = deployed.namespace(inject="enabled", supervisor="enabled")
    pod = _pod("bare", "", {PREFIX + "startretries": "1"}, image=STATIC)
    pod["spec"]["containers"][0]["command"] = ["/app", "exit", "3"]
    deployed.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    hold = "; exec in: /podmedic/bin/busybox sh /podmedic/pmctl status"

    def held() -> str | None:
        out = deployed.kubectl("-n", ns, "logs", "bare", "-c", "app", check=False).stdout
        return out if hold in out else None

    log = wait_for("the hold's log line", held, timeout=90)
    status = deployed.exec(ns, "bare", "app", *hold.removeprefix("; exec in: ").split())
    assert status.returncode == 0 and "FATAL" in status.stdout and "last exit 3" in status.stdout, (status, log)
    shell = deployed.exec(ns, "bare", "app", "/podmedic/bin/busybox", "sh", "-c", "ls /app && ps -o args")
    assert shell.returncode == 0 and "/podmedic/supervise --name app" in shell.stdout, shell
    assert deployed.exec(ns, "bare", "app", "sh", "-c", "true").returncode != 0  # the image itself has no shell


def test_a_copy_with_a_debug_shell_gets_no_second_injection_and_becomes_ready(deployed: Cluster) -> None:
    # a startup bound: fresh probes on a copy would have the kubelet kill its shell
    ns = deployed.namespace(inject="enabled", supervisor="enabled", **{"startup-timeout": "10s"})
    off = deployed.namespace()
    serve = f"echo started; exec httpd -f -p {PORT} -h /"
    for namespace in (ns, off):
        deployed.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(
            _pod("web", serve, ports=[{"containerPort": PORT}])))
    deployed.wrapped_app_started(ns, "web")
    wait_for("the uninjected pod", lambda: _ready(deployed, off, "web"), timeout=60)
    shell = ["--container=app", "--", "sh", "-c", "echo copy-up; exec sleep 3600"]
    copied = {namespace: deployed.kubectl("-n", namespace, "debug", "web", "--copy-to=web-copy", *shell)
              for namespace in (ns, off)}
    wait_for("the uninjected copy to be Ready", lambda: _ready(deployed, off, "web-copy"), timeout=60)
    wait_for("the copy to be Ready as the uninjected one", lambda: _ready(deployed, ns, "web-copy"), timeout=60)
    copy = deployed.get("pod", "web-copy", ns)
    (app,) = copy["spec"]["containers"]
    assert not [key for key in app if key.endswith("Probe")], app  # kubectl dropped them; they stay dropped
    assert PREFIX + "status" not in copy["metadata"].get("annotations", {})
    assert [c["name"] for c in copy["spec"]["initContainers"]] == \
        [c["name"] for c in deployed.get("pod", "web", ns)["spec"]["initContainers"]]  # one set, as copied
    (status,) = copy["status"]["containerStatuses"]
    assert status["restartCount"] == 0, status
    assert "a copy of an injected pod" in copied[ns].stderr, copied[ns].stderr  # the skip, as a warning
    assert "podmedic" not in copied[off].stderr, copied[off].stderr
