"""`podmedic quarantine` against the real kube-apiserver (tests/kubeapi.py): the controller runs
as a real process with a ServiceAccount token bound only to the shipped ClusterRole and Role
(deploy/base/quarantine.yaml), and what it wrote is read back from the API server. There is no
controller-manager here, so the ReplicaSet and its pods are created by the test and nobody
releases or replaces them: what is proven is that the API server accepts the patches, the
resourceVersion guard, the RBAC (and that it cannot exec), events, expiry, release and leader
election. One test adds the real kube-controller-manager (its deployment and replicaset
controllers, from ../shared/kube-node) so that the ReplicaSet itself releases the pod and
creates the replacement; the node test (tests/node/test_quarantine.py) does it with a held
container on a real kubelet."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import ROOT, free_port
from tests.quarantine.objects import NOW, PREFIX, agreed, iso
from tests import kubeapi
from tests.test_integration import Cluster, cluster, running_cluster  # noqa: F401  (session fixture: the real API server)
from webhook.cli.config import load
from webhook.kube.client import kube_api_client
from webhook.quarantine.cluster import Cluster as Api
from webhook.quarantine.decide import Marks, NamespaceView, decide
from webhook.quarantine.patches import quarantine_ops
from webhook.quarantine.reasons import Action, Reason

pytestmark = pytest.mark.integration

KUBE_NODE = ROOT.parent / "shared" / "kube-node"
SYSTEM = "podmedic-system"
ACCOUNT = "podmedic-quarantine"
LEASE = "podmedic-quarantine"
Obj = dict[str, Any]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def account(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The shipped ServiceAccount and RBAC applied; a kubeconfig with that account's token only."""
    cluster.apply(yaml.safe_load((ROOT / "deploy" / "base" / "namespace.yaml").read_text()))
    rbac = [o for o in yaml.safe_load_all((ROOT / "deploy" / "base" / "quarantine.yaml").read_text())
            if o["kind"] != "Deployment"]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac}))
    token = cluster.kubectl("-n", SYSTEM, "create", "token", ACCOUNT, "--duration=1h").stdout.strip()
    path = tmp_path_factory.mktemp("sa") / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "it", "cluster": {"server": cluster.api.url, "certificate-authority": str(cluster.api.ca)}}],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "it", "user": ACCOUNT}}]}))
    return path


class Controller:
    """One `podmedic quarantine` process; stop() sends SIGTERM (it hands the Lease over)."""

    def __init__(self, kubeconfig: Path, log: Path, identity: str, *extra: str):
        self.log, self.identity = log, identity
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webhook.cli", "quarantine", "--kubeconfig", str(kubeconfig), "--identity", identity,
             "--lease-namespace", SYSTEM, "--interval", "0.5", "--renew-period", "0.5", "--lease-duration", "3", *extra],
            cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)


@pytest.fixture
def controllers(account: Path, tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    started: list[Controller] = []

    def start(identity: str, *extra: str) -> Controller:
        started.append(Controller(account, tmp_path / f"{identity}.log", identity, *extra))
        return started[-1]

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(autouse=True)
def quarantine_disabled_after(cluster: Cluster) -> Iterator[None]:  # noqa: F811
    """The shared API server's namespaces leave quarantine when a test ends. Their NotReady pods
    stay (there is no garbage collector here), and the next test's controller, which watches the
    whole cluster, would act on them too and count them in the counters that test asserts: a
    test's outcome would depend on the tests that ran before it."""
    yield
    items = json.loads(cluster.kubectl("get", "namespaces", "-o", "json").stdout)["items"]
    enabled = [ns["metadata"]["name"] for ns in items
               if (ns["metadata"].get("annotations") or {}).get(PREFIX + "quarantine") == "enabled"]
    if enabled:
        cluster.kubectl("annotate", "--overwrite", "namespace", *enabled, PREFIX + "quarantine=disabled")


class Namespace:
    """A fresh namespace with quarantine enabled (until the test ends: quarantine_disabled_after)
    and (unless `workload` is False) a Deployment `web` whose ReplicaSet the test plays (no
    controller-manager)."""

    def __init__(self, cluster: Cluster, *, workload: bool = True):  # noqa: F811
        self.cluster = cluster
        self.name = cluster.namespace({PREFIX + "quarantine": "enabled", PREFIX + "quarantine-after": "1s"})
        if not workload:
            return
        self.deployment = self.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                                       "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                                "template": {"metadata": {"labels": {"app": "web"}},
                                                             "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
        self.rs = self.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
            "name": "web-h1", "ownerReferences": [self.ref(self.deployment)]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "h1"}},
                     "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "h1"}},
                                  "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})

    @staticmethod
    def ref(owner: Obj) -> Obj:
        return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def create(self, obj: Obj) -> Obj:
        out = self.cluster.kubectl("-n", self.name, "create", "-f", "-", "-o", "json", input=json.dumps(obj)).stdout
        return dict(json.loads(out))

    def pod(self, name: str, owner: Obj | None = None, labels: dict[str, str] | None = None, ready: bool = False,
            volumes: list[Obj] | None = None, **annotations: str) -> Obj:
        """An injected pod (podmedic's marker) of `owner` (default: the ReplicaSet), Running,
        NotReady for an hour unless `ready`, its container running (written through /status)."""
        owner = owner or self.rs
        labels = labels if labels is not None else {"app": "web", "pod-template-hash": "h1"}
        self.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "labels": labels, "ownerReferences": [self.ref(owner)],
            "annotations": {PREFIX + "status": '{"version":2}', **{PREFIX + k: v for k, v in annotations.items()}}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}], "volumes": volumes or []}})
        self.status(name, ready)
        return self.get("pod", name)

    def status(self, name: str, ready: bool) -> None:
        """What a kubelet would report: Running, the container running, Ready or NotReady for an hour."""
        since = iso(time.time() - 3600)
        status = {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": since,
             **({} if ready else {"reason": "ContainersNotReady", "message": "containers with unready status: [app]"})}],
            "containerStatuses": [{"name": "app", "image": "app:1", "imageID": "", "ready": ready, "restartCount": 0,
                                   "started": True, "state": {"running": {"startedAt": since}}}]}}
        self.cluster.kubectl("-n", self.name, "patch", "pod", name, "--subresource=status", "--type=merge",
                             "-p", json.dumps(status))

    def get(self, kind: str, name: str) -> Obj:
        done = self.cluster.kubectl("-n", self.name, "get", kind, name, "-o", "json", check=False)
        return dict(json.loads(done.stdout)) if done.returncode == 0 else {}

    def events(self, name: str, reason: str) -> list[Obj]:
        out = self.cluster.kubectl("-n", self.name, "get", "events", "-o", "json").stdout
        return [e for e in json.loads(out)["items"]
                if e["involvedObject"]["name"] == name and e["reason"] == reason]

    def quarantined(self, name: str) -> Obj:
        pod = self.get("pod", name)
        return pod if (pod.get("metadata", {}).get("labels") or {}).get(PREFIX + "quarantined") == "true" else {}


