"""The pvc log backend through a real kube-apiserver v1.36 (tests/kubeapi.py) and Pod Security
admission (built in): the webhook, configured with `logs.backend: auto`, watches the log claims
of the real API and injects the claim-backed log directory in namespaces that enforce baseline or
restricted -- and the pods are admitted -- while the hostPath patch it would otherwise make is
rejected there. A missing or unbound claim skips only the log feature, with its warning.

This API server runs no controller-manager, so nothing binds a claim to its PV: the tests set the
claim's status to Bound themselves, as the PV controller would (tests/node binds for real).
A cluster of this module's own: its webhook configuration must not meet the session's.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from tests.conftest import ROOT, start_server, stop_server
from tests.test_integration import PREFIX, Cluster, _created, _pod, register, running_cluster
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine.config import from_mapping
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

pytestmark = pytest.mark.integration

CLAIM = "podmedic-logs"
ENFORCE = "pod-security.kubernetes.io/enforce"
RESTRICTED_APP = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                  "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
ON = {PREFIX + "inject": "enabled", PREFIX + "supervisor": "enabled"}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kube-claims")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def auto_webhook(kube: Cluster, certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("claims-server")
    config = tmp / "config.yaml"
    config.write_text(f"logs:\n  backend: auto\n  claimName: {CLAIM}\n")
    server = start_server(tmp, certs_dir, "--kubeconfig", str(kube.kubeconfig), "--config", str(config))
    register(kube, server, certs_dir)
    yield server
    stop_server(server)


def provision(kube: Cluster, namespace: str, phase: str | None) -> None:
    """`podmedic logs provision`'s PV and claim, created for real; the claim's status set as the PV
    controller would (phase None: no claim at all)."""
    if phase is None:
        return
    done = subprocess.run([sys.executable, "-m", "webhook.cli", "logs", "provision", namespace,
                           "--root", f"/podmedic-logs/{namespace}", "--cluster-id", "ceph-1", "--fs-name", "cephfs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    kube.kubectl("create", "-f", "-", input=done.stdout)
    kube.kubectl("-n", namespace, "patch", "pvc", CLAIM, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {"phase": phase, "accessModes": ["ReadWriteMany"],
                                              "capacity": {"storage": "100Gi"}}}))


def restricted_pod(name: str) -> dict[str, Any]:
    return _pod(name, container={"securityContext": RESTRICTED_APP})


def wait_for_logs(kube: Cluster, namespace: str, present: bool) -> subprocess.CompletedProcess[str]:
    """The webhook learns the claim from its watch: poll a dry run until it shows."""
    deadline = time.monotonic() + 20
    while True:
        done = kube.create_pod(namespace, restricted_pod("probe"), dry_run=True)
        assert done.returncode == 0, done.stderr
        volumes = {v["name"] for v in json.loads(done.stdout)["spec"].get("volumes", [])}
        if (CLAIM in volumes) == present:
            return done
        assert time.monotonic() < deadline, f"the webhook never {'saw' if present else 'lost'} the claim"
        time.sleep(0.2)


@pytest.mark.parametrize("level", ["restricted", "baseline"])
def test_a_bound_claim_is_injected_and_admitted_by_pod_security(kube, auto_webhook, level):
    ns = kube.namespace(ON, {ENFORCE: level})
    provision(kube, ns, "Bound")
    wait_for_logs(kube, ns, present=True)
    done = kube.create_pod(ns, restricted_pod("web"))
    pod = _created(done)
    assert "would violate PodSecurity" not in done.stderr and "Warning" not in done.stderr, done.stderr
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[CLAIM] == {"name": CLAIM, "persistentVolumeClaim": {"claimName": CLAIM}}
    assert not any("hostPath" in v for v in volumes.values())
    app = pod["spec"]["containers"][0]
    mount = next(m for m in app["volumeMounts"] if m["name"] == CLAIM)
    assert mount["subPathExpr"] == f"{ns}_$(PODMEDIC_POD_NAME)_$(PODMEDIC_POD_UID)/app"
    inits = {c["name"]: c for c in pod["spec"]["initContainers"]}
    assert set(inits) == {"podmedic-logdir", "podmedic-toolbox"}
    for c in inits.values():
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0 and sc["allowPrivilegeEscalation"] is False
    annotations = pod["metadata"]["annotations"]
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"] == "podmedic-toolbox,podmedic-state"


def test_the_hostpath_patch_is_rejected_where_restricted_is_enforced(kube, auto_webhook):
    """Why `auto` matters: the same pod with the hostPath backend's patch (the engine's own
    operations, applied here) is refused by Pod Security admission in that namespace."""
    ns = kube.namespace({}, {ENFORCE: "restricted"})  # not opted in: the webhook leaves it alone
    original = restricted_pod("hostpath")
    raw = configfile._embedded()
    hostpath = from_mapping({**raw, "logs": {**raw["logs"], "backend": "hostPath"}})
    # what a hostPath-backend podmedic would do if it ignored the namespace's level
    lookup = StaticSource([Namespace(ns, ON, {})]).get(ns)
    outcome = engine.inject(copy.deepcopy(original), lookup, hostpath)
    patched = jsonpatch.apply_patch(original, outcome.ops)
    assert any("hostPath" in v for v in patched["spec"]["volumes"])
    done = kube.create_pod(ns, patched, dry_run=True)
    assert done.returncode != 0 and 'violates PodSecurity "restricted:latest"' in done.stderr, done.stderr
    assert 'volume "podmedic-logs" uses restricted volume type "hostPath"' in done.stderr, done.stderr
    # and the patch auto makes in that very namespace is admitted
    auto = from_mapping({**raw, "logs": {**raw["logs"], "backend": "auto"}})
    lookup = StaticSource([Namespace(ns, ON, {ENFORCE: "restricted"}, "Bound")]).get(ns)
    claimed = jsonpatch.apply_patch(original, engine.inject(copy.deepcopy(original), lookup, auto).ops)
    ok = kube.create_pod(ns, claimed, dry_run=True)
    assert ok.returncode == 0 and "Warning" not in ok.stderr, ok.stderr


@pytest.mark.parametrize("phase,reason,detail", [(None, "logs-pvc-missing", CLAIM),
                                                 ("Pending", "logs-pvc-unbound", f"{CLAIM}: Pending"),
                                                 ("Lost", "logs-pvc-unbound", f"{CLAIM}: Lost")])
def test_a_missing_or_unbound_claim_skips_the_logs_with_a_warning(kube, auto_webhook, phase, reason, detail):
    ns = kube.namespace(ON, {ENFORCE: "restricted"})
    provision(kube, ns, phase)
    deadline = time.monotonic() + 20
    while True:  # a claim's phase reaches the webhook by its watch
        done = kube.create_pod(ns, restricted_pod("web"), dry_run=True)
        if Reason(reason).text in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    pod = _created(done)
    assert f"Warning: podmedic: container app: logs: {Reason(reason).text} ({detail})" in done.stderr, done.stderr
    assert not any(v["name"] == CLAIM for v in pod["spec"].get("volumes", []))
    assert "readinessProbe" in pod["spec"]["containers"][0]  # the pod let through with the other features
    assert "would violate PodSecurity" not in done.stderr


def test_a_claim_bound_later_is_injected_from_then_on(kube, auto_webhook):
    ns = kube.namespace(ON, {ENFORCE: "restricted"})
    provision(kube, ns, "Pending")
    wait_for_logs(kube, ns, present=False)
    kube.kubectl("-n", ns, "patch", "pvc", CLAIM, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {"phase": "Bound"}}))
    wait_for_logs(kube, ns, present=True)
    kube.kubectl("-n", ns, "delete", "pvc", CLAIM, "--wait=false")
    # the claim protection finalizer keeps it (Terminating) until no pod uses it: no new pods on it
    wait_for_logs(kube, ns, present=False)
