"""The log claims' watch (logs.backend pvc or auto): each Namespace the source hands out carries
the phase of its PersistentVolumeClaim named logs.claimName, through a list+watch of those claims
only (fieldSelector), against tests/fakekube.py through the official client; and the files of
standalone mode and the offline CLI say the same with PersistentVolumeClaim objects."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.fakekube import FakeKube
from tests.kube.test_namespaces import FAST, ON, local_kubeconfig, wait_for  # noqa: F401  (fixture)
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Lookup
from webhook.kube.namespaces import FileSource, KubeSource, claim_phase, live_lookup

CLAIM = "podmedic-logs"


def pvc(namespace: str, phase: str | None = None, name: str = CLAIM, **meta: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": name, "namespace": namespace, **meta},
                           "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
    if phase:
        obj["status"] = {"phase": phase}
    return obj


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    server = FakeKube().start()
    server.set_namespace("demo", ON, {"pod-security.kubernetes.io/enforce": "restricted"})
    server.set_namespace("other", ON)
    server.apply(pvc("other", "Bound"))
    yield server
    server.stop()


@pytest.fixture
def source(kube: FakeKube) -> Iterator[KubeSource]:
    watched = KubeSource(kube.api_client(), claim=CLAIM, **FAST)
    watched.start()
    wait_for(watched.ready, 5, "first lists")
    yield watched
    watched.stop()


def phase(source: KubeSource | FileSource | Callable[[str], Lookup], namespace: str) -> str | None:
    ns = (source(namespace) if callable(source) else source.get(namespace)).namespace
    assert ns is not None
    return ns.log_claim


def test_the_listed_claims_phase_is_on_its_namespace(source: KubeSource) -> None:
    assert phase(source, "other") == "Bound"
    assert phase(source, "demo") is None  # no claim


def test_claim_events_converge_and_only_the_claims_name_is_watched(kube: FakeKube, source: KubeSource) -> None:
    kube.apply(pvc("demo", name="other-data"))  # another claim: not ours
    kube.apply(pvc("demo"))
    wait_for(lambda: phase(source, "demo") == "Pending", 5, "a new claim without status is Pending")
    kube.apply(pvc("demo", "Bound"))
    wait_for(lambda: phase(source, "demo") == "Bound", 5, "bound")
    kube.apply(pvc("demo", "Bound", deletionTimestamp="2026-12-05T00:00:00Z"))
    wait_for(lambda: phase(source, "demo") == "Terminating", 5, "being deleted")
    kube.delete("PersistentVolumeClaim", CLAIM, "demo")
    wait_for(lambda: phase(source, "demo") is None, 5, "deleted")
    claim_requests = [r for r in kube.requests if r.path == "/api/v1/persistentvolumeclaims"]
    assert claim_requests and all(r.query.get("fieldSelector") == f"metadata.name={CLAIM}" for r in claim_requests)
    assert any(r.watch for r in claim_requests)


def test_a_namespace_event_keeps_its_claims_phase(kube: FakeKube, source: KubeSource) -> None:
    kube.set_namespace("other", {**ON, "podmedic.io/probes": "disabled"})
    wait_for(lambda: (source.get("other").namespace or ON).annotations.get("podmedic.io/probes") == "disabled",
             5, "namespace event")
    assert phase(source, "other") == "Bound"


def test_the_served_object_changes_only_with_its_own_claim(kube: FakeKube, source: KubeSource) -> None:
    """The plan memo keys on the Namespace object: another namespace's claim must not make it
    miss, its own claim's change must."""
    other = source.get("other").namespace
    kube.apply(pvc("demo", "Bound"))
    wait_for(lambda: phase(source, "demo") == "Bound", 5, "demo's claim")
    assert source.get("other").namespace is other
    kube.apply(pvc("other", "Lost"))
    wait_for(lambda: phase(source, "other") == "Lost", 5, "other's claim")
    assert source.get("other").namespace is not other


def test_claims_are_relisted_after_an_expiry(kube: FakeKube, source: KubeSource) -> None:
    kube.drop_watches()
    kube.delete("PersistentVolumeClaim", CLAIM, "other")
    wait_for(lambda: phase(source, "other") is None, source.convergence_bound + 2, "converged after a drop")


def test_without_a_claim_no_claim_is_read(kube: FakeKube) -> None:
    watched = KubeSource(kube.api_client(), **FAST)
    watched.start()
    try:
        wait_for(watched.ready, 5, "first list")
        assert phase(watched, "other") is None
        assert not any("persistentvolumeclaims" in r.path for r in kube.requests)
    finally:
        watched.stop()


