"""podmedic's init containers fit into the namespace's LimitRange (type Container), which the API
server validates after the mutating webhooks on every container, ours included
(tests/test_integration.py shows the refusal with a real API server): a request is raised to
`min`, a limit lowered to `max`, a request raised until `maxLimitRequestRatio` holds; where no
resources fit, the features that need the init containers are skipped (limitrange-conflict). In a
pod with pod-level resources, what LimitRanger would fill into ours (`default`, `defaultRequest`,
a `max`) is set instead, within the pod's budget."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import ALL_ON, CONFIG
from tests.engine.test_qos import EXACT, resourced
from tests.pods import apply_checked, container
from webhook import engine
from webhook.engine import limit_floors, limitrange
from webhook.engine.namespace import Constraint, Lookup, Namespace
from webhook.engine.quantity import quantity

# Burstable: a LimitRange's defaults reach an app without resources before the webhook sees it
# (LimitRanger defaults in the mutating phase, before the webhooks), and a BestEffort pod's init
# containers carry none (test_qos.py).
APP = {**container("app", command=["/app"], ports=[{"containerPort": 8080}]),
       "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}
CONFIGURED = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}


def c(kind: Any, resource: str, raw: str, limit_range: str = "tenant") -> Constraint:
    return Constraint(kind, resource, quantity(raw), raw, limit_range)


def run(pod: dict[str, Any], *constraints: Constraint) -> tuple[dict[str, Any], engine.Outcome]:
    ns = Namespace("demo", dict(ALL_ON), {}, limit_range=constraints)
    outcome = engine.inject(copy.deepcopy(pod), Lookup(ns, None), CONFIG)
    mutated = apply_checked(pod, outcome.ops)
    assert engine.inject(copy.deepcopy(mutated), Lookup(ns, None), CONFIG).ops == []
    return mutated, outcome


def ours(pod: dict[str, Any], *constraints: Constraint) -> list[Any]:
    inits = run(pod, *constraints)[0]["spec"]["initContainers"]
    assert [i["name"] for i in inits] == ["podmedic-logdir", "podmedic-toolbox"]
    return [i["resources"] for i in inits]


def test_the_defaults_are_what_these_tests_fit():
    assert dict(CONFIG.toolbox.resources) == CONFIGURED


@pytest.mark.parametrize("constraints, expected", [
    ([c("min", "cpu", "50m")], {**CONFIGURED, "requests": {"cpu": "50m", "memory": "16Mi"}}),
    ([c("min", "cpu", "200m")], {"requests": {"cpu": "200m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}),
    ([c("max", "cpu", "50m")], {**CONFIGURED, "limits": {"cpu": "50m", "memory": "64Mi"}}),
    ([c("max", "memory", "32Mi")], {**CONFIGURED, "limits": {"cpu": "100m", "memory": "32Mi"}}),
    ([c("maxLimitRequestRatio", "cpu", "2")], {**CONFIGURED, "requests": {"cpu": "50m", "memory": "16Mi"}}),
    ([c("maxLimitRequestRatio", "cpu", "3")], {**CONFIGURED, "requests": {"cpu": "34m", "memory": "16Mi"}}),
    ([c("maxLimitRequestRatio", "memory", "2")], {**CONFIGURED, "requests": {"cpu": "10m", "memory": "33554432"}}),
    # combined, and spread over two LimitRanges: all of them apply
    ([c("min", "cpu", "20m"), c("max", "cpu", "80m", "other"), c("maxLimitRequestRatio", "cpu", "2")],
     {**CONFIGURED, "requests": {"cpu": "40m", "memory": "16Mi"}, "limits": {"cpu": "80m", "memory": "64Mi"}}),
    ([c("min", "cpu", "20m"), c("min", "cpu", "30m", "other")], {**CONFIGURED, "requests": {"cpu": "30m", "memory": "16Mi"}}),
    # a resource toolbox.resources does not set: a min asks for a request, a max for a limit
    ([c("min", "ephemeral-storage", "1Mi"), c("max", "ephemeral-storage", "1Gi")],
     {"requests": {**CONFIGURED["requests"], "ephemeral-storage": "1Mi"},
      "limits": {**CONFIGURED["limits"], "ephemeral-storage": "1Gi"}}),
])
def test_the_init_containers_are_fitted(constraints, expected):
    assert ours(pods.pod(APP), *constraints) == [expected] * 2


@pytest.mark.parametrize("constraints", [
    [],
    [c("min", "cpu", "10m"), c("max", "memory", "1Gi"), c("maxLimitRequestRatio", "memory", "4")],
    [c("max", "cpu", "1")],
])
def test_constraints_already_met_change_nothing(constraints):
    pod = pods.pod(APP)
    assert run(pod, *constraints)[1].ops == run(pod)[1].ops


def test_a_guaranteed_pod_stays_guaranteed_within_the_limitrange():
    pod = pods.pod(resourced("a", EXACT))
    limits = {"cpu": "80m", "memory": "64Mi"}
    assert ours(pod, c("max", "cpu", "80m"), c("maxLimitRequestRatio", "cpu", "1")) == [
        {"requests": limits, "limits": limits}] * 2
    limits = {"cpu": "200m", "memory": "64Mi"}
    assert ours(pod, c("min", "cpu", "200m")) == [{"requests": limits, "limits": limits}] * 2


def pod_level(requests: dict[str, str] | None, limits: dict[str, str] | None = None) -> dict[str, Any]:
    pod = pods.pod(APP)
    pod["spec"]["resources"] = {kind: values for kind, values in (("requests", requests), ("limits", limits)) if values}
    return pod


BUDGET = {"cpu": "200m", "memory": "128Mi"}
TOO_LITTLE = "32Mi, the least memory podmedic's init containers start in"
DEFAULTS = (c("default", "cpu", "500m"), c("defaultRequest", "cpu", "500m"),
            c("default", "memory", "512Mi"), c("defaultRequest", "memory", "512Mi"))


@pytest.mark.parametrize("pod, constraints, detail", [
    (pods.pod(APP), [c("min", "cpu", "200m"), c("max", "cpu", "100m", "other")],
     "no cpu fits the LimitRange constraints min 200m (tenant), max 100m (other)"),
    (pods.pod(APP), [c("max", "memory", "8Mi")], "LimitRange tenant: max memory 8Mi is below " + TOO_LITTLE),
    # above the configured request (16Mi), below what the init containers need to start
    (pods.pod(APP), [c("max", "memory", "24Mi")], "LimitRange tenant: max memory 24Mi is below " + TOO_LITTLE),
    (pods.pod(APP), [c("maxLimitRequestRatio", "ephemeral-storage", "2")],
     "LimitRange tenant: ephemeral-storage maxLimitRequestRatio 2 needs a request and a limit, and podmedic's init "
     "containers set no ephemeral-storage"),
    # a pod-level budget the resources LimitRanger would fill in cannot fit into
    (pod_level({"cpu": "200m", "memory": "24Mi"}), DEFAULTS,
     "the pod's spec.resources: max memory 24Mi is below " + TOO_LITTLE),
    (pod_level(BUDGET), (*DEFAULTS, c("min", "cpu", "300m")),
     "no cpu fits the LimitRange constraints min 300m (tenant), max 200m (the pod's spec.resources)"),
    (pod_level({"cpu": "1Gx"}), DEFAULTS, "not a quantity: '1Gx'"),
])
def test_no_fit_skips_every_feature_that_needs_the_init_containers(pod, constraints, detail):
    mutated, outcome = run(pod, *constraints)
    skipped = {d.feature: d.detail for d in outcome.report.decisions if d.reason.code == "limitrange-conflict"}
    assert skipped == {"logs": detail, "supervisor": detail, "forensics": detail}
    assert "initContainers" not in mutated["spec"] and "volumes" not in mutated["spec"]
    assert "readinessProbe" in mutated["spec"]["containers"][0]  # what needs no init container is kept


def test_a_pod_with_pod_level_resources_gets_only_what_the_limitrange_demands():
    """Ours carry no resources there (they share the pod's budget): only what a constraint asks
    for, which is what LimitRanger's defaulting gave them anyway for a min (defaultRequest)."""
    pod = pods.pod(APP)
    pod["spec"]["resources"] = {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
    assert ours(pod, c("min", "cpu", "50m")) == [{"requests": {"cpu": "50m"}}] * 2


@pytest.mark.parametrize("pod, constraints, expected", [
    # what LimitRanger would fill in (500m, 512Mi: above the budget) is set, as configured
    (pod_level(BUDGET, BUDGET), DEFAULTS, CONFIGURED),
    # a max: the API server makes it the LimitRange's default
    (pod_level(BUDGET, BUDGET), (c("max", "memory", "1Gi"),), {"requests": {"memory": "16Mi"}, "limits": {"memory": "64Mi"}}),
    # only what is defaulted, and only what spec.resources budgets
    (pod_level(BUDGET), DEFAULTS[:2], {"requests": {"cpu": "10m"}, "limits": {"cpu": "100m"}}),
    (pod_level({"cpu": "200m"}), DEFAULTS, {"requests": {"cpu": "10m"}, "limits": {"cpu": "100m"}}),
    # within the budget: a limit above the pod's request comes down to it; without pod-level
    # requests, to its limit
    (pod_level({"cpu": "50m", "memory": "32Mi"}), DEFAULTS, {**CONFIGURED, "limits": {"cpu": "50m", "memory": "32Mi"}}),
    (pod_level(None, {"cpu": "50m", "memory": "1Gi"}), DEFAULTS, {**CONFIGURED, "limits": {"cpu": "50m", "memory": "64Mi"}}),
    # and the LimitRange's checks too
    (pod_level(BUDGET), (*DEFAULTS, c("min", "cpu", "50m")), {**CONFIGURED, "requests": {"cpu": "50m", "memory": "16Mi"}}),
])
def test_a_pod_level_pods_init_containers_get_what_the_limitrange_would_default_within_its_budget(
        pod, constraints, expected):
    assert ours(pod, *constraints) == [expected] * 2


def test_defaults_change_nothing_in_a_pod_without_pod_level_resources():
    pod = pods.pod(APP)
    assert run(pod, *DEFAULTS)[1].ops == run(pod)[1].ops


def test_fit_keeps_values_as_written():
    written = {"requests": {"cpu": "0.01", "memory": "16Mi"}, "limits": {"cpu": "100m"}}
    assert limitrange.fit(written, (c("min", "cpu", "10m"),), {}) == written


def test_a_memory_limit_is_never_lowered_below_what_the_init_containers_need_to_start():
    """Memory is incompressible: under a lower limit they are OOM-killed at every start and the pod
    never starts (tests/node/test_init_memory.py). cpu is only throttled: its floor is the request."""
    floor = limit_floors.MEMORY_LIMIT_FLOOR
    assert limitrange.fit(CONFIGURED, (c("max", "memory", floor),), CONFIGURED["requests"])["limits"]["memory"] == floor
    with pytest.raises(limitrange.NoFit, match=f"max memory 31Mi is below {floor}, the least memory"):
        limitrange.fit(CONFIGURED, (c("max", "memory", "31Mi"),), CONFIGURED["requests"])
    assert limitrange.fit(CONFIGURED, (c("max", "cpu", "10m"),), CONFIGURED["requests"])["limits"]["cpu"] == "10m"


def test_a_configured_memory_request_above_the_floor_is_the_floor():
    requests = {"cpu": "10m", "memory": "48Mi"}
    with pytest.raises(limitrange.NoFit, match=r"max memory 40Mi is below the toolbox's request 48Mi \(toolbox"):
        limitrange.fit({"requests": requests}, (c("max", "memory", "40Mi"),), requests)


def test_a_memory_limit_configured_below_the_floor_is_kept():
    """The floor is on what the fitting lowers: the admin's own toolbox.resources stand."""
    low = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "20Mi"}}
    fitted = limitrange.fit(low, (c("min", "cpu", "50m"), c("max", "memory", "1Gi")), low["requests"])
    assert fitted["limits"] == low["limits"]
    with pytest.raises(limitrange.NoFit, match="max memory 18Mi is below 32Mi"):
        limitrange.fit(low, (c("max", "memory", "18Mi"),), low["requests"])
