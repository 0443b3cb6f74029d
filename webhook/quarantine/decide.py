"""The quarantine decision core. PURE: a namespace's objects, the settings, the controller's
time and the NotReady episodes it observed in, decisions out; no API call, no clock read, no
I/O (tests/quarantine/ drive it with plain dicts).

One pass over one namespace (`decide`):

1. Cleanup. A quarantined pod (label `<prefix>quarantined=true`) whose `quarantine-expires`
   has passed, or whose workload (`quarantine-owner` uid) no longer exists, is deleted. A bare
   pod is only marked and never deleted: nothing would replace it.
2. Candidates: pods injected by podmedic (`<prefix>status`), `quarantine` enabled (global <
   namespace < pod), Running with every container running and started, Ready False for at
   least `quarantine-after` on the controller's clock (`not_ready_since`, `observe`), not
   quarantined, never released (`quarantine-released`). Oldest NotReady first, so a burst is
   decided in a stable order.
3. Per candidate, in this order, the first rule that says no is the reason it is skipped:
   the kind of its controller (ReplicaSet of a Deployment, Job, DaemonSet when enabled:
   quarantine, but not a DaemonSet pod with a hostPort; StatefulSet and other kinds: skip; no
   controller: mark only), a replacement that would harm running beside the kept pod (a
   Deployment with the Recreate strategy; a Job's pod not held: its app may still be doing the
   work; a claim only one pod or node can use), the caps (a pod of
   the same template as a quarantined one; `quarantine-max-per-owner`;
   `quarantine-max-per-namespace`), then the pre-flight on the relabelled labels (no PDB, HPA
   target or Service still selects it, no NetworkPolicy isolation lost, room in every
   ResourceQuota for the replacement). Every pod quarantined in this pass counts against the
   caps of the next, so a burst (a database outage) quarantines at most one per workload. A
   marked bare pod counts against the namespace cap only while it is not Ready (it keeps its
   mark: nothing replaced it, and the controller never deletes it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

from webhook.engine.config import GlobalConfig
from webhook.engine.keys import parse_rfc3339
from webhook.engine.quantity import quantity
from webhook.engine.settings import InvalidSetting, Resolved
from webhook.quarantine.labels import Labels, map_selects, selected_keys, selects
from webhook.quarantine.reasons import Action, Reason

Obj = Mapping[str, Any]

SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
HOLD_MESSAGE = "podmedic: held since"  # what the supervisor's readiness check prints during a hold
OBSERVED_MAX = 1024  # characters of the observed message kept in the annotation
# Controllers that create a replacement for a released pod; StatefulSet never does.
REPLACING_KINDS = ("ReplicaSet", "Job", "DaemonSet")
WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")


class Marks:
    """The label and annotations the controller writes, under the configured prefix. The
    annotation names are OUTPUT_KEYS of engine/keys.py: never read as settings."""

    def __init__(self, prefix: str):
        self.label = prefix + "quarantined"  # `=true` on every kept pod (the log janitor reads it too)
        self.at = prefix + "quarantined-at"
        self.owner = prefix + "quarantine-owner"      # Kind/name/uid of the workload
        self.reason = prefix + "quarantine-reason"    # the reason code
        self.expires = prefix + "quarantine-expires"
        self.saved = prefix + "quarantine-saved"      # JSON: the removed labels, the previous safe-to-evict
        self.observed = prefix + "quarantine-observed"  # what the kubelet reported (the hold message)
        self.released = prefix + "quarantine-released"  # set by `release`: never quarantined again
        self.written = (self.at, self.owner, self.reason, self.expires, self.saved, self.observed)


@dataclass(frozen=True)
class Owner:
    """The workload a pod is taken from: the Deployment above a ReplicaSet, else the controller."""

    kind: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}/{self.uid}"

    @classmethod
    def parse(cls, text: str | None) -> "Owner | None":
        parts = (text or "").split("/")
        return cls(*parts) if len(parts) == 3 and all(parts) else None


@dataclass(frozen=True)
class NamespaceView:
    """One namespace as the controller read it. `workloads` hold every Deployment, ReplicaSet,
    StatefulSet, DaemonSet and Job, each with its `kind` (list items carry none); `claims` the
    PersistentVolumeClaims; an incomplete
    view would make owners look gone, so the I/O shell decides only on complete reads.
    `observed`: pod uid -> the latest readiness-probe failure the kubelet reported (its
    Unhealthy event), where the supervisor's hold message shows."""

    name: str
    annotations: Mapping[str, str]
    pods: Sequence[Obj]
    workloads: Sequence[Obj] = ()
    pdbs: Sequence[Obj] = ()
    hpas: Sequence[Obj] = ()
    services: Sequence[Obj] = ()
    netpols: Sequence[Obj] = ()
    quotas: Sequence[Obj] = ()
    claims: Sequence[Obj] = ()
    observed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    pod: Obj
    detail: str = ""
    owner: Owner | None = None
    remove: Mapping[str, str] = field(default_factory=dict)  # the labels taken away (saved for release)
    expires: float | None = None
    observed: str = ""

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    def describe(self) -> str:
        """One line for logs and event messages."""
        text = f"{self.reason.value}: {self.reason.text}"
        return f"{text} ({self.detail})" if self.detail else text