def test_not_ready_while_the_claims_cannot_be_listed(kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim list the API refuses (RBAC without persistentvolumeclaims: 403) keeps the source
    unready and every lookup fails closed: never inject with a guessed phase."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(CoreV1Api, "list_persistent_volume_claim_for_all_namespaces", forbidden)
    watched = KubeSource(kube.api_client(), claim=CLAIM, **FAST)
    watched.start()
    try:
        wait_for(lambda: watched._reflectors[0].synced, 5, "namespaces listed")
        assert not watched.ready()
        assert watched.get("other") == Lookup(None, Reason.NAMESPACE_SOURCE_NOT_SYNCED)
    finally:
        watched.stop()


def test_files_carry_claims_too(tmp_path: Path) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n"
        "- {apiVersion: v1, kind: Namespace, metadata: {name: c}}\n"
        f"- {{apiVersion: v1, kind: PersistentVolumeClaim, metadata: {{name: {CLAIM}, namespace: a}}, status: {{phase: Bound}}}}\n"
        f"- {{apiVersion: v1, kind: PersistentVolumeClaim, metadata: {{name: {CLAIM}, namespace: b}}}}\n"
        "- {apiVersion: v1, kind: PersistentVolumeClaim, metadata: {name: data, namespace: c}, status: {phase: Bound}}\n"
    )
    source = FileSource(path, CLAIM)
    assert [phase(source, n) for n in "abc"] == ["Bound", "Pending", None]
    assert [phase(FileSource(path), n) for n in "abc"] == [None, None, None]  # hostPath: claims not read


def test_a_claim_without_namespace_in_a_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text("kind: Namespace\nmetadata: {name: a}\n---\n"
                    f"kind: PersistentVolumeClaim\nmetadata: {{name: {CLAIM}}}\n")
    with pytest.raises(ValueError, match=r"ns.yaml: document 2: a PersistentVolumeClaim without metadata.namespace"):
        FileSource(path, CLAIM)


@pytest.mark.parametrize("obj,expected", [
    (pvc("a", "Bound"), ("a", "Bound")),
    (pvc("a"), ("a", "Pending")),
    (pvc("a", "Lost"), ("a", "Lost")),
    (pvc("a", "Bound", deletionTimestamp="2026-01-01T00:00:00Z"), ("a", "Terminating")),
])
def test_claim_phase(obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert claim_phase(obj) == expected


def test_the_cli_reads_each_claim_once_from_a_live_cluster(kube: FakeKube, tmp_path: Path,
                                                         local_kubeconfig: None) -> None:
    """`podmedic inject|explain --kubeconfig` (live_lookup): the namespace and its claim, read
    once per namespace; no claim read for the hostPath backend."""
    kube.apply(pvc("demo", "Pending"))
    kubeconfig = str(kube.kubeconfig(tmp_path / "kubeconfig"))
    lookup = live_lookup(kubeconfig, CLAIM)
    assert [phase(lookup, n) for n in ("other", "demo")] == ["Bound", "Pending"]
    kube.delete("PersistentVolumeClaim", CLAIM, "demo")
    assert phase(lookup, "demo") == "Pending"  # cached: one read per namespace and run
    assert phase(live_lookup(kubeconfig, CLAIM), "demo") is None
    before = len(kube.requests)
    assert phase(live_lookup(kubeconfig), "other") is None
    assert not any("persistentvolumeclaims" in r.path for r in kube.requests[before:])


def test_explain_offline_with_a_namespaces_file_holding_the_claim(tmp_path: Path) -> None:
    """The offline CLI as the webhook: `auto` in a restricted namespace injects the claim when the
    file says it is Bound, and skips with logs-pvc-missing when the file has none."""
    config = tmp_path / "config.yaml"
    config.write_text("logs: {backend: auto}\n")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a}\n"
                        "spec: {containers: [{name: app, image: x:1, command: [/app]}]}\n")
    namespaces = ("kind: Namespace\nmetadata: {name: a, annotations: {podmedic.io/inject: enabled},"
                  " labels: {pod-security.kubernetes.io/enforce: restricted}}\n")
    for claim, reason in (("", "logs-pvc-missing"),
                          (f"---\nkind: PersistentVolumeClaim\nmetadata: {{name: {CLAIM}, namespace: a}}\n"
                           "status: {phase: Bound}\n", "injected")):
        (tmp_path / "ns.yaml").write_text(namespaces + claim)
        done = subprocess.run([sys.executable, "-m", "webhook.cli", "explain", "-f", str(manifest), "-o", "json",
                               "--namespaces-file", str(tmp_path / "ns.yaml"), "--config", str(config)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        assert [r["reason"] for r in rows if r.get("feature") == "logs"] == [reason], rows