def test_the_controller_quarantines_skips_expires_and_release_restores(cluster, controllers, certs_dir):  # noqa: F811
    ns = Namespace(cluster)
    ns.pod("web-ready", ready=True)
    ns.pod("web-a", **{"quarantine-expiry": "1h"})
    port = free_port()
    controller = controllers("solo", "--metrics-bind", f"127.0.0.1:{port}", "--tls-cert-file",
                             str(certs_dir / "tls.crt"), "--tls-private-key-file", str(certs_dir / "tls.key"))
    pod = wait_for("web-a quarantined", lambda: ns.quarantined("web-a"))
    meta = pod["metadata"]
    assert meta["labels"] == {PREFIX + "quarantined": "true"}
    annotations = meta["annotations"]
    assert annotations[PREFIX + "quarantine-owner"] == f"Deployment/web/{ns.deployment['metadata']['uid']}"
    assert annotations[PREFIX + "quarantine-reason"] == "not-ready"
    assert annotations[PREFIX + "quarantine-observed"] == "containers with unready status: [app]"
    assert json.loads(annotations[PREFIX + "quarantine-saved"])["labels"] == {"app": "web", "pod-template-hash": "h1"}
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"
    assert ns.get("pod", "web-ready")["metadata"]["labels"] == {"app": "web", "pod-template-hash": "h1"}
    assert len(wait_for("Quarantined on the pod", lambda: ns.events("web-a", "Quarantined"))) == 1
    (on_owner,) = wait_for("Quarantined on the Deployment", lambda: ns.events("web", "Quarantined"))
    assert on_owner["involvedObject"]["kind"] == "Deployment" and "pod web-a" in on_owner["message"]

    # the replacement of the same template, NotReady too: skipped with its reason, once
    ns.pod("web-b")
    (skip,) = wait_for("QuarantineSkipped on web-b", lambda: ns.events("web-b", "QuarantineSkipped"))
    assert skip["type"] == "Warning" and skip["message"].startswith("same-template:")
    # a StatefulSet's pod: skipped, never relabelled
    sts = ns.create({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                     "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                              "template": {"metadata": {"labels": {"app": "db"}},
                                           "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}})
    ns.pod("db-0", sts, labels={"app": "db"})
    (skip,) = wait_for("QuarantineSkipped on db-0", lambda: ns.events("db-0", "QuarantineSkipped"))
    assert skip["message"].startswith("statefulset:")
    time.sleep(2)  # several passes: reported once, nothing changed
    assert len(ns.events("web-b", "QuarantineSkipped")) == 1 and not ns.quarantined("web-b")
    assert ns.get("pod", "db-0")["metadata"]["labels"] == {"app": "db"}

    metrics = requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(certs_dir / "ca.crt"), timeout=5).text
    assert 'podmedic_quarantine_decisions_total{action="quarantine",reason="not-ready"} 1.0' in metrics
    assert 'podmedic_quarantine_decisions_total{action="skip",reason="same-template"} 1.0' in metrics
    assert "podmedic_quarantine_leader 1.0" in metrics

    # release (the real CLI, as a person with their own credentials): labels back, left alone
    done = subprocess.run([sys.executable, "-m", "webhook.cli", "quarantine", "release", "web-a", "-n", ns.name,
                           "--kubeconfig", str(cluster.kubeconfig)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "scales the surplus down" in done.stdout
    released = ns.get("pod", "web-a")["metadata"]
    assert released["labels"] == {"app": "web", "pod-template-hash": "h1"}
    assert {k for k in released["annotations"] if "quarantine" in k} == {
        PREFIX + "quarantine-released", PREFIX + "quarantine-expiry"}  # the pod's own setting stays
    assert "cluster-autoscaler.kubernetes.io/safe-to-evict" not in released["annotations"]
    assert ns.events("web-a", "Released") and ns.events("web", "Released")
    time.sleep(2)
    assert not ns.quarantined("web-a"), "a released pod is never quarantined again"

    # the template is free again: the waiting replacement is quarantined now
    wait_for("web-b quarantined", lambda: ns.quarantined("web-b"))

    # expiry: a pod of another workload with a 2 s expiry is quarantined, then deleted
    api = ns.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "api-h2"},
                     "spec": {"selector": {"matchLabels": {"app": "api"}},
                              "template": {"metadata": {"labels": {"app": "api"}},
                                           "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
    ns.pod("api-a", api, labels={"app": "api"}, **{"quarantine-expiry": "2s"})
    wait_for("api-a quarantined", lambda: ns.quarantined("api-a"))
    wait_for("api-a deleted at its expiry", lambda: not ns.get("pod", "api-a"), timeout=30)
    (expired,) = wait_for("Expired on api-a", lambda: ns.events("api-a", "Expired"))
    assert expired["message"].startswith("expired:")

    # the workload is gone (no garbage collector here: the Deployment alone is deleted)
    cluster.kubectl("-n", ns.name, "delete", "deployment", "web", "--wait=false")
    wait_for("web-b deleted: its owner is gone", lambda: not ns.get("pod", "web-b"), timeout=30)
    (gone,) = wait_for("Expired on web-b", lambda: ns.events("web-b", "Expired"))
    assert gone["message"].startswith("owner-gone:")
    assert "Traceback" not in controller.text()


def test_quarantine_after_is_timed_on_the_controllers_clock_not_the_nodes(cluster, controllers):  # noqa: F811
    """The pod's lastTransitionTime says NotReady for an hour (a node clock an hour behind, or
    a controller that just started): the controller quarantines it only after seeing it
    NotReady for quarantine-after (4 s) itself, not at its first pass."""
    ns = Namespace(cluster)
    ns.pod("web-a", **{"quarantine-after": "4s"})
    started = time.monotonic()
    controller = controllers("own-clock")
    wait_for("web-a quarantined", lambda: ns.quarantined("web-a"))
    assert time.monotonic() - started >= 4.0, "quarantined on the node's clock"
    assert "Traceback" not in controller.text()


def test_the_preflight_reads_pdbs_and_network_policies_and_the_shipped_policy_unblocks(cluster, controllers):  # noqa: F811
    """With the controller's own RBAC: a PDB that would still select the relabelled pod, then a
    NetworkPolicy whose isolation would be lost, each skip the pod with its reason; the shipped
    podmedic-quarantine NetworkPolicy (accepted by the API server) lets the quarantine go ahead."""
    ns = Namespace(cluster)
    labels = {"app": "web", "pod-template-hash": "h1", "tier": "frontend"}  # `tier` is in no owner's selector
    ns.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "frontend"},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": {"tier": "frontend"}}}})
    ns.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-ingress"},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}})
    ns.pod("web-a", labels=labels)
    controllers("preflight")
    (skip,) = wait_for("the PDB skip", lambda: ns.events("web-a", "QuarantineSkipped"))
    assert skip["message"].startswith("pdb-selects:") and "PodDisruptionBudget frontend" in skip["message"]
    cluster.kubectl("-n", ns.name, "delete", "pdb", "frontend")
    isolation = wait_for("the NetworkPolicy skip", lambda: [
        e for e in ns.events("web-a", "QuarantineSkipped") if e["message"].startswith("isolation-lost:")])
    assert "Ingress isolation" in isolation[0]["message"] and not ns.quarantined("web-a")
    cluster.kubectl("-n", ns.name, "apply", "-f", str(ROOT / "deploy" / "quarantine" / "networkpolicy.yaml"))
    pod = wait_for("web-a quarantined once isolated", lambda: ns.quarantined("web-a"))
    assert pod["metadata"]["labels"] == {"tier": "frontend", PREFIX + "quarantined": "true"}


def test_without_kubeconfig_or_its_variable_the_cli_reads_kubectls_default_file(cluster, tmp_path):  # noqa: F811
    """kubectl's order: with neither --kubeconfig nor KUBECONFIG, ~/.kube/config. The runbook's
    `podmedic quarantine list` (and `make deploy`'s `certs install`) failed for a user who relies on
    that file, wanting the in-cluster configuration of a pod."""
    ns = Namespace(cluster)
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(Path(cluster.kubeconfig).read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    done = subprocess.run([sys.executable, "-m", "webhook.cli", "quarantine", "list", "-n", ns.name, "-o", "json"],
                          cwd=ROOT, env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout) == [], (done.stdout, done.stderr)


def test_the_controller_account_cannot_exec_or_read_secrets(cluster, account):  # noqa: F811
    ns = Namespace(cluster)
    ns.pod("web-a")
    env = {"KUBECONFIG": str(account)}
    done = cluster.kubectl("--kubeconfig", str(account), "-n", ns.name, "exec", "web-a", "--", "true", check=False)
    assert done.returncode != 0 and "forbidden" in done.stderr.lower(), done.stderr
    for verb, resource in (("create", "pods/exec"), ("get", "secrets"), ("get", "pods"), ("create", "pods"),
                           ("update", "deployments.apps"), ("delete", "replicasets.apps"), ("create", "pods/eviction"),
                           ("get", "persistentvolumeclaims"), ("watch", "persistentvolumeclaims")):
        can = cluster.kubectl("--kubeconfig", str(account), "-n", ns.name, "auth", "can-i", verb, resource, check=False)
        assert can.stdout.strip() == "no", (verb, resource, can.stdout, env)
    for verb, resource in (("patch", "pods"), ("list", "persistentvolumeclaims")):
        can = cluster.kubectl("--kubeconfig", str(account), "-n", ns.name, "auth", "can-i", verb, resource, check=False)
        assert can.stdout.strip() == "yes", (verb, resource, can.stdout)


def test_a_pod_using_a_read_write_once_pod_claim_is_skipped(cluster, controllers):  # noqa: F811
    """The claims are listed with the controller's own RBAC and the pod cache keeps the claim
    volumes: a pod using a ReadWriteOncePod claim (its replacement would stay Pending) is skipped
    with exclusive-volume, and never relabelled."""
    ns = Namespace(cluster)
    ns.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOncePod"], "resources": {"requests": {"storage": "1Gi"}}}})
    ns.pod("web-a", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])
    controller = controllers("claims")
    (skip,) = wait_for("QuarantineSkipped on web-a", lambda: ns.events("web-a", "QuarantineSkipped"))
    assert skip["message"].startswith("exclusive-volume:"), skip["message"]
    assert "PersistentVolumeClaim data: ReadWriteOncePod" in skip["message"]
    assert not ns.quarantined("web-a") and "Traceback" not in controller.text()


def test_a_patch_on_a_changed_pod_conflicts_and_loses_nothing(cluster):  # noqa: F811
    """The resourceVersion guard, through the API server: the decision was made on an old pod."""
    ns = Namespace(cluster)
    stale = ns.pod("web-a")
    config = load()
    (decision,) = decide(NamespaceView(ns.name, {PREFIX + "quarantine": "enabled"}, [stale],
                                       [{**ns.deployment}, {**ns.rs}]), config, time.time(), agreed([stale]))
    ops = quarantine_ops(decision, Marks(config.prefix), time.time())
    cluster.kubectl("-n", ns.name, "label", "pod", "web-a", "team=a")  # someone changes the pod meanwhile
    api = Api(kube_api_client(str(cluster.kubeconfig)))
    with pytest.raises(Exception) as conflict:
        api.patch_pod(stale, ops)
    assert getattr(conflict.value, "status", None) == 409
    assert ns.get("pod", "web-a")["metadata"]["labels"] == {"app": "web", "pod-template-hash": "h1", "team": "a"}
    fresh = ns.get("pod", "web-a")
    (decision,) = decide(NamespaceView(ns.name, {PREFIX + "quarantine": "enabled"}, [fresh],
                                       [ns.deployment, ns.rs]), config, time.time(), agreed([fresh]))
    ops = quarantine_ops(decision, Marks(config.prefix), time.time())
    patched = api.patch_pod(fresh, ops)
    assert patched["metadata"]["labels"] == {"team": "a", PREFIX + "quarantined": "true"}
    with pytest.raises(Exception) as twice:  # the same decision again: never twice
        api.patch_pod(fresh, ops)
    # 422: its `remove` of a label already gone fails before the resourceVersion is compared
    assert getattr(twice.value, "status", None) in (409, 422)
    assert ns.get("pod", "web-a")["metadata"]["labels"] == {"team": "a", PREFIX + "quarantined": "true"}


def test_the_kubelets_latest_readiness_failure_names_the_reason(cluster, account):  # noqa: F811
    """The Unhealthy events the kubelet records, read with the controller's own RBAC: the latest
    readiness-probe failure of each pod is what decide sees, and the supervisor's hold message in
    it makes the reason `held`; a plain failure (or an older hold) gives `not-ready`."""
    ns = Namespace(cluster)
    held, plain = ns.pod("web-held"), ns.pod("web-plain")
    hold = "Readiness probe failed: podmedic: held since 2026-12-05T04:00:00Z (FATAL, last exit 3)"
    refused = 'Readiness probe failed: Get "http://10.0.0.7:8080/ready": dial tcp: connection refused'

    def unhealthy(pod: Obj, message: str, age: float) -> None:
        when = iso(time.time() - age)
        meta = pod["metadata"]
        ns.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{meta['name']}.{int(age)}"},
                   "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": ns.name,
                                      "uid": meta["uid"], "fieldPath": "spec.containers{app}"},
                   "reason": "Unhealthy", "message": message, "type": "Warning", "source": {"component": "kubelet"},
                   "firstTimestamp": when, "lastTimestamp": when, "count": 1})

    unhealthy(held, refused, 600)
    unhealthy(held, hold, 60)
    unhealthy(plain, hold, 600)
    unhealthy(plain, refused, 60)
    api = Api(kube_api_client(str(account)))
    assert api.readiness_failures(ns.name) == {held["metadata"]["uid"]: hold, plain["metadata"]["uid"]: refused}
    config = load()
    for pod, reason in ((held, Reason.HELD), (plain, Reason.NOT_READY)):
        (decision,) = decide(api.view(ns.name, {PREFIX + "quarantine": "enabled"}, [pod]), config, time.time(),
                             agreed([pod]))
        assert (decision.action, decision.reason) == (Action.QUARANTINE, reason), decision.describe()


