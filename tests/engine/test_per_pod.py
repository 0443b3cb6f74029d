"""What the engine works out once per pod, or keeps across reviews, is only what is the same:
settings and what mutators derive from them (PodContext.per_pod: the supervisor's options, the
probes' timings) are shared by the containers without annotations of their own, whatever order
the containers come in, and the settings kept across reviews never pass from one namespace, pod
or configuration to another, nor hand out a list another review could change."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import ALL_ON, CONFIG, PREFIX, run
from tests.engine.test_supervisor_options import flags
from tests.pods import container
from webhook.engine import pod_level
from webhook.engine.features import logs
from webhook.engine.settings import Resolved


def three(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return pods.pod(*(container(name, command=[f"/{name}"], ports=[{"containerPort": 80 + i}])
                      for i, name in enumerate("abc")), annotations=annotations)


def by_name(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in p["spec"]["containers"]}


@pytest.mark.parametrize("own", ["a", "b", "c"])
def test_a_container_with_its_own_annotation_gets_its_own_probe_timings(own):
    mutated, _ = run(three({PREFIX + f"probe-period-seconds.{own}": "7"}))
    periods = {name: c["readinessProbe"]["periodSeconds"] for name, c in by_name(mutated).items()}
    assert periods == {name: 7 if name == own else 10 for name in "abc"}
    timeouts = {(c["readinessProbe"]["timeoutSeconds"], c["livenessProbe"]["timeoutSeconds"])
                for c in by_name(mutated).values()}
    assert timeouts == {(1, 10)}  # liveness is the wrapper's `pmctl alive`: at least 10 s


@pytest.mark.parametrize("own", ["a", "b", "c"])
def test_a_container_with_its_own_annotation_gets_its_own_supervisor_options(own):
    mutated, _ = run(three({PREFIX + f"startretries.{own}": "9", PREFIX + "stopsignal": "INT"}))
    got = {name: flags(c["command"]) for name, c in by_name(mutated).items()}
    assert {name: f["startretries"] for name, f in got.items()} == {n: "9" if n == own else "3" for n in "abc"}
    assert {f["stopsignal"] for f in got.values()} == {"INT"}


def test_an_invalid_value_of_one_container_skips_only_that_container():
    _, outcome = run(three({PREFIX + "startretries.b": "many"}))
    supervisor = {d.container: d.reason.value for d in outcome.report.decisions if d.feature == "supervisor"}
    assert supervisor == {"a": "injected", "b": "invalid-value", "c": "injected"}


def test_settings_kept_across_reviews_follow_the_namespace_and_the_pod():
    in_ns = {**ALL_ON, PREFIX + "probe-period-seconds": "20"}
    for annotations, pod_annotations, expected in [
        (in_ns, None, 20),
        (dict(ALL_ON), None, 10),
        (in_ns, {PREFIX + "probe-period-seconds": "30"}, 30),
        (in_ns, None, 20),
    ]:
        mutated, _ = run(three(pod_annotations), annotations)
        assert {c["readinessProbe"]["periodSeconds"] for c in by_name(mutated).values()} == {expected}


def test_settings_kept_across_reviews_follow_the_configuration():
    other = dataclasses.replace(CONFIG, defaults={**CONFIG.defaults, "probe-period-seconds": "12"})
    assert Resolved(CONFIG, {}, {}).value("probe-period-seconds") == 10
    assert Resolved(other, {}, {}).value("probe-period-seconds") == 12
    assert Resolved(CONFIG, {}, {}).value("probe-period-seconds") == 10


def test_a_list_value_is_never_shared_between_reviews():
    ns = {PREFIX + "liveness-command": '["/bin/check", "--live"]'}
    first = Resolved(CONFIG, ns, {}).value("liveness-command", "app")
    first.append("--changed")
    assert Resolved(CONFIG, ns, {}).value("liveness-command", "app") == ["/bin/check", "--live"]


def test_what_mutators_derive_is_kept_across_reviews_and_read_only():
    first, _ = run(three({PREFIX + "stopsignal": "INT"}))
    derived = Resolved(CONFIG, dict(ALL_ON), {PREFIX + "stopsignal": "INT"}).derived
    assert {"supervisor-options", "readiness-probe-timings", "liveness-probe-timings"} <= set(derived)
    for what, value in derived.items():
        with pytest.raises(TypeError):
            value["periodSeconds" if "timings" in what else "stopsignal"] = "changed"
    second, _ = run(three({PREFIX + "stopsignal": "INT"}))
    assert second == first
    assert Resolved(CONFIG, dict(ALL_ON), {}).derived is not derived  # other pod values: kept apart


def test_values_shared_by_the_patches_of_every_review_are_never_changed():
    """Some operation values are built once and shared by the patches of every review (the
    init containers and volumes of pod_level.finish, the logs feature's env vars, the wrapper's
    flags): safe only while nothing changes a value once emitted, in the engine or in applying
    the patch (finish() appends each pod's container names to a copy of the logdir command)."""
    for pod in (three(), pods.pod(container("x", command=["/x"])), three()):
        mutated, _ = run(pod)
        assert mutated["spec"]["initContainers"][0]["command"][-len(pod["spec"]["containers"]):] == \
            [c["name"] for c in pod["spec"]["containers"]]
    assert pod_level._PIECES
    for (_, namespace, backend), (config, _, pieces) in pod_level._PIECES.entries.items():
        assert pieces == (pod_level._toolbox_init(config), pod_level._logs_volume(config, namespace, backend),
                          pod_level._logdir_init(config, namespace, backend))
    assert list(logs._POD_ENV) == pod_level.pod_env()
    assert (pod_level._TOOLBOX_MOUNT, pod_level._STATE_MOUNT) == (
        {"name": pod_level.TOOLBOX_VOLUME, "mountPath": "/podmedic", "readOnly": True},
        {"name": pod_level.STATE_VOLUME, "mountPath": pod_level.STATE_MOUNT})
