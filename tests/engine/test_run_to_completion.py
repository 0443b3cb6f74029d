"""Run-to-completion containers (restartPolicy Never or OnFailure: Jobs, CronJobs, batch pods)
run their app once per container start: the wrapper gets --autorestart=false --startsecs=0, so
the kubelet's restart policy and the Job controller's backoffLimit act on the app's exit code.
The supervisor's service semantics (a short start retried, in-container restarts, FATAL held)
would run a quick Job several times and hold its pod for an hour."""

from __future__ import annotations

from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import ALL_ON, PREFIX, c0, run
from tests.engine.test_supervisor_options import flags
from tests.pods import container

SERVICE = {"autorestart": "unexpected", "startsecs": "1"}  # the global defaults
RUN_ONCE = {"autorestart": "false", "startsecs": "0"}


def run_options(command: list[str]) -> dict[str, str]:
    got = flags(command)
    return {key: got[key] for key in RUN_ONCE}


def supervisor_detail(outcome: Any, name: str = "app") -> str:
    return next(d.detail for d in outcome.report.decisions if d.container == name and d.feature == "supervisor")


@pytest.mark.parametrize("spec,expected,detail", [
    ({"restartPolicy": "Never"}, RUN_ONCE, "run-to-completion (restartPolicy Never): app runs once"),
    ({"restartPolicy": "OnFailure"}, RUN_ONCE, "run-to-completion (restartPolicy OnFailure): app runs once"),
    ({"restartPolicy": "Always"}, SERVICE, None),
    ({}, SERVICE, None),  # the API server defaults a missing restartPolicy to Always
])
def test_the_pods_restart_policy_decides(spec, expected, detail):
    mutated, outcome = run(pods.pod(container(command=["/job"]), **spec))
    assert run_options(c0(mutated)["command"]) == expected
    explained = supervisor_detail(outcome)
    assert (detail in explained) if detail else "run-to-completion" not in explained, explained


def test_a_containers_own_restart_policy_wins_over_the_pods():
    """Kubernetes 1.34+ container restart rules: a regular container may set its own policy."""
    original = pods.pod(container("job", command=["/job"], restartPolicy="Never"),
                        container("svc", command=["/svc"], ports=[{"containerPort": 1}]),
                        container("retry", command=["/retry"], restartPolicy="OnFailure"))
    mutated, _ = run(original)
    job, svc, retry = (run_options(c["command"]) for c in mutated["spec"]["containers"])
    assert (job, svc, retry) == (RUN_ONCE, SERVICE, RUN_ONCE)
    mutated, _ = run(pods.pod(container("svc", command=["/svc"], restartPolicy="Always"), restartPolicy="Never"))
    assert run_options(c0(mutated)["command"]) == SERVICE


def test_a_native_sidecar_in_a_never_pod_is_still_a_service():
    """Native sidecars are never wrapped: the supervisor leaves them as written, and the app
    beside it still runs once."""
    original = pods.pod(container(command=["/job"]), restartPolicy="Never",
                        initContainers=[container("mesh", command=["/mesh"], restartPolicy="Always",
                                                  ports=[{"containerPort": 3}])])
    mutated, outcome = run(original)
    mesh = next(c for c in mutated["spec"]["initContainers"] if c["name"] == "mesh")
    assert mesh["command"] == ["/mesh"]
    assert not [d for d in outcome.report.decisions if d.container == "mesh" and d.feature == "supervisor"]
    assert run_options(c0(mutated)["command"]) == RUN_ONCE


def test_namespace_values_are_overridden_pod_annotations_are_honoured():
    namespace = {**ALL_ON, PREFIX + "autorestart": "true", PREFIX + "startsecs": "5"}
    mutated, outcome = run(pods.pod(container(command=["/job"]), restartPolicy="OnFailure"), namespace)
    assert run_options(c0(mutated)["command"]) == RUN_ONCE
    # the pod's author asked for in-container restarts: their choice; startsecs still 0
    mutated, outcome = run(pods.pod(container(command=["/job"]), restartPolicy="Never",
                                    annotations={PREFIX + "autorestart": "unexpected"}), namespace)
    assert run_options(c0(mutated)["command"]) == {"autorestart": "unexpected", "startsecs": "0"}
    assert "run-to-completion (restartPolicy Never): autorestart as annotated" in supervisor_detail(outcome)
    mutated, _ = run(pods.pod(container("a", command=["/a"]), container("b", command=["/b"]), restartPolicy="Never",
                              annotations={PREFIX + "startsecs.b": "2"}))
    a, b = (run_options(c["command"]) for c in mutated["spec"]["containers"])
    assert (a, b) == (RUN_ONCE, {"autorestart": "false", "startsecs": "2"})


