"""The controller's I/O shell: the watch caches, leader election, one pass per interval while
leading, and each decision carried out (patch, delete, Events, metrics, a log line).

A pass: every namespace whose pods (from the pod watch cache) include a quarantined pod or a
candidate (decide.candidate, the rule `decide` applies: a namespace where quarantine is off
costs no read) is read afresh (cluster.view) and decided by the pure core (decide.py). The
caches may lag; the writes cannot: every patch and delete is guarded by the pod's uid and
resourceVersion, so an action on a stale pod fails with 409 (or 422, when a label the patch
removes is already gone), counted as a conflict, and the next pass decides again.
Skips are reported once per pod and reason (an Event and a metric), not every pass.

`quarantine-after` is timed on this process's clock: each pass first records the NotReady
episodes it sees (decide.observe, kept in `seen`), and a pod counts as NotReady from the later
of its Ready condition's lastTransitionTime (the node's clock) and the pass that first saw the
episode, so a node clock running behind never quarantines a pod early. A new process (a
restart, a new leader) has seen nothing yet: a pod already NotReady waits `quarantine-after`
once more.

A pass renews the lease between namespaces and decisions when a renew period has passed (the
loop cannot while a pass runs), and checks it before every write. A pass stopped because the
lease was lost resumes, next pass, at the namespace where it stopped: were every pass to start
at the first namespace, slow reads would keep the last ones from ever being decided.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook.engine.config import GlobalConfig
from webhook.kube.namespaces import NamespaceSource
from webhook.quarantine import metrics
from webhook.quarantine.cluster import Cluster
from webhook.quarantine.decide import Decision, Episode, Marks, Obj, candidate, decide, is_quarantined, observe
from webhook.quarantine.lease import LeaderElector
from webhook.quarantine.patches import quarantine_ops
from webhook.quarantine.pods import PodCache
from webhook.quarantine.reasons import EVENT_REASON, Action

log = logging.getLogger("podmedic.quarantine")


@dataclass(frozen=True)
class Options:
    interval: float = 10.0     # seconds between passes while leading
    dry_run: bool = False      # log each patch and delete instead of sending it
    identity: str = "podmedic-quarantine"
    lease_namespace: str = "podmedic-system"
    lease_name: str = "podmedic-quarantine"
    lease_seconds: int = 15
    renew_seconds: float = 2.0


class Controller:
    def __init__(self, config: GlobalConfig, cluster: Cluster, pods: PodCache, namespaces: NamespaceSource,
                 options: Options, clock: Callable[[], float] = time.time):
        self.config, self.cluster, self.pods, self.namespaces = config, cluster, pods, namespaces
        self.options, self.clock = options, clock
        self.marks = Marks(config.prefix)
        self.elector = LeaderElector(cluster.coordination, options.lease_namespace, options.lease_name,
                                     options.identity, lease_seconds=options.lease_seconds,
                                     renew_seconds=options.renew_seconds)
        self._reported: set[tuple[str, str, str]] = set()  # (pod uid, action, reason) already told
        self.seen: dict[str, Episode] = {}  # pod uid -> the NotReady episode and when a pass first saw it
        self._stopping = threading.Event()
        self._resume: str | None = None  # the namespace the last pass stopped at, if it stopped

    # -- the loop

    def run(self) -> None:
        """Until stop(): renew or seek the lease every renew period; a pass every interval while leading."""
        self.namespaces.start()
        self.pods.start()
        last_pass = 0.0
        try:
            while not self._stopping.is_set():
                leading = self.elector.try_acquire_or_renew()
                metrics.LEADER.set(1 if leading else 0)
                if (leading and self.pods.synced and self.namespaces.ready()
                        and time.monotonic() - last_pass >= self.options.interval):
                    last_pass = time.monotonic()
                    self.run_pass()
                self._stopping.wait(self.options.renew_seconds)
        finally:
            self.elector.release()
            metrics.LEADER.set(0)
            self.pods.stop()
            self.namespaces.stop()

    def stop(self) -> None:
        self._stopping.set()

    def run_pass(self) -> list[Decision]:
        """One pass over every namespace with something to decide; returns what was decided."""
        now = self.clock()
        snapshot = self.pods.snapshot()
        self.seen = observe(snapshot, self.seen, now)
        by_namespace: dict[str, list[Obj]] = {}
        for pod in snapshot:
            by_namespace.setdefault(pod["metadata"]["namespace"], []).append(pod)
        decided: list[Decision] = []
        quarantined = 0
        order = sorted(by_namespace)
        if self._resume is not None:
            start = bisect.bisect_left(order, self._resume)
            order = order[start:] + order[:start]
            self._resume = None
        for namespace in order:
            pods = by_namespace[namespace]
            self.elector.renew_if_due()
            count = sum(1 for p in pods if is_quarantined(p, self.marks))
            quarantined += count
            found = self.namespaces.get(namespace).namespace
            if found is None:
                continue
            if not count and not any(candidate(p, self.config, found.annotations, self.marks, now, self.seen) is not None
                                     for p in pods):
                continue
            try:
                view = self.cluster.view(namespace, found.annotations, pods)
            except Exception as exc:  # no decision on an incomplete view
                log.warning("cannot read namespace %s (%s): no decision there this pass", namespace, _status(exc))
                metrics.PASSES.labels("read-error").inc()
                continue
            for decision in decide(view, self.config, now, self.seen):
                if not self.elector.renew_if_due():
                    log.warning("lost the lease during a pass: stopping it at namespace %s", namespace)
                    self._resume = namespace
                    return decided
                self.act(decision, now)
                decided.append(decision)
        metrics.QUARANTINED.set(quarantined)
        metrics.PASSES.labels("done").inc()
        self._forget_gone({p["metadata"]["uid"] for p in self.pods.snapshot()})
        return decided

    def _forget_gone(self, uids: set[str]) -> None:
        self._reported = {r for r in self._reported if r[0] in uids}

    # -- carrying a decision out

    def act(self, d: Decision, now: float) -> None:
        key = (d.uid, d.action.value, d.reason.value)
        if d.action is Action.SKIP or self.options.dry_run:
            if key in self._reported:
                return
            self._reported.add(key)
        where = f"{d.namespace}/{d.name}"
        if self.options.dry_run:  # nothing written: no patch, no delete, no Event
            detail = json.dumps(quarantine_ops(d, self.marks, now)) if d.action in (Action.QUARANTINE, Action.MARK) else ""
            log.info("dry-run: would %s pod %s: %s %s", d.action.value, where, d.describe(), detail)
            metrics.DECISIONS.labels(d.action.value, d.reason.value).inc()
            return
        ops = quarantine_ops(d, self.marks, now) if d.action in (Action.QUARANTINE, Action.MARK) else []
        try:
            if ops:
                self.cluster.patch_pod(d.pod, ops)
            elif d.action is Action.DELETE:
                self.cluster.delete_pod(d.pod)
        except Exception as exc:
            status = getattr(exc, "status", None)
            kind = "conflict" if status in (404, 409) or (bool(ops) and _patch_not_applicable(exc)) else "error"
            metrics.FAILURES.labels(d.action.value, kind).inc()
            level = logging.INFO if kind == "conflict" else logging.WARNING
            log.log(level, "%s of pod %s not done (%s): deciding again next pass", d.action.value, where, _status(exc))
            return
        log.info("%s pod %s: %s", d.action.value, where, d.describe())
        metrics.DECISIONS.labels(d.action.value, d.reason.value).inc()
        self._events(d, now)

    def _events(self, d: Decision, now: float) -> None:
        reason = EVENT_REASON[d.action]
        warning = d.action is Action.SKIP
        message = d.describe()
        if d.action is Action.QUARANTINE and d.owner:
            message += f"; {d.owner.kind} {d.owner.name} creates a replacement"
        if d.observed and d.action is not Action.SKIP:
            message += f"; observed: {d.observed}"
        self.cluster.event(d.namespace, "Pod", d.name, d.uid, reason, message, warning, now, self.options.identity)
        if d.owner:
            self.cluster.event(d.namespace, d.owner.kind, d.owner.name, d.owner.uid, reason,
                               f"pod {d.name}: {message}", warning, now, self.options.identity)


def _patch_not_applicable(exc: Exception) -> bool:
    """A 422 because the JSON patch itself did not apply (a `remove` of a label already gone, the
    uid `test` of a replaced pod): the pod changed since the cache saw it, a conflict like 409
    (it fails before the resourceVersion is compared). The API server answers that with a bare
    Status, no causes; a validation failure (e.g. `metadata.annotations: Too long`) names its
    causes and stays an error."""
    if getattr(exc, "status", None) != 422:
        return False
    try:
        body = json.loads(getattr(exc, "body", None) or "")
    except (TypeError, ValueError):
        return False
    if not isinstance(body, dict) or body.get("kind") != "Status" or body.get("reason") != "Invalid":
        return False
    details = body.get("details")
    return not (isinstance(details, dict) and details.get("causes"))


def _status(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"HTTP {status}" if status else f"{type(exc).__name__}: {exc}"

