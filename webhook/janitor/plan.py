"""The janitor's decisions, as a pure function: which pod log directories to delete, which to keep,
and why (no I/O: the runner measures and lists, this module only decides, so every rule is a
table-driven unit test).

Rules (docs/logs.md):

    a mount point at or inside, not a dir   -> keep (unsafe-tree), live pod or begun deletion alike
    pod UID in the complete LIST            -> keep (pod-exists); record its pin / quarantine state
    deletion begun by an earlier run        -> delete (deletion-resumed)
    tree not measured safely                -> keep (unsafe-tree: too deep, out of time)
    now < last change + retention           -> keep (within-retention)
    quarantined: + quarantine-log-retention -> keep (quarantine-retention)
    pinned: until min(pin, last change + maxPin) -> keep (pinned)
    otherwise                               -> delete (expired)

Retention is the namespace's `log-retention` (else the global default), clamped to the admin's
[minRetention, maxRetention]; `quarantine-log-retention` likewise. A pod that no longer exists
cannot speak for itself, so its pin and quarantine state come from the record the janitor wrote
into its directory while it existed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from webhook.engine.config import GlobalConfig
from webhook.engine.settings import InvalidSetting, Resolved

# `<namespace>_<pod>_<uid>`: a DNS-1123 label, a DNS-1123 subdomain (neither holds "_"), a UUID.
# fullmatch with \Z-anchored classes: no newline, "/", "." or ".." can ever be a candidate.
_NS = r"([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)"
_UID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_NAME = re.compile(_NS + r"_([a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?)_" + _UID)
_SHORT = re.compile(_NS + "_" + _UID)  # a deleting name without the pod's name (below)
DELETING = ".podmedic-deleting."  # prefix of a directory whose deletion an earlier run began
NAME_MAX = 255  # bytes of a directory entry's name (the names matched here are ASCII)
LATEST = 253402300799  # 9999-12-31T23:59:59Z: the latest keepUntil a record may hold


@dataclass(frozen=True)
class PodDir:
    """A candidate: an entry of the exact form `<ns>_<pod>_<uid>` directly under a root."""

    root: str
    entry: str  # the name in the root (the candidate name, or its deleting name)
    namespace: str
    pod: str    # "" in a short deleting name
    uid: str

    @property
    def deleting(self) -> bool:
        return self.entry.startswith(DELETING)

    @property
    def name(self) -> str | None:
        """The candidate's own name, to give back to a tree whose deletion stopped; None when its
        deleting name is the short one (the pod's name is not in it)."""
        if not self.deleting:
            return self.entry
        return self.entry[len(DELETING):] if self.pod else None

    @property
    def deleting_name(self) -> str:
        """`DELETING + name`, or `DELETING + <ns>_<uid>` when that would exceed NAME_MAX (a pod
        name of up to 253 bytes makes names of up to 354): the rename must always succeed."""
        if self.deleting:
            return self.entry
        full = DELETING + self.entry
        return full if len(full.encode()) <= NAME_MAX else f"{DELETING}{self.namespace}_{self.uid}"


def parse_entry(root: str, entry: str) -> PodDir | None:
    """The candidate an entry name denotes, or None: anything else under a root is not ours."""
    if not entry.startswith(DELETING):
        match = _NAME.fullmatch(entry)
        return None if match is None else PodDir(root, entry, match.group(1), match.group(2), match.group(3))
    name = entry[len(DELETING):]
    match = _NAME.fullmatch(name)
    if match is not None:
        return PodDir(root, entry, match.group(1), match.group(2), match.group(3))
    short = _SHORT.fullmatch(name)
    return None if short is None else PodDir(root, entry, short.group(1), "", short.group(2))


@dataclass(frozen=True)
class Record:
    """What the janitor recorded in a pod's directory while the pod existed."""

    keep_until: float | None = None  # epoch seconds
    quarantined: bool = False


@dataclass(frozen=True)
class Pod:
    """What the janitor needs of a live pod: its podmedic annotations and the quarantine label."""

    uid: str
    namespace: str
    name: str
    annotations: Mapping[str, str]
    quarantined: bool


@dataclass(frozen=True)
class Found:
    """A candidate with what the runner measured of it (dead pods' trees only)."""

    dir: PodDir
    last_change_ns: int | None = None  # newest ctime in the tree (exact: deletion compares it)
    size: int | None = None            # bytes of the non-directory entries
    problem: str | None = None         # why the tree could not be measured safely
    record: Record | None = None

    @property
    def last_change(self) -> float | None:
        return None if self.last_change_ns is None else self.last_change_ns / 1e9


class Action(StrEnum):
    DELETE = "delete"
    KEEP = "keep"
    RECORD = "record"  # keep, and write the pod's pin / quarantine state into its directory


class Why(StrEnum):
    POD_EXISTS = "pod-exists"
    RESUMED = "deletion-resumed"
    UNSAFE = "unsafe-tree"
    RETAINED = "within-retention"
    QUARANTINED = "quarantine-retention"
    PINNED = "pinned"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Verdict:
    found: Found
    action: Action
    why: Why
    detail: str = ""
    until: float | None = None     # when the directory becomes deletable (kept dead pods)
    record: Record | None = None   # what to write (RECORD)


class Policy:
    """Retention per namespace and the pod's pin, resolved once with the engine's own settings
    (global default < namespace annotation; a pod's pin only if the admin lets pods set it)."""

    def __init__(self, config: GlobalConfig, namespaces: Mapping[str, Mapping[str, str]]):
        self._config = config
        self._namespaces = namespaces
        self._retention: dict[tuple[str, str], tuple[int, str]] = {}

    def retention(self, namespace: str, key: str = "log-retention") -> tuple[int, str]:
        """(seconds, note): the namespace's value clamped to the admin's bounds."""
        cached = self._retention.get((namespace, key))
        if cached is None:
            cached = self._retention[(namespace, key)] = self._resolve(namespace, key)
        return cached

    def _resolve(self, namespace: str, key: str) -> tuple[int, str]:
        bounds = self._config.logs.janitor
        settings = Resolved(self._config, self._namespaces.get(namespace, {}), {})
        note = ""
        try:
            seconds = int(settings.value(key))
        except InvalidSetting as exc:
            seconds, note = int(Resolved(self._config, {}, {}).value(key)), f"{exc}; global default used"
        clamped = min(max(seconds, bounds.min_retention), bounds.max_retention)
        if clamped != seconds:
            note = f"{key} {seconds}s clamped to {clamped}s by the admin's bounds"
        return clamped, note

    def record_of(self, pod: Pod) -> tuple[Record, str]:
        """The record a live pod's directory should hold, and a note when its pin is unusable."""
        settings = Resolved(self._config, self._namespaces.get(pod.namespace, {}), pod.annotations)
        try:
            pin: datetime | None = settings.value("log-keep-until")
        except InvalidSetting as exc:
            return Record(None, pod.quarantined), str(exc)
        ignored = [i.annotation for i in settings.ignored if i.annotation.endswith("log-keep-until")]
        note = f"{ignored[0]} not honoured: the admin does not let pods set it" if ignored else ""
        # Clamped to what read_record accepts: a pin past LATEST (9999-12-31T23:59:59.5Z, or an
        # offset carrying it into year 10000) or before 1970 would otherwise be rewritten every
        # run and, once the pod is gone, read back as no record, losing the pin and quarantine.
        keep = None if pin is None else min(max(pin.timestamp(), 0.0), float(LATEST))
        return Record(keep, pod.quarantined), note


def plan(found: Iterable[Found], pods: Mapping[str, Pod], policy: Policy, max_pin: int,
         now: float) -> list[Verdict]:
    """One verdict per candidate. `pods` is the complete LIST, by UID: the caller must not call
    this with a partial or failed list (it then deletes nothing)."""
    return [_verdict(f, pods.get(f.dir.uid), policy, max_pin, now) for f in found]


def _verdict(found: Found, pod: Pod | None, policy: Policy, max_pin: int, now: float) -> Verdict:
    # First: a begun deletion with a mount inside must stay too, and a live pod's unsafe entry
    # (a symlink, a mount point) gets no record written into it.
    if found.problem is not None:
        return Verdict(found, Action.KEEP, Why.UNSAFE, found.problem)
    if pod is not None:
        record, note = policy.record_of(pod)
        if record != found.record and not found.dir.deleting:
            return Verdict(found, Action.RECORD, Why.POD_EXISTS, note, record=record)
        return Verdict(found, Action.KEEP, Why.POD_EXISTS, note)
    if found.dir.deleting:
        return Verdict(found, Action.DELETE, Why.RESUMED)
    if found.last_change is None:
        return Verdict(found, Action.KEEP, Why.UNSAFE, "not measured")
    retention, note = policy.retention(found.dir.namespace)
    ends = {Why.RETAINED: found.last_change + retention}
    record = found.record or Record()
    if record.quarantined:
        extra, extra_note = policy.retention(found.dir.namespace, "quarantine-log-retention")
        ends[Why.QUARANTINED] = ends[Why.RETAINED] + extra
        note = "; ".join(n for n in (note, extra_note) if n)
    if record.keep_until is not None:
        ends[Why.PINNED] = min(record.keep_until, found.last_change + max_pin)
    why, until = max(ends.items(), key=lambda item: item[1])
    if now < until:
        return Verdict(found, Action.KEEP, why, note, until)
    return Verdict(found, Action.DELETE, Why.EXPIRED, note, until)
