"""terminationMessagePolicy FallbackToLogsOnError: the kubelet makes the log's tail the
termination message of a failed container only while the termination-message file is empty. The
wrapper of such a container, and its preStop collector where it has no log directory (the
collector writes the termination message only then), are told not to write there
(--termination-log=off); every other container's command is what it was."""

from __future__ import annotations

import copy

from tests import pods
from tests.pods import container
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine import uninject
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource
from webhook.toolbox.argv import NO_TERMINATION_LOG

CONFIG = configfile.load()
LOGS_ON_ERROR = {"terminationMessagePolicy": "FallbackToLogsOnError"}


def injected(annotations: dict[str, str], restart_policy: str) -> tuple[dict, dict, engine.Outcome]:
    tail = container("tail", command=["/app"], **LOGS_ON_ERROR)
    file = container("file", command=["/app"], terminationMessagePolicy="File")
    pod = pods.pod(tail, file, restartPolicy=restart_policy, terminationGracePeriodSeconds=30)
    ns = Namespace("demo", {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled", **annotations}, {})
    outcome = engine.inject(copy.deepcopy(pod), StaticSource([ns]).get("demo"), CONFIG)
    return pod, pods.apply_checked(pod, outcome.ops), outcome


def wrapper_flags(spec: dict) -> list[str]:
    command = spec["command"]
    return command[:command.index("--", command.index("--name"))]


def test_the_wrapper_of_a_logs_on_error_container_leaves_the_message_alone() -> None:
    for restart_policy in ("Always", "Never"):
        pod, out, _ = injected({}, restart_policy)
        tail, file = out["spec"]["containers"]
        assert wrapper_flags(tail).count(NO_TERMINATION_LOG) == 1
        # its collector writes into the log directory, never to the termination message
        assert "--out" in tail["lifecycle"]["preStop"]["exec"]["command"]
        assert tail["lifecycle"]["preStop"] == {"exec": {"command": [
            "tail" if arg == "file" else arg for arg in file["lifecycle"]["preStop"]["exec"]["command"]]}}
        assert NO_TERMINATION_LOG not in file["command"]
        # the rest of the wrapper's argv is the other container's, name aside
        others = [flag for flag in wrapper_flags(tail) if flag != NO_TERMINATION_LOG]
        assert others == [("tail" if flag == "file" else flag) for flag in wrapper_flags(file)]
        assert uninject.template(out, CONFIG) and out == pod


def test_without_a_log_directory_the_prestop_says_it_writes_no_summary() -> None:
    _, out, outcome = injected({"podmedic.io/logs": "disabled"}, "Always")
    tail, file = out["spec"]["containers"]
    prestop = tail["lifecycle"]["preStop"]["exec"]["command"]
    assert "--out" not in prestop and prestop.count(NO_TERMINATION_LOG) == 1
    assert NO_TERMINATION_LOG not in file["lifecycle"]["preStop"]["exec"]["command"] + file["command"]
    details = {d.container: d.detail for d in outcome.report.decisions if d.feature == "forensics"}
    assert details == {"tail": "no summary (FallbackToLogsOnError), 10s", "file": "termination message, 10s"}
