"""The quarantine decision table (webhook/quarantine/decide.py), without a cluster: which pods are
candidates, what each kind of owner gets, the caps and the burst, the pre-flight, expiry and a
workload that is gone. Every rule of docs/quarantine.md has a case here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.quarantine.objects import (
    NOW, PREFIX, Obj, agreed, claim, deployment, hpa, iso, netpol, pdb, pod, quota, replicaset, service, with_, workload,
)
from webhook.cli.config import load
from webhook.quarantine.decide import Decision, Episode, NamespaceView, decide, observe
from webhook.quarantine.pods import project
from webhook.quarantine.reasons import Action, Reason

CONFIG = load()
ON = {PREFIX + "quarantine": "enabled"}
DEP = deployment()
RS = replicaset(DEP)
SHIPPED_POLICY = ROOT / "deploy" / "quarantine" / "networkpolicy.yaml"


def run(pods: list[Obj], workloads: list[Obj] | None = None, ns: dict[str, str] | None = None, **objects: Any) -> list[Decision]:
    view = NamespaceView("ns", ON if ns is None else ns, pods, [DEP, RS] if workloads is None else workloads, **objects)
    return decide(view, CONFIG, NOW, agreed(pods))


def outcome(decisions: list[Decision]) -> dict[str, tuple[Action, Reason]]:
    return {d.name: (d.action, d.reason) for d in decisions}


def one(decisions: list[Decision]) -> Decision:
    (decision,) = decisions
    return decision


def quarantined(name: str, owner: str = "Deployment/web/dep-1", labels: dict[str, str] | None = None,
                expires: float = NOW + 600, **extra: str) -> Obj:
    """A pod as the controller leaves it."""
    saved = {"labels": labels if labels is not None else {"app": "web", "pod-template-hash": "5d8c9"}, "safeToEvict": None}
    return pod(name, None, labels={PREFIX + "quarantined": "true"}, annotations={
        PREFIX + "quarantine-owner": owner, PREFIX + "quarantine-expires": iso(expires),
        PREFIX + "quarantine-saved": json.dumps(saved), **extra})


# -- candidates --------------------------------------------------------------------------------

def test_a_deployment_pod_notready_long_enough_is_quarantined_with_its_replicaset_labels_removed():
    d = one(run([pod("web-1", RS)]))
    assert (d.action, d.reason) == (Action.QUARANTINE, Reason.NOT_READY)
    assert dict(d.remove) == {"app": "web", "pod-template-hash": "5d8c9"}
    assert str(d.owner) == "Deployment/web/dep-1"  # the workload above the ReplicaSet
    assert d.expires == NOW + 3600                   # the supervisor's max-hold by default
    assert d.observed == "containers with unready status: [app]"


@pytest.mark.parametrize("case, candidate", [
    ("ready", pod("web-1", RS, not_ready_for=None)),
    ("not long enough", pod("web-1", RS, not_ready_for=119)),
    ("not injected by podmedic", pod("web-1", RS, injected=False)),
    ("pending", with_(pod("web-1", RS), **{"status.phase": "Pending"})),
    ("terminating", with_(pod("web-1", RS), **{"metadata.deletionTimestamp": iso(NOW)})),
    ("container crash-looping", with_(pod("web-1", RS), **{"status.containerStatuses": [
        {"name": "app", "ready": False, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
    ("container not started (startup probe)", with_(pod("web-1", RS), **{"status.containerStatuses": [
        {"name": "app", "ready": False, "started": False, "state": {"running": {}}}]})),
    ("released by a person", pod("web-1", RS, annotations={PREFIX + "quarantine-released": iso(NOW)})),
    ("pod opts out", pod("web-1", RS, annotations={PREFIX + "quarantine": "disabled"})),
])
def test_not_a_candidate(case, candidate):
    assert run([candidate]) == [], case


def test_quarantine_after_is_resolved_global_namespace_pod():
    assert one(run([pod("web-1", RS, not_ready_for=30)], ns={**ON, PREFIX + "quarantine-after": "20s"})).action \
        is Action.QUARANTINE
    late = pod("web-1", RS, not_ready_for=30, annotations={PREFIX + "quarantine-after": "1m"})
    assert run([late], ns={**ON, PREFIX + "quarantine-after": "20s"}) == []
    assert run([pod("web-1", RS)], ns={}) == []  # not enabled globally
    assert one(run([pod("web-1", RS, annotations=ON)], ns={})).action is Action.QUARANTINE  # pod-overridable


# -- quarantine-after on the controller's clock -------------------------------------------------

def went_not_ready(name: str, at: float) -> Obj:
    """A pod whose kubelet wrote `at` as the Ready condition's lastTransitionTime."""
    p = pod(name, RS)
    p["status"]["conditions"][0]["lastTransitionTime"] = iso(at)
    return p