# ------------------------------------------------------------------ time

def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> float | None:
    """An RFC 3339 time of the API server or of our annotations, None when absent or malformed
    (a time without an offset too: it would be read in the controller's local zone)."""
    if not isinstance(text, str):
        return None
    try:
        return parse_rfc3339(text).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------ reading pods

def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _labels(obj: Obj) -> dict[str, str]:
    return dict(_meta(obj).get("labels") or {})


def _annotations(obj: Obj) -> Mapping[str, str]:
    return _meta(obj).get("annotations") or {}


def controller_of(obj: Obj) -> Mapping[str, Any] | None:
    return next((r for r in _meta(obj).get("ownerReferences") or [] if r.get("controller")), None)


def is_quarantined(pod: Obj, marks: Marks) -> bool:
    return _labels(pod).get(marks.label) == "true"


def ready_condition(pod: Obj) -> Mapping[str, Any]:
    status = pod.get("status") or {}
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})


@dataclass(frozen=True)
class Episode:
    """One NotReady episode of a pod as the controller saw it: `transition`, the Ready
    condition's lastTransitionTime as the kubelet wrote it (a new value is a new episode), and
    `first_seen`, the controller's clock when it first saw that episode."""

    transition: str
    first_seen: float


Seen = Mapping[str, Episode]  # pod uid -> its current NotReady episode


def _seen_episode(seen: Seen, pod: Obj, transition: str) -> Episode | None:
    """The episode of `seen` that is the pod's current one (same lastTransitionTime), if any."""
    known = seen.get(str(_meta(pod).get("uid")))
    return known if known is not None and known.transition == transition else None


def observe(pods: Sequence[Obj], seen: Seen, now: float) -> dict[str, Episode]:
    """The episodes after seeing `pods` at `now`: an episode already seen keeps its first
    sighting, a new one (a pod gone NotReady, or NotReady again with a new lastTransitionTime)
    is first seen now. Only pods whose Ready condition is False are kept, so a pod gone or
    Ready again is forgotten and the record is as large as the NotReady pods."""
    out: dict[str, Episode] = {}
    for pod in pods:
        condition = ready_condition(pod)
        transition = condition.get("lastTransitionTime")
        if condition.get("status") != "False" or not isinstance(transition, str):
            continue
        out[str(_meta(pod).get("uid"))] = _seen_episode(seen, pod, transition) or Episode(transition, now)
    return out


