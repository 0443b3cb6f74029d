"""The controller's pass (webhook/quarantine/controller.py) without an API server: which
namespaces it reads. A read (Cluster.view) is about eleven LISTs, so a namespace is read only
when `decide` has something there: a quarantined pod, or a pod that decide.candidate accepts
(quarantine enabled for it, NotReady long enough, never released; or settings that do not parse,
which decide reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client import ApiClient

from tests.quarantine.objects import NOW, PREFIX, Obj, deployment, iso, pod, replicaset, with_
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
    cluster = CountingCluster()
    cache = PodCache(cluster.core)
    cache.replace(pods)
    source = StaticSource([Namespace(name, annotations, {}) for name, annotations in namespaces.items()])
    controller = Controller(load(), cluster, cache, source, Options(), clock=lambda: NOW)
    assert controller.run_pass() == []
    assert cluster.viewed == ["kept", "on", "typo"]
