"""The controller's pass (webhook/quarantine/controller.py) without an API server: which
namespaces it reads. A read (Cluster.view) is about eleven LISTs, so a namespace is read only
when `decide` has something there: a quarantined pod, or a pod that decide.candidate accepts
(quarantine enabled for it, NotReady long enough, never released; or settings that do not parse,
which decide reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
from typing import Any

from kubernetes.client import ApiClient

from tests.quarantine.objects import NOW, PREFIX, Obj, agreed, deployment, iso, pod, replicaset, with_
from webhook.cli.config import load
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource
from webhook.quarantine.cluster import Cluster
from webhook.quarantine.controller import Controller, Options
from webhook.quarantine.decide import NamespaceView
from webhook.quarantine.pods import PodCache

ON = {PREFIX + "quarantine": "enabled"}
RS = replicaset(deployment())


class CountingCluster(Cluster):
    """The real client objects (never called here) with view() recording the namespace and
    failing, so the pass decides nothing and goes on to the next namespace."""

    def __init__(self) -> None:
        super().__init__(ApiClient())
        self.viewed: list[str] = []

    def view(self, namespace: str, annotations: Mapping[str, str], pods: Sequence[Mapping[str, Any]]) -> NamespaceView:
        self.viewed.append(namespace)
        raise ConnectionError("no API server in this test")


def in_ns(namespace: str, obj: Obj) -> Obj:
    return with_(obj, **{"metadata.namespace": namespace})


def make_controller(pods: list[Obj], namespaces: dict[str, dict[str, str]], clock: list[float]) -> tuple[Controller, CountingCluster, PodCache]:
    """A controller over these pods, its clock `clock[0]` (the test moves it)."""
    cluster = CountingCluster()
    cache = PodCache(cluster.core)
    cache.replace(pods)
    source = StaticSource([Namespace(name, annotations, {}) for name, annotations in namespaces.items()])
    return Controller(load(), cluster, cache, source, Options(), clock=lambda: clock[0]), cluster, cache


def test_a_pass_reads_only_the_namespaces_where_decide_has_something_to_do():
    namespaces = {"off": {}, "released": ON, "young": ON, "ready": ON, "on": ON,
                  "typo": {**ON, PREFIX + "quarantine-after": "soon"}, "kept": {}}
    pods = [
        in_ns("off", pod("a", RS)),  # quarantine is off by default
        in_ns("released", pod("b", RS, annotations={PREFIX + "quarantine-released": iso(NOW)})),
        in_ns("young", pod("c", RS, not_ready_for=30)),  # quarantine-after: 2m by default
        in_ns("ready", pod("d", RS, not_ready_for=None)),
        in_ns("on", pod("e", RS)),
        in_ns("typo", pod("f", RS)),  # decide reports the invalid setting
        in_ns("kept", pod("g", RS, labels={PREFIX + "quarantined": "true"})),  # cleanup (expiry) reads it
    ]
    clock = [NOW - 120]  # the first pass sees the NotReady pods; `young` went NotReady after it
    controller, cluster, _ = make_controller(pods, namespaces, clock)
    controller.run_pass()
    cluster.viewed.clear()
    clock[0] = NOW
    assert controller.run_pass() == []
    assert cluster.viewed == ["kept", "on", "typo"]


def test_quarantine_after_is_timed_from_the_pass_that_first_saw_the_pod():
    """The node's clock runs 10 minutes behind: the pod went NotReady just before the first
    pass, its lastTransitionTime says 10 minutes earlier. Its namespace is read only once
    quarantine-after (2m) has passed on the controller's clock."""
    behind = in_ns("on", with_(pod("e", RS), **{"status.conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": iso(NOW - 600)}]}))
    clock = [NOW]
    controller, cluster, cache = make_controller([behind], {"on": ON}, clock)
    for at in (NOW, NOW + 60, NOW + 119):
        clock[0] = at
        controller.run_pass()
        assert cluster.viewed == [], at
    clock[0] = NOW + 120
    controller.run_pass()
    assert cluster.viewed == ["on"]
    assert set(controller.seen) == {"uid-e"}
    cache.apply("MODIFIED", with_(behind, **{"status.conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": iso(NOW + 130)}]}))
    controller.run_pass()
    assert controller.seen == {}  # Ready again: forgotten
    cache.apply("MODIFIED", behind)
    controller.run_pass()
    assert set(controller.seen) == {"uid-e"}
    cache.apply("DELETED", behind)
    controller.run_pass()
    assert controller.seen == {}  # gone: forgotten