def not_ready_since(pod: Obj, seen: Seen, now: float) -> float | None:
    """When a Running pod whose containers all run (and have started) went NotReady, on the
    controller's clock; None when it is ready, starting, crash-looping or terminating (then it
    is not held: no quarantine).

    lastTransitionTime is the kubelet's, written with the node's clock: a node running 10
    minutes behind would make a pod that just went NotReady look NotReady for 10 minutes. So
    the episode counts from the later of lastTransitionTime and when this controller first
    saw it (`seen`; an episode it never saw is first seen `now`), as Kubernetes' node
    lifecycle controller times from its own observations: a clock behind cannot shorten the
    wait, one ahead still lengthens it (the safe direction)."""
    status = pod.get("status") or {}
    condition = ready_condition(pod)
    containers = status.get("containerStatuses") or []
    if (status.get("phase") != "Running" or condition.get("status") != "False" or not containers
            or _meta(pod).get("deletionTimestamp")):
        return None
    if not all("running" in (s.get("state") or {}) and s.get("started") is not False for s in containers):
        return None
    transition = parse_time(condition.get("lastTransitionTime"))
    if transition is None:
        return None
    known = _seen_episode(seen, pod, condition["lastTransitionTime"])
    return max(transition, known.first_seen if known is not None else now)