def test_two_instances_one_leader_and_a_takeover_does_nothing_twice(cluster, controllers):  # noqa: F811
    ns = Namespace(cluster)

    def holder() -> str:
        done = cluster.kubectl("-n", SYSTEM, "get", "lease", LEASE, "-o", "json", check=False)
        return str(json.loads(done.stdout)["spec"].get("holderIdentity") or "") if done.returncode == 0 else ""

    first = controllers("replica-1")
    second = controllers("replica-2")
    leader_name = wait_for("a leader", lambda: holder() in ("replica-1", "replica-2") and holder())
    leader, follower = (first, second) if leader_name == "replica-1" else (second, first)
    ns.pod("web-a")
    wait_for("web-a quarantined", lambda: ns.quarantined("web-a"))
    time.sleep(2)
    assert len(ns.events("web-a", "Quarantined")) == 1
    assert "now leads" in leader.text() and "now leads" not in follower.text()

    leader.stop(signal.SIGKILL)  # no hand-over: the follower waits out the lease (3 s) on its own clock
    killed_at = time.monotonic()
    wait_for("the follower to lead", lambda: holder() == follower.identity, timeout=20)
    assert time.monotonic() - killed_at >= 2.0, "took the lease over before it expired"
    other = ns.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "api-h2"},
                       "spec": {"selector": {"matchLabels": {"app": "api"}},
                                "template": {"metadata": {"labels": {"app": "api"}},
                                             "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
    ns.pod("api-a", other, labels={"app": "api"})
    wait_for("api-a quarantined by the new leader", lambda: ns.quarantined("api-a"))
    time.sleep(2)
    assert len(ns.events("web-a", "Quarantined")) == 1, "the new leader redid the old leader's work"
    assert len(ns.events("api-a", "Quarantined")) == 1
    follower.stop()  # SIGTERM: the Lease is handed over at once, not left to expire
    assert holder() == ""


def test_dry_run_logs_the_patch_and_writes_nothing(cluster, controllers):  # noqa: F811
    ns = Namespace(cluster)
    ns.pod("web-a")
    controller = controllers("dry", "--dry-run")
    line = wait_for("the dry-run line", lambda: next(
        (ln for ln in controller.text().splitlines() if f"dry-run: would quarantine pod {ns.name}/web-a" in ln), None))
    assert '"op": "remove", "path": "/metadata/labels/app"' in line
    time.sleep(1.5)
    assert ns.get("pod", "web-a")["metadata"]["labels"] == {"app": "web", "pod-template-hash": "h1"}
    assert not ns.events("web-a", "Quarantined") and not ns.events("web", "Quarantined")


def test_an_api_server_outage_never_quarantines_twice_and_the_controller_recovers(tmp_path):
    """An API server of this test's own is stopped and started again under a running controller
    (admin credentials here: the RBAC is proven above)."""
    with running_cluster(tmp_path / "kube") as own:
        own.apply(yaml.safe_load((ROOT / "deploy" / "base" / "namespace.yaml").read_text()))
        ns = Namespace(own)
        ns.pod("web-a")
        controller = Controller(own.kubeconfig, tmp_path / "controller.log", "survivor")
        try:
            wait_for("web-a quarantined", lambda: ns.quarantined("web-a"))
            before = ns.get("pod", "web-a")["metadata"]
            port = own.api.port
            kubeapi.stop(own.api, wipe=False)
            time.sleep(5)  # passes fail, the lease cannot be renewed and runs out
            assert controller.process.poll() is None, controller.text()[-2000:]
            own.api = kubeapi.start(own.state, port)
            other = ns.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "api-h2"},
                               "spec": {"selector": {"matchLabels": {"app": "api"}},
                                        "template": {"metadata": {"labels": {"app": "api"}},
                                                     "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
            ns.pod("api-a", other, labels={"app": "api"})
            wait_for("api-a quarantined after the outage", lambda: ns.quarantined("api-a"), timeout=60)
            time.sleep(2)
            after = ns.get("pod", "web-a")["metadata"]
            assert (after["labels"], after["annotations"]) == (before["labels"], before["annotations"])
            assert len(ns.events("web-a", "Quarantined")) == 1
            assert "Traceback" not in controller.text()
        finally:
            controller.stop()


# -- with the real ReplicaSet controller ------------------------------------------------------------

def controller_manager_binary() -> Path:
    """kube-controller-manager v1.36.2 from ../shared/kube-node (xz), unpacked once into build/
    and checked against its SHA256SUMS."""
    packed = KUBE_NODE / "bin" / "kube-controller-manager.xz"
    if not packed.exists():
        pytest.skip(f"no kube-controller-manager: {packed} is missing (../shared/kube-node)")
    sums = dict(line.split()[::-1] for line in (KUBE_NODE / "SHA256SUMS").read_text().splitlines() if line.strip())
    target = ROOT / "build" / "kube-node-bin" / sums["kube-controller-manager"][:12] / "kube-controller-manager"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with partial.open("wb") as out:
            subprocess.run(["xz", "-dc", str(packed)], stdout=out, check=True, timeout=120)
        assert hashlib.sha256(partial.read_bytes()).hexdigest() == sums["kube-controller-manager"]
        partial.chmod(0o755)
        partial.rename(target)
    return target


@pytest.fixture
def controller_manager(cluster: Cluster, tmp_path: Path) -> Iterator[None]:  # noqa: F811
    """The deployment and replicaset controllers, for this test only (other tests play the
    ReplicaSet themselves)."""
    binary = controller_manager_binary()
    log = tmp_path / "kcm.log"
    process = subprocess.Popen([str(binary), "--kubeconfig", str(cluster.kubeconfig), "--controllers",
                                "deployment,replicaset", "--leader-elect=false", "--secure-port=0",
                                "--use-service-account-credentials=false"],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=20)


def owned_by(pod: Obj, uid: str) -> bool:
    return any(r["uid"] == uid for r in pod["metadata"].get("ownerReferences") or [])


def test_the_replicaset_releases_the_kept_pod_and_replaces_it(cluster, controllers, controller_manager):  # noqa: F811
    """The issue's scenario: a Deployment of 2, one pod NotReady (through /status) longer than
    quarantine-after -> exactly one pod quarantined, the ReplicaSet back at 2 owned pods, the
    quarantined pod kept with its labels saved; the replacement NotReady too -> not quarantined."""
    ns = Namespace(cluster, workload=False)
    template = {"metadata": {"labels": {"app": "web"}, "annotations": {PREFIX + "status": '{"version":2}'}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    ns.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}})

    def replica_set() -> Obj:
        out = json.loads(cluster.kubectl("-n", ns.name, "get", "rs", "-o", "json").stdout)["items"]
        return dict(out[0]) if out else {}

    rs = wait_for("the Deployment's ReplicaSet", replica_set)

    def owned() -> list[Obj]:
        out = json.loads(cluster.kubectl("-n", ns.name, "get", "pods", "-o", "json").stdout)["items"]
        return [p for p in out if owned_by(p, rs["metadata"]["uid"])]

    first, second = wait_for("the ReplicaSet's 2 pods", lambda: len(owned()) == 2 and owned())
    ns.status(first["metadata"]["name"], ready=False)
    ns.status(second["metadata"]["name"], ready=True)
    controllers("with-kcm")
    broken = first["metadata"]["name"]
    kept = wait_for("the NotReady pod quarantined", lambda: ns.quarantined(broken))
    assert json.loads(kept["metadata"]["annotations"][PREFIX + "quarantine-saved"])["labels"] == {
        "app": "web", "pod-template-hash": rs["metadata"]["labels"]["pod-template-hash"]}
    wait_for("the ReplicaSet to release it", lambda: not ns.get("pod", broken)["metadata"].get("ownerReferences"))
    pods = wait_for("the ReplicaSet back at 2 owned pods", lambda: len(owned()) == 2 and owned())
    (replacement,) = [p for p in pods if p["metadata"]["name"] != second["metadata"]["name"]]
    assert ns.quarantined(broken), "the kept pod stays"
    ns.status(replacement["metadata"]["name"], ready=False)
    (skip,) = wait_for("the replacement skipped", lambda: ns.events(replacement["metadata"]["name"], "QuarantineSkipped"))
    assert skip["message"].startswith("same-template:")
    assert len(owned()) == 2 and not ns.quarantined(replacement["metadata"]["name"])
    quarantined = json.loads(cluster.kubectl("-n", ns.name, "get", "pods", "-l", f"{PREFIX}quarantined=true",
                                             "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in quarantined] == [broken]


# -- the CLI --------------------------------------------------------------------------------------

def cli(cluster: Cluster, *args: str, plugin: bool = False) -> subprocess.CompletedProcess[str]:  # noqa: F811
    """`podmedic quarantine ...`, or the same through kubectl's plugin mechanism (`kubectl
    podmedic ...` finds the package's `kubectl-podmedic` console script on PATH)."""
    env = {**cluster.env, "PATH": f"{Path(sys.executable).parent}:{cluster.env.get('PATH', '')}"}
    argv = ([cluster.api.kubectl, "podmedic"] if plugin else [sys.executable, "-m", "webhook.cli"]) + ["quarantine", *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_list_release_and_delete_from_the_command_line_and_as_kubectl_plugin(cluster):  # noqa: F811
    ns = Namespace(cluster)
    config = load()
    for name in ("web-a", "web-b"):
        ns.pod(name)
    pods = [ns.get("pod", "web-a"), ns.get("pod", "web-b")]
    (first, _) = decide(NamespaceView(ns.name, {PREFIX + "quarantine": "enabled"}, pods, [ns.deployment, ns.rs]),
                        config, time.time(), agreed(pods))
    Api(kube_api_client(str(cluster.kubeconfig))).patch_pod(first.pod, quarantine_ops(first, Marks(config.prefix), time.time()))

    table = cli(cluster, "list", "-n", ns.name, plugin=True)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "POD", "OWNER", "SINCE", "EXPIRES", "REASON"]
    assert row.split()[:3] == [ns.name, "web-a", "Deployment/web"] and row.split()[-1] == "not-ready"
    everywhere = json.loads(cli(cluster, "list", "-o", "json").stdout)
    assert [r["pod"] for r in everywhere if r["namespace"] == ns.name] == ["web-a"]
    (listed,) = json.loads(cli(cluster, "list", "-n", ns.name, "-o", "json").stdout)
    assert listed["pod"] == "web-a" and listed["observed"] == "containers with unready status: [app]"

    for action in ("release", "delete"):
        refused = cli(cluster, action, "web-b", "-n", ns.name)
        assert refused.returncode == 1 and "is not quarantined" in refused.stderr, refused.stderr
        missing = cli(cluster, action, "nosuch", "-n", ns.name)
        assert missing.returncode == 1 and "nosuch: not found" in missing.stderr, missing.stderr
        assert "Traceback" not in refused.stderr + missing.stderr
    assert ns.get("pod", "web-b")
    deleted = cli(cluster, "delete", "web-a", "-n", ns.name, plugin=True)
    assert deleted.returncode == 0 and f"deleted {ns.name}/web-a" in deleted.stdout, deleted.stderr
    assert not ns.get("pod", "web-a")
    unusable = cli(cluster, "list", "--kubeconfig", str(ns.cluster.state / "no-such-kubeconfig"))
    assert unusable.returncode == 1 and "cannot use the kubeconfig" in unusable.stderr
    assert "Traceback" not in unusable.stderr


class SlowReads(Api):
    """The real Lease API (the controller's elector renews through it) with slow namespace reads
    and recorded writes: ten namespaces, each with one pod to quarantine, `view` as slow as a
    real read's eleven LISTs may be (`before_view` runs first, e.g. to have another replica take
    the Lease)."""

    NAMESPACES = [f"ns{i:02d}" for i in range(10)]

    def __init__(self, cluster: Cluster, read_seconds: float, before_view: Callable[[str], None] = lambda ns: None):  # noqa: F811
        from tests.quarantine.objects import deployment, pod, replicaset, with_

        super().__init__(kube_api_client(str(cluster.kubeconfig)))
        self.read_seconds, self.before_view = read_seconds, before_view
        self.workloads = [deployment(), replicaset(deployment())]
        self.pods = [with_(pod("web-a", self.workloads[1]), **{"metadata.namespace": ns, "metadata.uid": ns})
                     for ns in self.NAMESPACES]
        self.acted: list[str] = []

    def view(self, namespace: str, annotations: Any, pods: Any) -> NamespaceView:
        self.before_view(namespace)
        time.sleep(self.read_seconds)
        return NamespaceView(namespace, annotations, pods, self.workloads)

    def patch_pod(self, pod: Any, ops: Any) -> Obj:
        self.acted.append(pod["metadata"]["namespace"])
        return {}

    def event(self, *args: Any, **kwargs: Any) -> None:
        pass


def slow_controller(cluster: Cluster, api: SlowReads, renew_seconds: float) -> Any:  # noqa: F811
    from webhook.engine.namespace import Namespace as Ns
    from webhook.kube.namespaces import StaticSource
    from webhook.quarantine.controller import Controller as Ctl, Options
    from webhook.quarantine.pods import PodCache

    cache = PodCache(api.core)
    cache.replace(api.pods)
    source = StaticSource([Ns(ns, {PREFIX + "quarantine": "enabled"}, {}) for ns in api.NAMESPACES])
    options = Options(lease_namespace=cluster.namespace({}), lease_name="slow", identity="me", lease_seconds=2,
                      renew_seconds=renew_seconds)
    clock = [NOW - 120]  # a first pass sees the pods go NotReady (quarantine-after: 2m); it reads nothing
    controller = Ctl(load(), api, cache, source, options, clock=lambda: clock[0])
    assert controller.elector.try_acquire_or_renew()
    controller.run_pass()
    assert not api.acted
    clock[0] = NOW
    return controller


def test_a_pass_longer_than_the_lease_renews_it_and_reaches_every_namespace(cluster):  # noqa: F811
    """Ten reads of 0.3 s: three seconds, longer than the 2 s lease. The pass renews the Lease
    between namespaces, so it never stops and the last namespaces are decided too."""
    api = SlowReads(cluster, read_seconds=0.3)
    controller = slow_controller(cluster, api, renew_seconds=0.5)
    controller.run_pass()
    assert api.acted == api.NAMESPACES


def test_a_pass_stopped_by_a_lost_lease_resumes_where_it_stopped(cluster):  # noqa: F811
    """Another replica takes the Lease while ns03 is read: the pass stops before acting there;
    once the Lease is back, the next pass starts at ns03, not at ns00 again."""
    admin = kube_api_client(str(cluster.kubeconfig))
    from kubernetes.client import CoordinationV1Api

    leases = CoordinationV1Api(admin)
    controller: Any = None

    def set_holder(holder: str | None) -> None:
        lease = leases.read_namespaced_lease("slow", controller.options.lease_namespace)
        lease.spec.holder_identity = holder
        leases.replace_namespaced_lease("slow", controller.options.lease_namespace, lease)

    api = SlowReads(cluster, read_seconds=0.3, before_view=lambda ns: set_holder("other") if ns == "ns03" else None)
    controller = slow_controller(cluster, api, renew_seconds=0.2)
    controller.run_pass()
    assert api.acted == ["ns00", "ns01", "ns02"]
    set_holder(None)  # the other replica hands the Lease over
    api.acted.clear()
    api.before_view = lambda ns: None
    assert controller.elector.try_acquire_or_renew()
    controller.run_pass()
    assert api.acted == api.NAMESPACES[3:] + api.NAMESPACES[:3]


def test_quarantining_a_pod_already_relabelled_is_a_conflict_not_an_error(cluster):  # noqa: F811
    """The watch cache lags: the pod it shows was quarantined meanwhile. The patch's `remove` of a
    label already gone makes the API server answer 422 (before the resourceVersion is compared);
    the controller counts and logs that as a conflict, as it does a 409, and writes nothing."""
    from prometheus_client import REGISTRY

    from webhook.engine.namespace import Namespace as Ns
    from webhook.kube.namespaces import StaticSource
    from webhook.quarantine.controller import Controller as Ctl, Options
    from webhook.quarantine.pods import PodCache

    ns = Namespace(cluster)
    stale = ns.pod("web-a")
    api = Api(kube_api_client(str(cluster.kubeconfig)))
    config = load()
    (decision,) = decide(NamespaceView(ns.name, {PREFIX + "quarantine": "enabled"}, [stale],
                                       [ns.deployment, ns.rs]), config, time.time(), agreed([stale]))
    api.patch_pod(stale, quarantine_ops(decision, Marks(config.prefix), time.time()))  # another pass did it
    controller = Ctl(config, api, PodCache(api.core), StaticSource([Ns(ns.name, {}, {})]), Options())

    def failures(kind: str) -> float:
        return REGISTRY.get_sample_value("podmedic_quarantine_failures_total",
                                         {"action": "quarantine", "kind": kind}) or 0.0

    before = failures("conflict"), failures("error")
    controller.act(decision, time.time())
    assert (failures("conflict"), failures("error")) == (before[0] + 1, before[1])
    assert ns.get("pod", "web-a")["metadata"]["labels"] == {PREFIX + "quarantined": "true"}


def test_a_quarantine_patch_the_api_server_finds_invalid_is_an_error_not_a_conflict(cluster, caplog):  # noqa: F811
    """A 422 that names its causes is no stale pod: the pod's annotations are nearly at the
    API server's 256 KiB limit, the quarantine annotations push them past it. That is an error,
    logged as a WARNING, though the patch has `remove` ops as every quarantine patch does."""
    import logging

    from prometheus_client import REGISTRY

    from webhook.engine.namespace import Namespace as Ns
    from webhook.kube.namespaces import StaticSource
    from webhook.quarantine.controller import Controller as Ctl, Options
    from webhook.quarantine.pods import PodCache

    ns = Namespace(cluster)
    pod = ns.pod("web-a", filler="y" * (262144 - 400))
    api = Api(kube_api_client(str(cluster.kubeconfig)))
    config = load()
    (decision,) = decide(NamespaceView(ns.name, {PREFIX + "quarantine": "enabled"}, [pod],
                                       [ns.deployment, ns.rs]), config, time.time(), agreed([pod]))
    assert any(op["op"] == "remove" for op in quarantine_ops(decision, Marks(config.prefix), time.time()))
    controller = Ctl(config, api, PodCache(api.core), StaticSource([Ns(ns.name, {}, {})]), Options())

    def failures(kind: str) -> float:
        return REGISTRY.get_sample_value("podmedic_quarantine_failures_total",
                                         {"action": "quarantine", "kind": kind}) or 0.0

    before = failures("conflict"), failures("error")
    with caplog.at_level(logging.INFO, logger="podmedic.quarantine"):
        controller.act(decision, time.time())
    assert (failures("conflict"), failures("error")) == (before[0], before[1] + 1)
    assert [r.levelno for r in caplog.records if "not done" in r.getMessage()] == [logging.WARNING]
    assert ns.get("pod", "web-a")["metadata"]["labels"] == {"app": "web", "pod-template-hash": "h1"}


def test_a_kept_daemonset_pod_blocks_the_replacement_of_its_template(cluster, controllers):  # noqa: F811
    """A DaemonSet's selector has no controller-revision-hash, so the quarantine leaves that label
    on the kept pod and saves only the removed ones: the replacement (same revision, NotReady
    too) is `same-template` while the kept pod lives, in a later pass as in the same one, even
    when quarantine-max-per-owner would allow a second pod."""
    ns = Namespace(cluster, workload=False)
    cluster.kubectl("annotate", "namespace", ns.name, PREFIX + "quarantine-daemonset=enabled",
                    PREFIX + "quarantine-max-per-owner=2", PREFIX + "quarantine-isolation=optional")
    ds = ns.create({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                    "spec": {"selector": {"matchLabels": {"app": "agent"}},
                             "template": {"metadata": {"labels": {"app": "agent"}},
                                          "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
    labels = {"app": "agent", "controller-revision-hash": "r1", "pod-template-generation": "1"}
    ns.pod("agent-a", ds, labels=labels)
    controller = controllers("daemonset")
    pod = wait_for("agent-a quarantined", lambda: ns.quarantined("agent-a"))
    assert pod["metadata"]["labels"] == {"controller-revision-hash": "r1", "pod-template-generation": "1",
                                         PREFIX + "quarantined": "true"}
    ns.pod("agent-b", ds, labels=labels)  # the replacement on the same node, NotReady too
    time.sleep(3)  # several passes
    assert not ns.quarantined("agent-b"), "the replacement of a kept pod's template was quarantined"
    (skip,) = ns.events("agent-b", "QuarantineSkipped")
    assert skip["message"].startswith("same-template:")
    assert "Traceback" not in controller.text()


def test_a_pod_a_person_unlabelled_by_hand_is_left_alone(cluster, controllers):  # noqa: F811
    """A person takes a kept pod out of quarantine with `kubectl label pod X quarantined-` instead
    of `release`: it has no owner any more (its ReplicaSet released it), but it is not a bare pod
    to mark, which would overwrite the saved labels with none and its owner with `none` (so it
    never expired and `release` restored nothing). It was released by a person: left alone."""
    ns = Namespace(cluster)
    ns.pod("web-a", **{"quarantine-expiry": "1h"})
    controller = controllers("by-hand")
    wait_for("web-a quarantined", lambda: ns.quarantined("web-a"))
    saved = ns.get("pod", "web-a")["metadata"]["annotations"][PREFIX + "quarantine-saved"]
    cluster.kubectl("-n", ns.name, "patch", "pod", "web-a", "--type=json", "-p",  # what the ReplicaSet does
                    json.dumps([{"op": "remove", "path": "/metadata/ownerReferences"}]))
    cluster.kubectl("-n", ns.name, "label", "pod", "web-a", PREFIX + "quarantined-")
    time.sleep(3)  # several passes
    meta = ns.get("pod", "web-a")["metadata"]
    assert not ns.quarantined("web-a"), "re-marked as a bare pod"
    assert meta["annotations"][PREFIX + "quarantine-saved"] == saved
    assert not ns.events("web-a", "QuarantineSkipped")
    assert "Traceback" not in controller.text()
