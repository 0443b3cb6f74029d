"""podmedic's init containers keep a Guaranteed pod Guaranteed (the API server computes the QoS
class over init containers too; tests/test_integration.py checks status.qosClass): they request
their limits where every container requests its cpu and memory limits, as the API server reads
quantities and defaults a request left out. A BestEffort pod stays BestEffort: they carry no
resources there. Any other pod gets the configured requests."""

from __future__ import annotations

from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import CONFIG, run
from tests.pods import container

CONFIGURED = dict(CONFIG.toolbox.resources)
REQUESTING_LIMITS = {**CONFIGURED, "requests": CONFIGURED["limits"]}


def resourced(name: str, resources: Any) -> dict[str, Any]:
    return {**container(name, command=[f"/{name}"]), "resources": resources}


def ours(pod: dict[str, Any]) -> list[Any]:
    mutated, _ = run(pod)
    inits = [c for c in mutated["spec"]["initContainers"] if c["name"].startswith("podmedic-")]
    assert [c["name"] for c in inits] == ["podmedic-logdir", "podmedic-toolbox"]
    return [c["resources"] for c in inits]


EXACT = {"requests": {"cpu": "1000m", "memory": "67108864"}, "limits": {"cpu": "1", "memory": "64Mi"}}


@pytest.mark.parametrize("second, expected", [
    (EXACT, REQUESTING_LIMITS),
    ({"limits": {"cpu": "250m", "memory": "1Gi"}}, REQUESTING_LIMITS),  # requests defaulted to limits
    ({"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}}, CONFIGURED),
    ({"requests": {"cpu": "1", "memory": "64Mi"}}, CONFIGURED),
    ({"limits": {"cpu": "1"}}, CONFIGURED),
    ({"limits": {"cpu": "0", "memory": "0"}}, CONFIGURED),
    ({"limits": {"cpu": "lots", "memory": "64Mi"}}, CONFIGURED),
    ({}, CONFIGURED),
])
def test_the_init_containers_request_their_limits_only_in_a_guaranteed_pod(second, expected):
    assert ours(pods.pod(resourced("a", EXACT), resourced("b", second))) == [expected] * 2


def test_init_containers_count_and_ephemeral_ones_do_not():
    pod = pods.pod(resourced("a", EXACT))
    pod["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    assert ours(pod) == [REQUESTING_LIMITS] * 2
    pod["spec"]["initContainers"] = [resourced("setup", {"requests": {"cpu": "1", "memory": "64Mi"}})]
    assert ours(pod) == [CONFIGURED] * 2


@pytest.mark.parametrize("resources", [
    {}, {"requests": {"ephemeral-storage": "1Gi"}}, {"limits": {"cpu": "0", "memory": "0"}},
])
def test_the_init_containers_carry_no_resources_in_a_besteffort_pod(resources):
    """No container requests or limits a positive cpu or memory (the API server's BestEffort; other
    resources and zeros do not count): a ResourceQuota scoped NotBestEffort does not cover the pod,
    and init containers with requests would make it Burstable and covered (tests/test_integration.py)."""
    pod = pods.pod(resourced("a", resources), resourced("b", {}))
    pod["spec"]["initContainers"] = [resourced("setup", {})]
    mutated, _ = run(pod)
    assert [c.get("resources") for c in mutated["spec"]["initContainers"][:2]] == [None, None]


@pytest.mark.parametrize("resources", [{"requests": {"memory": "1Mi"}}, {"limits": {"cpu": "lots"}}])
def test_any_cpu_or_memory_of_any_container_keeps_the_configured_requests(resources):
    pod = pods.pod(resourced("a", {}))
    pod["spec"]["initContainers"] = [resourced("setup", resources)]
    assert ours(pod) == [CONFIGURED] * 2