def saved_state(pod: Obj, marks: Marks) -> dict[str, Any]:
    """What a quarantine saved: {"labels": {...}, "safeToEvict": previous value or None}.
    ValueError when the annotation is missing or not what the controller writes."""
    raw = _annotations(pod).get(marks.saved)
    try:
        saved = json.loads(raw) if raw is not None else None
    except ValueError:
        saved = None
    if not (isinstance(saved, dict) and isinstance(saved.get("labels"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in saved["labels"].items())):
        raise ValueError(f"{marks.saved} is missing or malformed")
    return saved


def template_key(owner_uid: str, labels: Labels) -> str:
    """Pods of one template: same workload, same pod-template-hash (Deployment) or
    controller-revision-hash (DaemonSet); a Job has one template."""
    return f"{owner_uid}/{labels.get('pod-template-hash') or labels.get('controller-revision-hash') or ''}"


# ------------------------------------------------------------------ the pass

@dataclass
class _Tally:
    """What is quarantined so far in this namespace (before and during the pass)."""

    namespace: int = 0
    per_owner: Counter[str] = field(default_factory=Counter)
    templates: set[str] = field(default_factory=set)

    def add(self, owner: Owner | None, labels: Labels) -> None:
        self.namespace += 1
        if owner is not None:
            self.per_owner[owner.uid] += 1
            self.templates.add(template_key(owner.uid, labels))


class _Workloads:
    def __init__(self, workloads: Sequence[Obj]):
        self.by_uid = {str(_meta(w).get("uid")): w for w in workloads}
        self.by_name = {(str(w.get("kind")), str(_meta(w).get("name"))): w for w in workloads}


def decide(view: NamespaceView, config: GlobalConfig, now: float, seen: Seen) -> list[Decision]:
    """The decisions of one pass over a namespace; `seen`: the NotReady episodes the controller
    observed (`observe`), which time `quarantine-after`."""
    marks = Marks(config.prefix)
    workloads = _Workloads(view.workloads)
    tally = _Tally()
    out: list[Decision] = []
    for pod in view.pods:
        if is_quarantined(pod, marks):
            owner = Owner.parse(_annotations(pod).get(marks.owner))
            try:
                saved = saved_state(pod, marks)["labels"]
            except ValueError:
                saved = {}
            if owner is not None or ready_condition(pod).get("status") != "True":
                # its template: the labels it kept (a DaemonSet's controller-revision-hash is in
                # no selector) and the removed ones; a marked bare pod that recovered no longer counts
                tally.add(owner, _labels(pod) | saved)
            cleanup = _cleanup(pod, owner, marks, workloads, now)
            if cleanup:
                out.append(cleanup)
    for pod, settings, since in sorted(_candidates(view, config, marks, now, seen, out), key=lambda c: (c[2], _meta(c[0])["name"])):
        decision = _consider(pod, settings, since, view, workloads, tally, marks, now)
        if decision.action in (Action.QUARANTINE, Action.MARK):
            tally.add(decision.owner, _labels(pod))
        out.append(decision)
    return out


def _cleanup(pod: Obj, owner: Owner | None, marks: Marks, workloads: _Workloads, now: float) -> Decision | None:
    if owner is None or _meta(pod).get("deletionTimestamp"):
        return None  # a bare pod is only marked; a pod being deleted is on its way out
    expires = parse_time(_annotations(pod).get(marks.expires))
    if expires is not None and now >= expires:
        return Decision(Action.DELETE, Reason.EXPIRED, pod, f"expired at {iso(expires)}", owner)
    if owner.uid not in workloads.by_uid:
        return Decision(Action.DELETE, Reason.OWNER_GONE, pod, f"{owner.kind} {owner.name} is gone", owner)
    return None


def candidate(pod: Obj, config: GlobalConfig, ns_annotations: Mapping[str, str], marks: Marks,
              now: float, seen: Seen) -> tuple[Resolved, float] | InvalidSetting | None:
    """Whether a pass decides about this pod: (its settings, NotReady since) when it was injected
    by podmedic, not quarantined, never released (by `release` or by removing the label by
    hand), NotReady with its containers running and `quarantine` enabled for at least
    `quarantine-after` on the controller's clock (`not_ready_since`); the InvalidSetting when
    its settings do not parse (reported, so a typo is seen); else None. One rule for the
    controller, which reads a namespace only when some pod there is a candidate, and for `decide`."""
    annotations = _annotations(pod)
    # `quarantine-owner` without the label: a person took the kept pod out by hand (not with
    # `release`); marking it as a bare pod would overwrite what `release` restores
    if (config.status_key not in annotations or marks.released in annotations or marks.owner in annotations
            or is_quarantined(pod, marks)):
        return None
    since = not_ready_since(pod, seen, now)
    if since is None:
        return None
    settings = Resolved(config, ns_annotations, annotations)
    try:
        if settings.value("quarantine") and now - since >= settings.value("quarantine-after"):
            return settings, since
    except InvalidSetting as exc:
        return exc
    return None


def _candidates(view: NamespaceView, config: GlobalConfig, marks: Marks, now: float, seen: Seen,
                out: list[Decision]) -> Iterator[tuple[Obj, Resolved, float]]:
    """The candidates of the namespace; a pod whose quarantine settings do not parse is reported
    (appended to `out`) instead."""
    for pod in view.pods:
        found = candidate(pod, config, view.annotations, marks, now, seen)
        if isinstance(found, InvalidSetting):
            out.append(Decision(Action.SKIP, Reason.INVALID_SETTING, pod, str(found)))
        elif found is not None:
            yield pod, *found


def _consider(pod: Obj, settings: Resolved, since: float, view: NamespaceView, workloads: _Workloads,
              tally: _Tally, marks: Marks, now: float) -> Decision:
    def skip(reason: Reason, detail: str = "", owner: Owner | None = None) -> Decision:
        return Decision(Action.SKIP, reason, pod, detail, owner)

    ref = controller_of(pod)
    observed = (view.observed.get(str(_meta(pod).get("uid"))) or ready_condition(pod).get("message") or "")[:OBSERVED_MAX]
    held = HOLD_MESSAGE in observed
    try:
        if ref is None:
            if tally.namespace >= settings.value("quarantine-max-per-namespace"):
                return skip(Reason.NAMESPACE_CAP, f"{tally.namespace} quarantined")
            return Decision(Action.MARK, Reason.BARE_POD, pod, f"NotReady since {iso(since)}", observed=observed)
        found = _owner(ref, settings, workloads)
        if isinstance(found, Reason):
            return skip(found, f"{ref.get('kind')} {ref.get('name')}")
        direct, owner = found
        if ref.get("kind") == "DaemonSet":
            # hostNetwork binds whatever the app listens on, declared as a port or not
            if (pod.get("spec") or {}).get("hostNetwork") is True:
                return skip(Reason.DAEMONSET_HOST_PORT, "hostNetwork", owner)
            if ports := _host_ports(pod):
                return skip(Reason.DAEMONSET_HOST_PORT, f"hostPort {', '.join(map(str, ports))}", owner)
        harmful = _harmful_replacement(pod, str(ref.get("kind")), workloads.by_uid[owner.uid], owner, held,
                                       view.claims)
        if harmful:
            return skip(*harmful, owner=owner)
        labels = _labels(pod)
        selector = (direct.get("spec") or {}).get("selector")
        remove = {k: labels[k] for k in sorted(selected_keys(selector)) if k in labels}
        relabelled = {k: v for k, v in labels.items() if k not in remove} | {marks.label: "true"}
        if selects(selector, relabelled):
            return skip(Reason.SELECTOR_UNREMOVABLE, f"{direct['kind']} {_meta(direct).get('name')}", owner)
        capped = _capped(owner, labels, settings, tally)
        if capped:
            return skip(*capped, owner=owner)
        refused = _preflight(pod, labels, relabelled, view, workloads, settings)
        if refused:
            return skip(*refused, owner=owner)
        expires = now + _expiry(pod, settings)
    except InvalidSetting as exc:
        return skip(Reason.INVALID_SETTING, str(exc))
    reason = Reason.HELD if held else Reason.NOT_READY
    return Decision(Action.QUARANTINE, reason, pod, f"NotReady since {iso(since)}", owner, remove, expires, observed)


def _owner(ref: Mapping[str, Any], settings: Resolved, workloads: _Workloads) -> Reason | tuple[Obj, Owner]:
    """(the controller, the workload above it) or the reason to skip."""
    kind = ref.get("kind")
    if kind == "StatefulSet":
        return Reason.STATEFULSET
    if kind == "DaemonSet" and not settings.value("quarantine-daemonset"):
        return Reason.DAEMONSET_DISABLED
    if kind not in REPLACING_KINDS:
        return Reason.OWNER_KIND_UNSUPPORTED
    direct = workloads.by_uid.get(str(ref.get("uid")))
    if direct is None:
        return Reason.OWNER_NOT_FOUND
    top = direct
    above = controller_of(direct)
    if kind == "ReplicaSet" and above is not None and above.get("kind") == "Deployment":
        deployment = workloads.by_uid.get(str(above.get("uid")))
        if deployment is None:
            return Reason.OWNER_NOT_FOUND
        top = deployment
    meta = _meta(top)
    return direct, Owner(str(top["kind"]), str(meta.get("name")), str(meta.get("uid")))


def _harmful_replacement(pod: Obj, kind: str, workload: Obj, owner: Owner, held: bool,
                         claims: Sequence[Obj]) -> tuple[Reason, str] | None:
    """Why the replacement must not run beside the kept pod, whose containers keep running
    (`kind`: the pod's controller; `workload`: the one above it, `owner`).

    A pod using a claim only one pod or one node can use: the replacement could not run until
    the kept pod expires (_exclusive_claim).

    A Deployment with `strategy.type: Recreate` promises never to run an old and a new pod at
    once (a singleton, an app holding an exclusive resource): its owner chose it so that two
    never run together, and a replacement beside the kept pod would break that promise.

    A Job's pod that is not held may still be doing the job's work (Ready False says nothing
    about that: a readiness probe is the app's own): released, its app keeps running and the
    Job controller starts the work again in the replacement, so a non-idempotent job (a
    migration, a payment batch) runs twice and an Indexed Job has two pods for one index. Only
    the supervisor's hold proves the app is down (a ReplicaSet's extra NotReady pod is harmless:
    it is out of its Services)."""
    strategy = ((workload.get("spec") or {}).get("strategy") or {}).get("type")
    if workload.get("kind") == "Deployment" and strategy == "Recreate":
        return Reason.RECREATE_STRATEGY, f"Deployment {owner.name}"
    if kind == "Job" and not held:
        return Reason.JOB_APP_RUNNING, f"Job {owner.name}: not held by the supervisor"
    exclusive = _exclusive_claim(pod, claims)
    if exclusive:
        return Reason.EXCLUSIVE_VOLUME, exclusive
    return None


SHARED_MODES = ("ReadWriteMany", "ReadOnlyMany")


def _exclusive_claim(pod: Obj, claims: Sequence[Obj]) -> str | None:
    """The first claim of the pod (`persistentVolumeClaim` volumes) that the replacement could
    not use while the kept pod does, as "PersistentVolumeClaim <name>: <mode>", or None.

    ReadWriteOncePod, which the scheduler reads on the claim, leaves the replacement Pending.
    ReadWriteOnce is one node's: elsewhere the replacement stays in ContainerCreating with a
    Multi-Attach error; the attach-detach controller allows that only when the bound volume's
    modes (the claim's status, else what it asks for) include ReadWriteMany or ReadOnlyMany.
    A claim not in the view is unknown, so unsafe. A generic `ephemeral` volume is not looked
    at: the replacement gets a claim of its own."""
    by_name = {str(_meta(c).get("name")): c for c in claims}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = str((volume.get("persistentVolumeClaim") or {}).get("claimName") or "")
        if not name:
            continue
        found = by_name.get(name)
        if found is None:
            return f"PersistentVolumeClaim {name}: not found"
        asked = (found.get("spec") or {}).get("accessModes") or []
        bound = (found.get("status") or {}).get("accessModes") or asked
        if "ReadWriteOncePod" in asked:
            return f"PersistentVolumeClaim {name}: ReadWriteOncePod"
        if "ReadWriteOnce" in asked and not any(m in bound for m in SHARED_MODES):
            return f"PersistentVolumeClaim {name}: ReadWriteOnce"
    return None


def _host_ports(pod: Obj) -> list[int]:
    """The host ports the pod binds (with hostNetwork the API server defaults hostPort to each
    containerPort): a replacement on the same node is unschedulable while the kept pod runs."""
    spec = pod.get("spec") or {}
    return sorted({int(port["hostPort"]) for key in ("containers", "initContainers") for c in spec.get(key) or []
                   for port in c.get("ports") or [] if port.get("hostPort")})


def _capped(owner: Owner, labels: Labels, settings: Resolved, tally: _Tally) -> tuple[Reason, str] | None:
    if template_key(owner.uid, labels) in tally.templates:
        return Reason.SAME_TEMPLATE, f"{owner.kind} {owner.name}"
    per_owner = settings.value("quarantine-max-per-owner")
    if tally.per_owner[owner.uid] >= per_owner:
        return Reason.OWNER_CAP, f"{owner.kind} {owner.name}: {tally.per_owner[owner.uid]} of {per_owner}"
    per_namespace = settings.value("quarantine-max-per-namespace")
    if tally.namespace >= per_namespace:
        return Reason.NAMESPACE_CAP, f"{tally.namespace} of {per_namespace}"
    return None


def _expiry(pod: Obj, settings: Resolved) -> int:
    """Seconds from the quarantine to its deletion: quarantine-expiry, else the longest max-hold
    of the pod's containers (the hold began before the quarantine, so it is over by then), at
    least quarantine-after."""
    expiry = settings.value("quarantine-expiry")
    if expiry is None:
        containers = (pod.get("spec") or {}).get("containers") or []
        expiry = max((settings.value("max-hold", c.get("name")) for c in containers), default=0)
    return max(int(expiry), int(settings.value("quarantine-after")))


# ------------------------------------------------------------------ the pre-flight

def _preflight(pod: Obj, labels: Labels, relabelled: Labels, view: NamespaceView, workloads: _Workloads,
               settings: Resolved) -> tuple[Reason, str] | None:
    """Selection is by labels, not ownership: after the relabel nothing may still count the pod."""
    for pdb in view.pdbs:
        if selects((pdb.get("spec") or {}).get("selector"), relabelled):
            return Reason.PDB_SELECTS, f"PodDisruptionBudget {_meta(pdb).get('name')}"
    for hpa in view.hpas:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        target = workloads.by_name.get((str(ref.get("kind")), str(ref.get("name"))))
        name = f"HorizontalPodAutoscaler {_meta(hpa).get('name')}"
        if target is None and ref.get("kind") not in WORKLOAD_KINDS:
            return Reason.HPA_TARGET_UNKNOWN, f"{name} targets {ref.get('kind')} {ref.get('name')}"
        if target is not None and selects((target.get("spec") or {}).get("selector"), relabelled):
            return Reason.HPA_SELECTS, name
    for service in view.services:
        if map_selects((service.get("spec") or {}).get("selector"), relabelled):
            return Reason.SERVICE_SELECTS, f"Service {_meta(service).get('name')}"
    lost = _isolation(view.netpols, labels) - _isolation(view.netpols, relabelled)
    if lost and settings.value("quarantine-isolation") == "required":
        return Reason.ISOLATION_LOST, f"{'/'.join(sorted(lost))} isolation; install the podmedic-quarantine NetworkPolicy"
    short = _quota_short(pod, view.quotas)
    if short:
        return Reason.QUOTA_EXHAUSTED, short
    return None


def _isolation(policies: Sequence[Obj], labels: Labels) -> set[str]:
    """The directions (Ingress, Egress) in which some NetworkPolicy isolates pods with these labels."""
    out: set[str] = set()
    for policy in policies:
        spec = policy.get("spec") or {}
        if selects(spec.get("podSelector") or {}, labels):
            out |= set(spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])])
    return out