def realistic(obj: Obj) -> Obj:
    """A pod as the API server sends it: managedFields, env, volumes, more conditions, node data."""
    fields = {"f:metadata": {f"f:k{i}": {} for i in range(50)}}
    spec = obj["spec"]
    return with_(obj, **{
        "metadata.managedFields": [{"manager": m, "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": fields}
                                   for m in ("kube-controller-manager", "kubelet")],
        "metadata.creationTimestamp": iso(NOW - 4000),
        "spec.containers": [{**c, "env": [{"name": f"V{i}", "value": "x" * 30} for i in range(20)],
                             "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]} for c in spec["containers"]],
        "spec.volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
        "spec.nodeName": "node-1", "spec.tolerations": [{"operator": "Exists"}],
        "status.conditions": [{"type": "PodScheduled", "status": "True"}, *obj["status"]["conditions"]],
        "status.podIP": "10.0.0.7", "status.hostIP": "10.1.0.1",
    })


def test_the_pod_cache_keeps_only_what_decisions_read():
    """Every pod of the cluster is cached: only the fields the controller reads are kept, and
    the decisions and patches on the kept pods are the ones on the full pods."""
    from tests.quarantine.objects import quota
    from webhook.quarantine.decide import Marks, decide
    from webhook.quarantine.patches import quarantine_ops

    api_rs = replicaset(deployment("api", "dep-2"), uid="rs-2")
    init_rs = replicaset(deployment("init", "dep-3"), uid="rs-3")
    ds = {"kind": "DaemonSet", "metadata": {"name": "agent", "uid": "ds-1"},
          "spec": {"selector": {"matchLabels": {"app": "agent"}}}}
    workloads = [deployment(), RS, deployment("api", "dep-2"), api_rs, deployment("init", "dep-3"), init_rs, ds]
    pods = [realistic(p) for p in (
        pod("web-a", RS, resources={"requests": {"cpu": "100m"}},
            annotations={PREFIX + "max-hold": "1200", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}),
        pod("web-b", RS, not_ready_for=None),
        pod("api-a", api_rs, resources={"requests": {"cpu": "2"}}),  # refused by the quota
        pod("bare", not_ready_for=600),
        with_(pod("init-a", init_rs, resources={"requests": {"cpu": "100m"}}),  # refused: its init container
              **{"spec.initContainers": [{"name": "migrate", "image": "m", "resources": {"requests": {"cpu": "2"}}}],
                 "spec.overhead": {"cpu": "10m"}}),
        with_(pod("agent-x", ds, labels={"app": "agent"}),
              **{"spec.containers": [{"name": "app", "ports": [{"containerPort": 9100, "hostPort": 9100}]}]}),
        with_(pod("agent-net", ds, labels={"app": "agent"}), **{"spec.hostNetwork": True}),
        with_(pod("web-old", RS, labels={PREFIX + "quarantined": "true"}),
              **{"metadata.annotations": {PREFIX + "quarantine-owner": "Deployment/gone/dep-9",
                                          PREFIX + "quarantine-expires": iso(NOW - 1)}}),
    )]
    cache = PodCache(CountingCluster().core)
    cache.replace(pods)
    kept = sorted(cache.snapshot(), key=lambda p: p["metadata"]["name"])
    pods.sort(key=lambda p: p["metadata"]["name"])
    assert all("managedFields" not in p["metadata"] and "volumes" not in p["spec"] for p in kept)
    assert len(json.dumps(kept)) * 5 < len(json.dumps(pods))
    config = load()

    def decided(these: list[Obj]) -> list[tuple[Any, ...]]:
        view = NamespaceView("ns", {**ON, PREFIX + "quarantine-daemonset": "enabled"}, these, workloads, quotas=[quota("q", {"requests.cpu": "2"}, {"requests.cpu": "1"})])
        return [(d.name, d.action, d.reason, d.detail, dict(d.remove), d.expires, d.observed,
                 json.dumps(quarantine_ops(d, Marks(config.prefix), NOW)) if d.action.value in ("quarantine", "mark") else "")
                for d in decide(view, config, NOW, agreed(these))]

    assert decided(kept) == decided(pods)
    assert {d[0]: d[2].value for d in decided(kept)} == {
        "web-old": "expired", "web-a": "not-ready", "api-a": "quota-exhausted", "bare": "bare-pod",
        "init-a": "quota-exhausted", "agent-x": "daemonset-host-port",
        "agent-net": "daemonset-host-port"}