def actions(p: Obj, now: float, seen: dict[str, Episode]) -> list[Action]:
    return [d.action for d in decide(NamespaceView("ns", ON, [p], [DEP, RS]), CONFIG, now, seen)]


def test_a_node_clock_behind_does_not_shorten_quarantine_after():
    """The node's clock runs 10 minutes behind: the pod went NotReady at the controller's NOW,
    its lastTransitionTime says NOW - 10 min. Timed from when the controller first saw it."""
    behind = went_not_ready("web-1", NOW - 600)
    seen = observe([behind], {}, NOW)
    assert actions(behind, NOW, seen) == []
    assert observe([behind], seen, NOW + 119) == seen  # later passes keep the first sighting
    assert actions(behind, NOW + 119, seen) == []
    assert actions(behind, NOW + 120, seen) == [Action.QUARANTINE]


def test_clocks_that_agree_quarantine_after_quarantine_after_as_before():
    p = went_not_ready("web-1", NOW)
    seen = observe([p], {}, NOW)
    assert actions(p, NOW + 119, seen) == []
    assert actions(p, NOW + 120, seen) == [Action.QUARANTINE]


def test_a_node_clock_ahead_still_delays():
    ahead = went_not_ready("web-1", NOW + 60)  # the kubelet's time is the later one
    seen = observe([ahead], {}, NOW)
    assert actions(ahead, NOW + 179, seen) == []
    assert actions(ahead, NOW + 180, seen) == [Action.QUARANTINE]


def test_a_new_episode_restarts_the_timing_and_an_unseen_one_is_first_seen_now():
    """Ready and NotReady again between two passes: a new lastTransitionTime is a new episode,
    even when the first one was seen long ago. An episode the controller never saw (a record
    of another episode, or none) counts from now: never quarantined on the kubelet's word."""
    old = went_not_ready("web-1", NOW - 900)
    again = went_not_ready("web-1", NOW - 600)  # the node runs behind: it is new at NOW
    first = observe([old], {}, NOW - 900)
    seen = observe([again], first, NOW)
    assert seen == {"uid-web-1": Episode(iso(NOW - 600), NOW)}
    assert actions(again, NOW, first) == [] and actions(again, NOW, {}) == []
    assert actions(again, NOW + 119, seen) == []
    assert actions(again, NOW + 120, seen) == [Action.QUARANTINE]