def test_run_once_and_service_containers_of_one_configuration_do_not_share_flags():
    """The flags are kept across reviews by configuration (per_pod): the restart policy, a fact
    of the pod, must be part of what they are kept under."""
    service, _ = run(pods.pod(container(command=["/svc"], ports=[{"containerPort": 1}])))
    job, _ = run(pods.pod(container(command=["/job"]), restartPolicy="Never"))
    service_again, _ = run(pods.pod(container(command=["/svc"], ports=[{"containerPort": 1}])))
    assert run_options(c0(service)["command"]) == run_options(c0(service_again)["command"]) == SERVICE
    assert run_options(c0(job)["command"]) == RUN_ONCE


def rules(*actions: str) -> list[dict[str, Any]]:
    return [{"action": action, "exitCodes": {"operator": "In", "values": [42 + i]}} for i, action in enumerate(actions)]


@pytest.mark.parametrize("policy, actions", [
    ("Always", ["RestartAllContainers"]), ("Always", ["Restart", "RestartAllContainers"]),
    ("Never", ["RestartAllContainers"]), ("Never", ["Restart"]), ("OnFailure", ["Restart"]),
])
def test_a_container_with_restart_rules_hands_every_exit_to_the_kubelet(policy, actions):
    """Container restart rules (on by default in 1.36): the kubelet acts on each exit code, to
    restart the container or the whole pod in place (RestartAllContainers), so a service's
    wrapper runs its app once too. Restarted in the container, an Always app's exit 42 never
    reached the kubelet, and the pod its rule asked to restart never was."""
    mutated, outcome = run(pods.pod(container(command=["/svc"], restartPolicy=policy,
                                              restartPolicyRules=rules(*actions))))
    assert run_options(c0(mutated)["command"]) == RUN_ONCE
    why = "restartPolicyRules" if policy == "Always" else f"restartPolicy {policy}"
    assert f"run-to-completion ({why}): app runs once" in supervisor_detail(outcome)


def test_restart_rules_that_only_restart_an_always_container_keep_the_service():
    """With restartPolicy Always the kubelet restarts the container on every exit anyway: a rule
    whose action is Restart changes nothing, and the wrapper stays a service, held on FATAL
    (the reviewer's rules.yaml)."""
    mutated, outcome = run(pods.pod(container(command=["/app"], ports=[{"name": "http", "containerPort": 8080}],
                                              restartPolicy="Always", restartPolicyRules=rules("Restart"))))
    assert run_options(c0(mutated)["command"]) == SERVICE
    assert "run-to-completion" not in supervisor_detail(outcome)
    assert "pmctl" in " ".join(c0(mutated)["livenessProbe"]["exec"]["command"])


@pytest.mark.parametrize("own, spec", [({}, {"restartPolicy": "Never"}),
                                       ({"restartPolicyRules": rules("RestartAllContainers")}, {})])
def test_a_run_once_container_is_not_held_so_its_liveness_asks_the_app(own, spec):
    """The run-once wrapper quits after its app's exit and never holds: the wrapper's `pmctl
    alive` would pass as long as a hung app runs, and it would never be restarted. The app's
    own liveness check, behind a startup probe, restarts it."""
    mutated, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 8080}], **own), **spec))
    app = c0(mutated)
    assert run_options(app["command"]) == RUN_ONCE
    assert app["livenessProbe"]["tcpSocket"] == {"port": 8080} and app["startupProbe"]["tcpSocket"] == {"port": 8080}


@pytest.mark.parametrize("policy, annotations, held", [
    ("Never", {"autorestart": "true"}, True),  # restart-limit: FATAL, held
    ("OnFailure", {"startsecs": "5"}, True),  # start retries: FATAL, held
    ("Never", {"autorestart": "false"}, False),  # what run-once sets anyway
    ("Always", {"autorestart": "false", "startsecs": "0"}, False),  # a service the author made run once
    ("Never", {"autorestart": "true", "restart-limit": "0"}, False),  # restarts for ever: never FATAL
    ("Always", {"restart-limit": "0", "startsecs": "0"}, False),  # likewise, a service
])
def test_a_wrapper_that_can_hold_gets_the_wrappers_liveness_and_one_that_cannot_the_apps(policy, annotations, held):
    """Whether the wrapper can reach FATAL and hold follows the flags it gets, annotations
    included. A Never pod's author who annotated autorestart: true got the app's tcpSocket
    liveness, which killed the hold the annotation kept within about 30 s (review of 18e8aa9)."""
    mutated, _ = run(pods.pod(container(command=["/app"], ports=[{"containerPort": 8080}]), restartPolicy=policy,
                              annotations={PREFIX + key: value for key, value in annotations.items()}))
    liveness = c0(mutated)["livenessProbe"]
    assert ("exec" in liveness) is held, liveness
    assert ("startupProbe" not in c0(mutated)) is held