_QUOTA_ALIASES = {"cpu": "requests.cpu", "memory": "requests.memory", "ephemeral-storage": "requests.ephemeral-storage",
                  "count/pods": "pods"}


def _pod_usage(pod: Obj) -> dict[str, Fraction]:
    """What the replacement (the same template) will charge to a quota, computed as Kubernetes
    does: per resource, the larger of the app containers plus the sidecars (init containers with
    restartPolicy Always) and the peak of the init phase (each init container plus the sidecars
    started before it), plus the pod's overhead (for limits: only where limits are set)."""
    spec = pod.get("spec") or {}
    usage: dict[str, Fraction] = {"pods": Fraction(1)}
    for kind in ("requests", "limits"):
        running: dict[str, Fraction] = {}  # app containers and sidecars
        for container in spec.get("containers") or []:
            running = _plus(running, _resources(container, kind))
        sidecars: dict[str, Fraction] = {}
        peak: dict[str, Fraction] = {}
        for container in spec.get("initContainers") or []:
            own = _resources(container, kind)
            if container.get("restartPolicy") == "Always":
                sidecars = _plus(sidecars, own)
                running = _plus(running, own)
                during = sidecars
            else:
                during = _plus(sidecars, own)
            peak = _max(peak, during)
        total = _max(running, peak)
        overhead = {name: quantity(v) for name, v in (spec.get("overhead") or {}).items()
                    if kind == "requests" or name in total}
        usage.update({f"{kind}.{name}": value for name, value in _plus(total, overhead).items()})
    return usage


