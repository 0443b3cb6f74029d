"""The LimitRanges' watch: each Namespace the source hands out carries the Container constraints
of its LimitRanges (which podmedic's init containers must fit, webhook.engine.limitrange),
through a list+watch of all LimitRanges against tests/fakekube.py through the official client;
a change replaces the Namespace object (the plan memo misses), no change keeps it (a hit). The
files of standalone mode say the same with LimitRange objects."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.fakekube import FakeKube
# source: test_namespaces' fixture, over this module's kube
from tests.kube.test_namespaces import ON, local_kubeconfig, source, wait_for  # noqa: F401  (fixtures)
from webhook.engine.namespace import Constraint
from webhook.kube.limitranges import limit_range
from webhook.kube.namespaces import FileSource, KubeSource, live_lookup


def lr(namespace: str, name: str = "tenant", **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name, "namespace": namespace},
            "spec": {"limits": [{"type": "Pod", "max": {"cpu": "4"}},
                                {"type": "Container", **container}]}}


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    server = FakeKube().start()
    server.set_namespace("demo", ON)
    server.set_namespace("other", ON)
    server.apply(lr("other", min={"cpu": "50m"}))
    yield server
    server.stop()


def constraints(source: KubeSource, namespace: str) -> list[tuple[str, str, str, str]]:
    ns = source.get(namespace).namespace
    assert ns is not None
    return [(c.kind, c.resource, c.raw, c.limit_range) for c in ns.limit_range]


def test_only_container_constraints_are_read() -> None:
    assert limit_range(lr("demo", min={"cpu": "50m"}, maxLimitRequestRatio={"memory": 2}, default={"cpu": "1"})) == (
        "demo", "tenant", (Constraint("min", "cpu", Fraction(1, 20), "50m", "tenant"),
                           Constraint("maxLimitRequestRatio", "memory", Fraction(2), "2", "tenant"),
                           Constraint("default", "cpu", Fraction(1), "1", "tenant")))


def test_the_listed_limitranges_are_on_their_namespace(source: KubeSource) -> None:
    assert constraints(source, "other") == [("min", "cpu", "50m", "tenant")]
    assert constraints(source, "demo") == []


def test_limitrange_events_converge_and_replace_the_namespace_only_on_change(kube: FakeKube,
                                                                             source: KubeSource) -> None:
    kube.apply(lr("demo", max={"memory": "1Gi"}))
    wait_for(lambda: constraints(source, "demo") == [("max", "memory", "1Gi", "tenant")], 5, "added")
    kube.apply(lr("demo", "second", maxLimitRequestRatio={"cpu": "2"}))
    wait_for(lambda: len(constraints(source, "demo")) == 2, 5, "a second LimitRange")
    served = source.get("demo").namespace
    kube.apply(lr("other", min={"cpu": "60m"}))  # another namespace's change
    wait_for(lambda: constraints(source, "other") == [("min", "cpu", "60m", "tenant")], 5, "modified")
    kube.set_namespace("other", {**ON, "podmedic.io/probes": "disabled"})
    wait_for(lambda: "podmedic.io/probes" in source.get("other").namespace.annotations, 5, "annotated")  # type: ignore[union-attr]
    assert source.get("demo").namespace is served  # the memo's entries for demo stay valid
    assert constraints(source, "other") == [("min", "cpu", "60m", "tenant")]  # kept across namespace events
    kube.delete("LimitRange", "tenant", "demo")
    wait_for(lambda: constraints(source, "demo") == [("maxLimitRequestRatio", "cpu", "2", "second")], 5, "deleted")
    assert source.get("demo").namespace is not served


def test_the_cli_reads_a_namespaces_limitranges(kube: FakeKube, tmp_path: Path, local_kubeconfig: None) -> None:
    lookup = live_lookup(str(kube.kubeconfig(tmp_path / "kubeconfig")))
    ns = lookup("other").namespace
    assert ns is not None and [c.raw for c in ns.limit_range] == ["50m"]


def test_files_carry_limitranges(tmp_path: Path) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text("kind: List\nitems:\n- {kind: Namespace, metadata: {name: demo}}\n"
                    "- {kind: Namespace, metadata: {name: other}}\n"
                    "- {kind: LimitRange, metadata: {name: tenant, namespace: demo},"
                    " spec: {limits: [{type: Container, min: {cpu: 50m}}]}}\n")
    files = FileSource(path)
    assert [c.raw for c in files.get("demo").namespace.limit_range] == ["50m"]  # type: ignore[union-attr]
    assert files.get("other").namespace.limit_range == ()  # type: ignore[union-attr]
