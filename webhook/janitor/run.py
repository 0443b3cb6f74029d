"""One janitor run: list the candidates of every root, then the pods (one complete LIST), measure
the dead pods' trees, plan, act, and account for everything (one audit line per directory
considered and per deletion, a summary line, Prometheus metrics).

The order matters: the directory names are read *before* the pods are listed. A directory that
exists before the LIST began belongs to a pod created before it, so a pod that is alive is in
the list; a pod created after the LIST has a directory the janitor has not seen this run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from webhook.engine.config import GlobalConfig
from webhook.janitor import tree
from webhook.janitor.plan import Action, Found, Pod, Policy, Verdict, plan

Metadata = dict[str, Any]
UNLISTED = "_other"  # the metrics' namespace label of a directory whose namespace is not in the LIST
Audit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Sources:
    """Where the truth comes from: each call returns a complete list or raises."""

    pods: Callable[[], list[Metadata]]
    namespaces: Callable[[], list[Metadata]]


@dataclass
class Tally:
    """Per (namespace, outcome): directories and bytes; errors by kind. Feeds the summary and the
    metrics. The namespace is UNLISTED for a directory whose namespace is not in the LIST."""

    directories: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def count(self, namespace: str, outcome: str, size: int | None) -> None:
        self.directories[(namespace, outcome)] += 1
        self.bytes[(namespace, outcome)] += size or 0


def run(config: GlobalConfig, sources: Sources, audit: Audit, *, dry_run: bool,
        clock: Callable[[], float] = time.time) -> Tally:
    """Sweep every configured root once. Nothing is deleted unless both lists succeed."""
    tree.check_platform()
    tally = Tally()
    deadline = time.monotonic() + config.logs.janitor.run_seconds
    roots, found = _open_roots(config.logs.roots, audit, tally)
    try:
        try:
            pods = _pods(sources.pods(), config.prefix)
            namespaces = {m["name"]: m.get("annotations") or {} for m in sources.namespaces()}
        except Exception as exc:  # any failure: the list is not known complete, so act on nothing
            tally.errors["list-failed"] += 1
            audit({"event": "janitor-list-failed", "error": str(exc), "deleted": 0})
            return tally
        now = clock()
        measured = [_measure(roots[c.dir.root], c, pods, deadline) for c in found]
        policy = Policy(config, namespaces)
        for verdict in plan(measured, pods, policy, config.logs.janitor.max_pin, now):
            # a label per directory name would let tenants grow the metrics without bound
            label = verdict.found.dir.namespace if verdict.found.dir.namespace in namespaces else UNLISTED
            _act(roots[verdict.found.dir.root], verdict, label, dry_run, deadline, audit, tally)
    finally:
        for root in roots.values():
            root.close()
    return tally


def _open_roots(paths: list[str], audit: Audit,
                tally: Tally) -> tuple[dict[str, tree.Root], list[tree.Candidate]]:
    roots: dict[str, tree.Root] = {}
    found: list[tree.Candidate] = []
    for path in paths:
        try:
            root = tree.open_root(path)
        except tree.Unsafe as exc:
            tally.errors["root-unusable"] += 1
            audit({"event": "janitor-root-skipped", "root": path, "error": str(exc)})
            continue
        roots[path] = root
        try:
            found.extend(tree.candidates(root))
        except OSError as exc:  # the root's listing failed: none of its entries is considered
            tally.errors["root-unusable"] += 1
            audit({"event": "janitor-root-skipped", "root": path, "error": exc.strerror or str(exc)})
    return roots, found


def _pods(items: list[Metadata], prefix: str) -> dict[str, Pod]:
    """The live pods by UID, with only the annotations the janitor reads."""
    label = prefix + "quarantined"
    return {m["uid"]: Pod(m["uid"], m.get("namespace", ""), m["name"],
                          {k: v for k, v in (m.get("annotations") or {}).items() if k.startswith(prefix)},
                          (m.get("labels") or {}).get(label) == "true")
            for m in items}


def _measure(root: tree.Root, candidate: tree.Candidate, pods: Mapping[str, Pod], deadline: float) -> Found:
    """Read what a verdict needs: a live pod's record; a dead pod's tree (never a live one's)."""
    entry = candidate.dir.entry
    if candidate.problem is not None:
        return Found(candidate.dir, problem=candidate.problem)
    record = tree.read_record(root, entry)
    if candidate.dir.uid in pods or candidate.dir.deleting:
        return Found(candidate.dir, record=record)
    measured = tree.measure(root, entry, deadline)
    return Found(candidate.dir, measured.last_change_ns, measured.size, measured.problem, record)


def _act(root: tree.Root, verdict: Verdict, label: str, dry_run: bool, deadline: float, audit: Audit,
         tally: Tally) -> None:
    found, d = verdict.found, verdict.found.dir
    line = {"event": "janitor", "root": d.root, "directory": d.entry, "namespace": d.namespace, "pod": d.pod,
            "uid": d.uid, "action": str(verdict.action), "reason": str(verdict.why), "detail": verdict.detail,
            "lastChange": _time(found.last_change), "until": _time(verdict.until), "bytes": found.size,
            "dryRun": dry_run}
    audit(line)
    if verdict.action is Action.RECORD and verdict.record is not None:
        try:
            tree.write_record(root, d.entry, verdict.record)
        except (OSError, tree.Leave) as exc:  # Leave: the tenant's doing, left for the next run
            tally.errors["left" if isinstance(exc, tree.Leave) else "record-failed"] += 1
            audit({**line, "event": "janitor-record-failed", "error": str(exc)})
    if verdict.action is not Action.DELETE:
        tally.count(label, "kept", found.size)
        return
    if dry_run:
        tally.count(label, "would-delete", found.size)
        return
    outcome, error = _delete(root, verdict, deadline)
    if error:
        tally.errors[outcome] += 1
    tally.count(label, "deleted" if outcome == "deleted" else "kept", found.size)
    audit({"event": "janitor-deletion", "root": d.root, "directory": d.entry, "namespace": d.namespace,
           "uid": d.uid, "outcome": outcome, "error": error, "bytes": found.size})


def _delete(root: tree.Root, verdict: Verdict, deadline: float) -> tuple[str, str]:
    """('deleted', '') or (what stopped it, why): changed trees get their name back."""
    found = verdict.found
    since = found.last_change_ns if found.last_change_ns is not None else time.time_ns()
    entry = found.dir.entry
    try:
        entry = tree.begin_deletion(root, found.dir)
        tree.remove(root, entry, since, deadline)
    except tree.Changed as exc:
        try:
            tree.restore_name(root, found.dir, entry)
        except OSError as failed:  # this tree's trouble, not the run's: the others still go
            return "error", f"{exc}; its name could not be restored: {failed.strerror or failed}"
        return "changed", str(exc)
    except tree.Leave as exc:
        return "left", str(exc)
    except OSError as exc:
        return "error", exc.strerror or str(exc)
    return "deleted", ""


def _time(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