def _resources(container: Obj, kind: str) -> dict[str, Fraction]:
    return {name: quantity(v) for name, v in (((container.get("resources") or {}).get(kind)) or {}).items()}


def _plus(a: Mapping[str, Fraction], b: Mapping[str, Fraction]) -> dict[str, Fraction]:
    return {k: a.get(k, Fraction(0)) + b.get(k, Fraction(0)) for k in a.keys() | b.keys()}


def _max(a: Mapping[str, Fraction], b: Mapping[str, Fraction]) -> dict[str, Fraction]:
    return {k: max(a.get(k, Fraction(0)), b.get(k, Fraction(0))) for k in a.keys() | b.keys()}


def _quota_short(pod: Obj, quotas: Sequence[Obj]) -> str | None:
    try:
        need = _pod_usage(pod)
        for quota in quotas:
            status = quota.get("status") or {}
            hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
            used = status.get("used") or {}
            for name, limit in hard.items():
                wanted = need.get(_QUOTA_ALIASES.get(name, name))
                if wanted is not None and quantity(used.get(name, 0)) + wanted > quantity(limit):
                    return f"ResourceQuota {_meta(quota).get('name')}: {name} used {used.get(name, 0)} of {limit}"
    except ValueError as exc:
        return f"cannot read a quantity: {exc}"
    return None
