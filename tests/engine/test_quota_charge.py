"""podmedic's init containers do not raise what a ResourceQuota charges a pod: the larger, per
resource, of its containers' sum (native sidecars included) and its largest init container
(tests/test_integration.py shows the refusal on a real API server). Where every container and
native sidecar sets a cpu or memory request (or limit), ours ask no more than their total; a
memory limit never below limit_floors.MEMORY_LIMIT_FLOOR, the QoS class kept, the LimitRange fitted
after."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests import pods
from tests.engine.test_limitrange import c
from tests.engine.test_limitrange import ours as fitted
from tests.engine.test_limitrange import run as run_in_limitrange
from tests.engine.test_mutations import ALL_ON, run
from tests.engine.test_qos import CONFIGURED, ours, resourced
from tests.pods import apply_checked
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine import limit_floors
from webhook.engine.config import from_mapping
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource


def both(cpu: str, memory: str) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed)."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


SMALL = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"}}


@pytest.mark.parametrize("app, expected", [
    (SMALL, SMALL),  # charged 50m / 32Mi, as without podmedic (not 100m / 64Mi)
    # below the floors: the limits stay 50m / 32Mi (the charge rises by 30m / 8Mi), requests follow
    ({"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"cpu": "20m", "memory": "24Mi"}},
     {"requests": {"cpu": "5m", "memory": "8Mi"},
      "limits": {"cpu": limit_floors.CPU_LIMIT_FLOOR, "memory": limit_floors.MEMORY_LIMIT_FLOOR}}),
    # only what the app sets lower: requests lowered, limits as configured
    ({"requests": {"cpu": "5m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
     {**CONFIGURED, "requests": {"cpu": "5m", "memory": "16Mi"}}),
    # no limits: the limits as configured (a quota on limits.* refuses such an app anyway)
    ({"requests": {"cpu": "5m", "memory": "8Mi"}},
     {**CONFIGURED, "requests": {"cpu": "5m", "memory": "8Mi"}}),
    # a request left out is its limit, as the API server defaults it
    ({"limits": {"cpu": "5m", "memory": "2Gi"}, "requests": {"memory": "1Gi"}},
     {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"cpu": "50m", "memory": "64Mi"}}),
    # an app that asks for more, or writes what cannot be read: as configured
    ({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}, CONFIGURED),
    ({"requests": {"cpu": "lots", "memory": "64Mi"}, "limits": {"cpu": "1Gx", "memory": "1Gi"}}, CONFIGURED),
], ids=["small", "below-floor", "requests-only", "no-limits", "defaulted-request", "larger", "unreadable"])
def test_a_burstable_apps_init_containers_ask_no_more_than_it(app, expected):
    assert ours(pods.pod(resourced("app", app))) == [expected] * 2


@pytest.mark.parametrize("app, expected", [
    (both("50m", "32Mi"), both("50m", "32Mi")),
    (both("20m", "16Mi"), both("50m", "32Mi")),  # the floors, requested too: still Guaranteed
    (both("1", "1Gi"), both("100m", "64Mi")),  # as before: the configured limits, requested
])
def test_a_guaranteed_apps_init_containers_request_their_lowered_limits(app, expected):
    assert ours(pods.pod(resourced("app", app))) == [expected] * 2


def test_the_total_counts_every_container_and_native_sidecar_but_no_other_init_container():
    pod = pods.pod(resourced("a", both("30m", "20Mi")), resourced("b", both("30m", "20Mi")))
    sidecar = {**resourced("proxy", both("30m", "20Mi")), "restartPolicy": "Always"}
    setup = resourced("setup", both("1", "1Gi"))  # runs alone, before: the pod's charge is the larger
    pod["spec"]["initContainers"] = [setup, sidecar]
    assert ours(pod) == [both("90m", "60Mi")] * 2
    pod["spec"]["initContainers"] = [setup, {**sidecar, "resources": {}}]  # one leaves them out
    assert ours(pod) == [CONFIGURED] * 2


def test_pod_level_resources_and_besteffort_pods_keep_none():
    pod = pods.pod(resourced("app", SMALL))
    pod["spec"]["resources"] = both("50m", "32Mi")
    for unchanged in (pod, pods.pod(resourced("app", {}))):
        assert [i.get("resources") for i in run(unchanged)[0]["spec"]["initContainers"]] == [None, None]


@pytest.mark.parametrize("constraints, expected", [
    ([c("min", "cpu", "50m")], {**SMALL, "requests": {"cpu": "50m", "memory": "16Mi"}}),
    ([c("maxLimitRequestRatio", "cpu", "2")], {**SMALL, "requests": {"cpu": "25m", "memory": "16Mi"}}),
    ([c("max", "cpu", "40m")], {**SMALL, "limits": {"cpu": "40m", "memory": "32Mi"}}),
])
def test_the_lowered_resources_are_fitted_into_the_limitrange(constraints, expected):
    assert fitted(pods.pod(resourced("app", SMALL)), *constraints) == [expected] * 2


def test_a_limitrange_max_below_the_floor_is_still_a_conflict():
    app = {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"cpu": "20m", "memory": "16Mi"}}
    _, outcome = run_in_limitrange(pods.pod(resourced("app", app)), c("max", "memory", "24Mi"))
    assert {d.feature for d in outcome.report.decisions if d.reason.code == "limitrange-conflict"} == {
        "logs", "supervisor", "forensics"}


def test_a_configured_request_above_the_lowered_limit_comes_down_to_it():
    """An admin's toolbox.resources requesting more than the floors, and an app that requests
    nothing (zero) but limits 60m / 48Mi: the limits came down to the app's, the requests stayed
    100m / 64Mi, above them, and the API server would refuse the pod ("must be less than or equal
    to cpu limit"). Now the requests come down with them."""
    raw = configfile._embedded()
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
    cfg = from_mapping({**raw, "toolbox": {**raw["toolbox"], "resources": resources}})
    app = {"requests": {"cpu": "0", "memory": "0"}, "limits": {"cpu": "60m", "memory": "48Mi"}}
    pod = pods.pod(resourced("app", app))
    lookup = StaticSource([Namespace("demo", dict(ALL_ON), {})]).get("demo")
    mutated = apply_checked(pod, engine.inject(copy.deepcopy(pod), lookup, cfg).ops)
    inits = [c["resources"] for c in mutated["spec"]["initContainers"] if c["name"].startswith("podmedic-")]
    assert inits == [{"requests": {"cpu": "60m", "memory": "48Mi"}, "limits": {"cpu": "60m", "memory": "48Mi"}}] * 2