def test_the_record_forgets_pods_gone_or_ready_and_keeps_only_notready_ones():
    a, b, c = went_not_ready("web-a", NOW - 10), went_not_ready("web-b", NOW - 10), went_not_ready("web-c", NOW - 10)
    seen = observe([a, b, c], {}, NOW)
    assert set(seen) == {"uid-web-a", "uid-web-b", "uid-web-c"}
    ready = with_(b, **{"status.conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": iso(NOW)}]})
    crashing = with_(c, **{"status.containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
    later = observe([ready, crashing, pod("web-d", RS, not_ready_for=None)], seen, NOW + 10)  # web-a is gone
    assert later == {"uid-web-c": seen["uid-web-c"]}  # still NotReady: the same episode


def test_an_invalid_setting_is_a_skip_that_names_it():
    d = one(run([pod("web-1", RS)], ns={**ON, PREFIX + "quarantine-after": "soon"}))
    assert (d.action, d.reason) == (Action.SKIP, Reason.INVALID_SETTING)
    assert "podmedic.io/quarantine-after='soon'" in d.detail


def test_the_supervisors_hold_message_is_the_reason_and_is_recorded():
    hold = "Readiness probe failed: podmedic: held since 2026-12-05T04:00:00Z (FATAL, last exit 3)"
    d = one(run([pod("web-1", RS)], observed={"uid-web-1": hold}))
    assert (d.reason, d.observed) == (Reason.HELD, hold)


# -- kinds --------------------------------------------------------------------------------------

JOB = workload("Job", "batch", "job-1", {"batch.kubernetes.io/controller-uid": "job-1"})
JOB_POD = pod("batch-x", JOB, labels={"batch.kubernetes.io/controller-uid": "job-1", "job-name": "batch"})
HOLD = "Readiness probe failed: podmedic: held since 2026-12-05T04:00:00Z (FATAL, last exit 3)"


def test_a_held_job_pod_loses_the_jobs_selector_labels():
    d = one(run([JOB_POD], [JOB], observed={"uid-batch-x": HOLD}))
    assert (d.action, d.reason) == (Action.QUARANTINE, Reason.HELD)
    assert dict(d.remove) == {"batch.kubernetes.io/controller-uid": "job-1"}
    assert str(d.owner) == "Job/batch/job-1"


@pytest.mark.parametrize("observed", [
    {},                                                                      # only the Ready condition
    {"uid-batch-x": "Readiness probe failed: HTTP probe failed with statuscode: 503"},  # the app's own probe
])
def test_a_job_pod_whose_app_may_still_run_is_skipped(observed):
    """Released, its app would keep running and the replacement would run the job's work again
    beside it: a non-idempotent job twice, an Indexed Job's index in two pods."""
    d = one(run([JOB_POD], [JOB], observed=observed))
    assert (d.action, d.reason, str(d.owner)) == (Action.SKIP, Reason.JOB_APP_RUNNING, "Job/batch/job-1")


def test_a_pod_of_a_recreate_deployment_is_skipped():
    """Recreate promises never an old and a new pod at once (a singleton, an exclusive resource):
    a replacement beside the kept pod would break it."""
    recreate = with_(DEP, **{"spec.strategy": {"type": "Recreate"}})
    d = one(run([pod("web-1", RS)], [recreate, RS]))
    assert (d.action, d.reason, d.detail) == (Action.SKIP, Reason.RECREATE_STRATEGY, "Deployment web")
    rolling = with_(DEP, **{"spec.strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}})
    assert one(run([pod("web-1", RS)], [rolling, RS])).action is Action.QUARANTINE


def with_claim(volume: Obj) -> Obj:
    """web-1 with a volume, as the controller's pod cache keeps it (pods.project)."""
    return project(with_(pod("web-1", RS), **{"spec.volumes": [{"name": "cache", "emptyDir": {}}, volume]}))


DATA = {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}


@pytest.mark.parametrize("claims, detail", [
    # the scheduler refuses a second pod using the claim: the replacement stays Pending
    ([claim("data", ["ReadWriteOncePod"])], "PersistentVolumeClaim data: ReadWriteOncePod"),
    # attachable to one node: on another node the replacement is stuck on a Multi-Attach error
    ([claim("data", ["ReadWriteOnce"], ["ReadWriteOnce"])], "PersistentVolumeClaim data: ReadWriteOnce"),
    ([claim("data", ["ReadWriteOnce"])], "PersistentVolumeClaim data: ReadWriteOnce"),   # not bound yet
    ([], "PersistentVolumeClaim data: not found"),                                         # unknown is unsafe
])
def test_a_pod_using_a_claim_only_one_pod_or_node_can_use_is_skipped(claims, detail):
    """Its replacement could not run until the kept pod expires."""
    d = one(run([with_claim(DATA)], claims=claims))
    assert (d.action, d.reason, d.detail) == (Action.SKIP, Reason.EXCLUSIVE_VOLUME, detail)


@pytest.mark.parametrize("claims, volume", [
    ([claim("data", ["ReadWriteMany"])], DATA),
    ([claim("data", ["ReadOnlyMany"])], DATA),
    ([claim("data", ["ReadWriteOnce"], ["ReadWriteOnce", "ReadWriteMany"])], DATA),  # its volume is shareable
    # a generic ephemeral volume: the replacement gets a claim of its own
    ([claim("web-1-scratch", ["ReadWriteOncePod"])], {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
        "spec": {"accessModes": ["ReadWriteOncePod"], "resources": {"requests": {"storage": "1Gi"}}}}}}),
])
def test_a_pod_using_a_shareable_or_its_own_claim_is_quarantined(claims, volume):
    assert one(run([with_claim(volume)], claims=claims)).action is Action.QUARANTINE


def test_a_statefulset_pod_is_never_relabelled():
    sts = workload("StatefulSet", "db", "sts-1", {"app": "db"})
    d = one(run([pod("db-0", sts)], [sts]))
    assert (d.action, d.reason) == (Action.SKIP, Reason.STATEFULSET)


def test_a_daemonset_pod_only_when_enabled():
    ds = workload("DaemonSet", "agent", "ds-1", {"app": "agent"})
    agent = pod("agent-x", ds, labels={"app": "agent", "controller-revision-hash": "abc"})
    assert outcome(run([agent], [ds])) == {"agent-x": (Action.SKIP, Reason.DAEMONSET_DISABLED)}
    d = one(run([agent], [ds], ns={**ON, PREFIX + "quarantine-daemonset": "enabled"}))
    assert d.action is Action.QUARANTINE and dict(d.remove) == {"app": "agent"}


def test_a_daemonset_pod_with_a_host_port_is_skipped():
    """Its replacement lands on the same node, where the kept pod still holds the port."""
    ds = workload("DaemonSet", "agent", "ds-1", {"app": "agent"})
    agent = with_(pod("agent-x", ds, labels={"app": "agent", "controller-revision-hash": "abc"}),
                  **{"spec.containers": [{"name": "app", "ports": [{"containerPort": 9100, "hostPort": 9100}]}]})
    d = one(run([agent], [ds], ns={**ON, PREFIX + "quarantine-daemonset": "enabled"}))
    assert (d.action, d.reason, d.detail) == (Action.SKIP, Reason.DAEMONSET_HOST_PORT, "hostPort 9100")
    net = with_(pod("agent-x", ds, labels={"app": "agent", "controller-revision-hash": "abc"}), **{"spec.hostNetwork": True})
    d = one(run([net], [ds], ns={**ON, PREFIX + "quarantine-daemonset": "enabled"}))
    assert (d.action, d.reason, d.detail) == (Action.SKIP, Reason.DAEMONSET_HOST_PORT, "hostNetwork")
    web = with_(pod("web-1", RS), **{"spec.containers": [{"name": "app", "ports": [{"hostPort": 8080}]}]})
    assert one(run([web])).action is Action.QUARANTINE  # a ReplicaSet's replacement may land anywhere


def test_a_bare_pod_is_only_marked():
    d = one(run([pod("lonely")]))
    assert (d.action, d.reason, d.owner, dict(d.remove)) == (Action.MARK, Reason.BARE_POD, None, {})


@pytest.mark.parametrize("workloads, reason", [
    ([DEP], Reason.OWNER_NOT_FOUND),                   # the ReplicaSet is not (yet) seen
    ([RS], Reason.OWNER_NOT_FOUND),                    # the Deployment above it is not seen
])
def test_an_owner_that_cannot_be_read_is_never_guessed(workloads, reason):
    assert outcome(run([pod("web-1", RS)], workloads)) == {"web-1": (Action.SKIP, reason)}


def test_an_unknown_controller_kind_is_skipped():
    rollout = workload("Rollout", "canary", "ro-1", {"app": "canary"})
    assert outcome(run([pod("canary-x", rollout)], [rollout])) == {
        "canary-x": (Action.SKIP, Reason.OWNER_KIND_UNSUPPORTED)}


def test_a_selector_that_matches_without_labels_cannot_release_the_pod():
    everything = workload("ReplicaSet", "all", "rs-all", {})
    assert outcome(run([pod("x", everything, labels={"a": "b"})], [everything])) == {
        "x": (Action.SKIP, Reason.SELECTOR_UNREMOVABLE)}


# -- caps and the burst ------------------------------------------------------------------------------

def test_the_replacement_of_a_quarantined_pod_is_not_quarantined_while_that_pod_is_kept():
    assert outcome(run([quarantined("web-old"), pod("web-new", RS)])) == {
        "web-new": (Action.SKIP, Reason.SAME_TEMPLATE)}
    # the pass that deletes the expired pod still counts it; the next pass (it is gone) takes
    # the replacement, if it is still NotReady: one pod quarantined at a time (docs/quarantine.md)
    assert outcome(run([quarantined("web-old", expires=NOW - 1), pod("web-new", RS)])) == {
        "web-old": (Action.DELETE, Reason.EXPIRED), "web-new": (Action.SKIP, Reason.SAME_TEMPLATE)}
    assert outcome(run([pod("web-new", RS)])) == {"web-new": (Action.QUARANTINE, Reason.NOT_READY)}


def test_max_per_owner_counts_across_templates():
    rs2 = replicaset(DEP, "77aa1")
    rolled = pod("web-new", rs2)
    assert outcome(run([quarantined("web-old"), rolled], [DEP, RS, rs2])) == {
        "web-new": (Action.SKIP, Reason.OWNER_CAP)}
    two = {**ON, PREFIX + "quarantine-max-per-owner": "2"}
    assert outcome(run([quarantined("web-old"), rolled], [DEP, RS, rs2], ns=two)) == {
        "web-new": (Action.QUARANTINE, Reason.NOT_READY)}


def test_a_burst_quarantines_one_per_workload_and_never_more_than_the_namespace_cap():
    workloads, pods = [], []
    for i in range(4):
        dep = deployment(f"svc{i}", f"dep-{i}")
        rs = replicaset(dep, f"h{i}")
        workloads += [dep, rs]
        pods += [pod(f"svc{i}-{j}", rs, not_ready_for=200 + j) for j in range(5)]
    decisions = run(pods, workloads)  # default cap per namespace: 3
    done = [d for d in decisions if d.action is Action.QUARANTINE]
    assert len(done) == 3 and len({d.owner for d in done}) == 3
    assert all(d.name.endswith("-4") for d in done)  # the longest NotReady of each
    skipped = {d.reason for d in decisions if d.action is Action.SKIP}
    assert skipped == {Reason.SAME_TEMPLATE, Reason.NAMESPACE_CAP}
    assert len(decisions) == 20


def test_the_namespace_cap_counts_marked_bare_pods_too():
    marked = pod("lonely", None, labels={PREFIX + "quarantined": "true"}, annotations={PREFIX + "quarantine-owner": "none"})
    ns = {**ON, PREFIX + "quarantine-max-per-namespace": "1"}
    assert outcome(run([marked, pod("web-1", RS)], ns=ns)) == {"web-1": (Action.SKIP, Reason.NAMESPACE_CAP)}



def test_a_marked_bare_pod_that_became_ready_no_longer_counts_against_the_namespace_cap():
    recovered = pod("lonely", None, not_ready_for=None, labels={PREFIX + "quarantined": "true"},
                    annotations={PREFIX + "quarantine-owner": "none"})
    ns = {**ON, PREFIX + "quarantine-max-per-namespace": "1"}
    assert outcome(run([recovered, pod("web-1", RS)], ns=ns)) == {"web-1": (Action.QUARANTINE, Reason.NOT_READY)}


# -- pre-flight --------------------------------------------------------------------------------------

EXTRA = {"app": "web", "pod-template-hash": "5d8c9", "tier": "frontend"}  # `tier` is in no owner's selector
FRONT = deployment("front", "dep-front", {"tier": "frontend"})  # a workload that selects by `tier`


@pytest.mark.parametrize("objects, reason", [
    ({"pdbs": [pdb("web-pdb", {"tier": "frontend"})]}, Reason.PDB_SELECTS),
    ({"services": [service("web", {"tier": "frontend"})]}, Reason.SERVICE_SELECTS),
    ({"hpas": [hpa("web", "Rollout", "web")]}, Reason.HPA_TARGET_UNKNOWN),
    # the target's selector is on a label the pod keeps (the ReplicaSet's is on removed ones)
    ({"hpas": [hpa("front", "Deployment", "front")]}, Reason.HPA_SELECTS),
    ({"netpols": [netpol("only-frontend", {"matchLabels": {"app": "web"}}, ["Ingress"])]}, Reason.ISOLATION_LOST),
    ({"netpols": [netpol("default-egress", {"matchLabels": {"app": "web"}}, ["Egress"]),
                  netpol("ingress-all", {}, ["Ingress"])]}, Reason.ISOLATION_LOST),
    ({"quotas": [quota("pods", {"pods": "10"}, {"pods": "10"})]}, Reason.QUOTA_EXHAUSTED),
    ({"quotas": [quota("cpu", {"requests.cpu": "2"}, {"requests.cpu": "1900m"})]}, Reason.QUOTA_EXHAUSTED),
    ({"quotas": [quota("mem", {"memory": "1Gi"}, {"memory": "900Mi"})]}, Reason.QUOTA_EXHAUSTED),
])
def test_preflight_refuses(objects, reason):
    candidate = pod("web-1", RS, labels=EXTRA, resources={"requests": {"cpu": "200m", "memory": "128Mi"}})
    d = one(run([candidate], [DEP, RS, FRONT], **objects))
    assert (d.action, d.reason) == (Action.SKIP, reason), d.detail


@pytest.mark.parametrize("objects", [
    {"pdbs": [pdb("web-pdb", {"app": "web"})]},            # selects by the removed labels
    {"services": [service("web", {"app": "web"}), service("manual", {})]},
    {"hpas": [hpa("web", "Deployment", "web"), hpa("gone", "Deployment", "nothing")]},
    {"netpols": [netpol("all-ingress", {}, ["Ingress"])]},  # still isolates the relabelled pod
    {"quotas": [quota("room", {"pods": "10", "requests.cpu": "2", "limits.memory": "1Gi", "count/pods": "5"},
                      {"pods": "9", "requests.cpu": "1800m", "limits.memory": "0", "count/pods": "4"})]},
])
def test_preflight_passes(objects):
    candidate = pod("web-1", RS, labels=EXTRA, resources={"requests": {"cpu": "200m"}, "limits": {"memory": "1Gi"}})
    assert one(run([candidate], **objects)).action is Action.QUARANTINE


def cpu(value: str) -> dict[str, Any]:
    return {"requests": {"cpu": value}}


@pytest.mark.parametrize("spec, charged_millis", [
    ({"initContainers": [{"name": "migrate", "resources": cpu("1")}]}, 1000),  # the init phase is larger
    ({"initContainers": [{"name": "proxy", "restartPolicy": "Always", "resources": cpu("200m")},
                         {"name": "migrate", "resources": cpu("500m")}]}, 700),  # runs beside the sidecar
    ({"initContainers": [{"name": "migrate", "resources": cpu("500m")},
                         {"name": "proxy", "restartPolicy": "Always", "resources": cpu("200m")}]}, 500),
    ({"initContainers": [{"name": "proxy", "restartPolicy": "Always", "resources": cpu("200m")},
                         {"name": "small", "resources": cpu("50m")}]}, 300),  # the sidecar runs with the app
    ({"overhead": {"cpu": "50m"}}, 150),
])
def test_the_quota_is_charged_what_kubernetes_charges_for_the_replacement(spec, charged_millis):
    """Requests as the quota admission counts them: max(app containers + sidecars, the init
    phase's peak) + the pod overhead. The app container asks for 100m; the quota has exactly the
    charge left, then 1m less."""
    candidate = pod("web-1", RS, resources=cpu("100m"))
    candidate = with_(candidate, **{f"spec.{k}": v for k, v in spec.items()})
    for room, action in ((charged_millis, Action.QUARANTINE), (charged_millis - 1, Action.SKIP)):
        quotas = [quota("cpu", {"requests.cpu": "10"}, {"requests.cpu": f"{10000 - room}m"})]
        d = one(run([candidate], quotas=quotas))
        assert d.action is action, (room, d.describe())


def test_the_shipped_deny_all_policy_keeps_quarantined_pods_isolated():
    shipped = yaml.safe_load(Path(SHIPPED_POLICY).read_text())
    lost = {"netpols": [netpol("only-frontend", {"matchLabels": {"app": "web"}}, ["Ingress", "Egress"])]}
    assert one(run([pod("web-1", RS)], **lost)).reason is Reason.ISOLATION_LOST
    assert one(run([pod("web-1", RS)], netpols=[*lost["netpols"], shipped])).action is Action.QUARANTINE
    optional = {**ON, PREFIX + "quarantine-isolation": "optional"}
    assert one(run([pod("web-1", RS)], ns=optional, **lost)).action is Action.QUARANTINE


# -- expiry and cleanup ---------------------------------------------------------------------------

def test_expiry_defaults_to_max_hold_and_follows_the_settings():
    assert one(run([pod("web-1", RS, annotations={PREFIX + "max-hold": "600"})])).expires == NOW + 600
    assert one(run([pod("web-1", RS, annotations={PREFIX + "quarantine-expiry": "2h"})])).expires == NOW + 7200
    short = pod("web-1", RS, annotations={PREFIX + "max-hold": "0"})
    assert one(run([short])).expires == NOW + 120  # never before quarantine-after


def test_a_quarantined_pod_is_deleted_at_its_expiry():
    assert outcome(run([quarantined("web-old", expires=NOW - 1)])) == {"web-old": (Action.DELETE, Reason.EXPIRED)}
    assert run([quarantined("web-old", expires=NOW + 1)]) == []


def test_a_quarantined_pod_whose_workload_is_gone_is_deleted():
    assert outcome(run([quarantined("web-old")], [])) == {"web-old": (Action.DELETE, Reason.OWNER_GONE)}


def test_a_marked_bare_pod_is_never_deleted():
    marked = pod("lonely", None, labels={PREFIX + "quarantined": "true"},
                 annotations={PREFIX + "quarantine-owner": "none", PREFIX + "quarantine-expires": iso(NOW - 10)})
    assert run([marked], []) == []
