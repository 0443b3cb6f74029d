"""podmedic's toolbox volume is an emptyDir on the node's disk: the kubelet counts it in the pod's
local ephemeral storage, and evicts a pod whose usage exceeds its ephemeral-storage limit (the
containers' limits added up as the scheduler adds them). Where that limit is below what the
toolbox volume may hold (its sizeLimit), the features that need the toolbox skip
(ephemeral-storage-limit); the probes and the log directory (hostPath or a claim: not counted)
stay. tests/node/test_ephemeral_storage.py shows the eviction on a real node."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import ALL_ON, CONFIG, reasons, run
from webhook import engine
from webhook.engine import pod_level
from webhook.engine.config import GlobalConfig
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

TOOLBOX = {"supervisor", "forensics"}


def limited(name: str, limit: str | None, **extra: Any) -> dict[str, Any]:
    resources = {"limits": {"ephemeral-storage": limit}} if limit is not None else {}
    return pods.container(name, command=["/app"], ports=[{"containerPort": 8080}], resources=resources, **extra)


def skipped(outcome: Any, container: str = "app") -> set[str]:
    return {feature for feature, reason in reasons(outcome, container).items() if reason == "ephemeral-storage-limit"}


def test_a_pod_limited_below_the_toolbox_volume_keeps_what_needs_no_toolbox():
    mutated, outcome = run(pods.pod(limited("app", "3Mi")))
    assert skipped(outcome) == TOOLBOX
    assert reasons(outcome, "app")["probes"] == "injected" and reasons(outcome, "app")["logs"] == "injected"
    spec = mutated["spec"]
    assert pod_level.TOOLBOX_VOLUME not in {v["name"] for v in spec["volumes"]}
    assert [i["name"] for i in spec["initContainers"]] == [pod_level.LOGDIR_INIT]
    assert spec["containers"][0]["command"] == ["/app"]
    detail = next(d.detail for d in outcome.report.decisions if d.reason.code == "ephemeral-storage-limit")
    assert detail == f"{3 * 2**20} bytes for the pod, below podmedic-toolbox's sizeLimit 64Mi"


@pytest.mark.parametrize("spec, short", [
    ({"containers": [limited("app", "64Mi")]}, False),            # the sizeLimit fits
    ({"containers": [limited("app", None)]}, False),              # no limit: nothing is counted
    ({"containers": [limited("app", "1Gi")]}, False),
    # the containers' limits add up; one without a limit adds nothing
    ({"containers": [limited("app", "40Mi"), limited("b", "40Mi")]}, False),
    ({"containers": [limited("app", "40Mi"), limited("b", None)]}, True),
    # a native sidecar's limit counts beside the containers'
    ({"containers": [limited("app", "40Mi")], "initContainers": [limited("side", "30Mi", restartPolicy="Always")]},
     False),
    # an init container's limit is the least the pod gets (with the sidecars started before it)
    ({"containers": [limited("app", "10Mi")], "initContainers": [limited("setup", "100Mi")]}, False),
    ({"containers": [limited("app", "10Mi")], "initContainers": [
        limited("side", "30Mi", restartPolicy="Always"), limited("setup", "40Mi")]}, False),
    ({"containers": [limited("app", "10Mi")], "initContainers": [
        limited("setup", "30Mi"), limited("side", "20Mi", restartPolicy="Always")]}, True),
    # the pod's overhead (RuntimeClass) is added to a limit
    ({"containers": [limited("app", "60Mi")], "overhead": {"ephemeral-storage": "4Mi"}}, False),
    ({"containers": [limited("app", "0")]}, True),
    ({"containers": [limited("app", "lots")]}, False),           # refused by the API server anyway
], ids=["at-size-limit", "none", "large", "summed", "one-unlimited", "sidecar", "init", "init-after-sidecar",
        "init-before-sidecar", "overhead", "zero", "unreadable"])
def test_the_pod_limit_is_added_up_as_the_kubelet_does(spec, short):
    assert bool(pod_level.ephemeral_storage_short(spec, CONFIG)) is short


def toolbox_limited(limit: str) -> GlobalConfig:
    """The configuration with toolbox.resources limiting podmedic's init containers' ephemeral storage."""
    resources = dict(CONFIG.toolbox.resources)
    resources["limits"] = {**(resources.get("limits") or {}), "ephemeral-storage": limit}
    return dataclasses.replace(CONFIG, toolbox=dataclasses.replace(CONFIG.toolbox, resources=resources))


@pytest.mark.parametrize("own, app, short", [("16Mi", None, True), ("100Mi", "40Mi", False), ("16Mi", "80Mi", False)],
                         ids=["makes-a-limit", "raises-the-limit", "below-the-apps"])
def test_podmedics_own_init_containers_count_with_their_configured_limit(own, app, short):
    """toolbox.resources is copied into podmedic's init containers, which the kubelet counts as
    any init container: 16Mi there made a 16Mi limit of a pod that had none, with the 64Mi toolbox
    volume inside it; 100Mi raised a 40Mi pod's limit above the sizeLimit, where it skipped."""
    config = toolbox_limited(own)
    pod = pods.pod(limited("app", app))
    assert bool(pod_level.ephemeral_storage_short(pod["spec"], config)) is short
    ns = Namespace("demo", dict(ALL_ON), {})
    outcome = engine.inject(copy.deepcopy(pod), StaticSource([ns]).get("demo"), config)
    assert skipped(outcome) == (TOOLBOX if short else set())


def test_a_pod_without_an_ephemeral_storage_limit_is_injected_as_before():
    _, outcome = run(pods.pod(limited("app", None)))
    assert not skipped(outcome) and reasons(outcome, "app")["supervisor"] == "injected"
