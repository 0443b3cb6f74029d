"""Where podmedic learns a namespace's annotations (the opt-in and feature switches), labels
(the enforced Pod Security level), its LimitRanges' Container constraints (which podmedic's init
containers must fit) and, for the pvc log backend, its log claim's phase.

Why the webhook looks namespaces up itself: a MutatingWebhookConfiguration's namespaceSelector
sees labels only, and podmedic's opt-in is an annotation. Admission sits on the path of every
pod creation, so a lookup never does I/O: it is served from memory, filled either from a file
(standalone mode, `--namespaces-file`) or by list+watch caches per process (`KubeSource`).

Fail closed: a lookup that cannot say what the namespace holds returns no namespace and a
reason, never an empty namespace. Treating "lookup failed" as "no annotations, use the
defaults" is exactly Kyverno's CVE-2025-46342; the engine turns every reason into a skip with
an audit line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import yaml

from webhook.engine.config import unreadable
from webhook.engine.decisions import Reason
from webhook.engine.namespace import Constraint, Lookup, Namespace
from webhook.kube.client import kube_api_client
from webhook.kube.limitranges import LimitRanges, limit_range
from webhook.kube.reflector import Reflector

if TYPE_CHECKING:  # the client is slow to import; file mode must not pay for it
    import kubernetes

T = TypeVar("T")

# How long a review waits at most for a namespace its watch has not delivered yet
# (KubeSource._awaited; never past the review's deadline): far above a healthy watch's milliseconds.
ARRIVAL_WAIT_SECONDS = 1.0
GIVE_UP_SECONDS = 30.0


class NamespaceSource(Protocol):
    def get(self, name: str, wait: float = 0.0) -> Lookup:
        """Never raises, never does I/O: served from memory on every admission review. `wait`:
        seconds a watched source may wait for a namespace its watch has not delivered yet (an
        admission review passes what its deadline leaves; other readers pass none)."""

    def ready(self) -> bool:
        """The first full list is done (a file: parsed); /readyz reports it."""

    def start(self) -> None:
        """Start the background watch (nothing to do for files)."""

    def stop(self) -> None: ...


def namespace_from(obj: Any, where: str) -> Namespace:
    """A Namespace object (dict, as the API or `kubectl get ns -o yaml` prints it) -> Namespace.

    Strict like the API server: annotation and label values must be strings, so an unquoted
    `7` in a hand-written file is reported instead of silently becoming something else."""
    if not isinstance(obj, Mapping) or obj.get("kind", "Namespace") != "Namespace":
        raise ValueError(f"{where}: expected a Namespace object")
    metadata = obj.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: a Namespace without metadata.name")
    return Namespace(name, _strings(meta.get("annotations"), f"{where}: namespace {name}: annotations"),
                     _strings(meta.get("labels"), f"{where}: namespace {name}: labels"))


def _strings(value: Any, where: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ValueError(f"{where}: {key!r}: values must be strings (quote them in YAML)")
    return MappingProxyType(dict(value))


def _lookup(cache: Mapping[str, Namespace], name: str) -> Lookup:
    namespace = cache.get(name)
    return Lookup(namespace, None) if namespace else Lookup(None, Reason.NAMESPACE_UNKNOWN)


class StaticSource:
    """A fixed set of namespaces (the offline CLI, tests); always ready."""

    def __init__(self, namespaces: Iterable[Namespace]):
        self._cache: dict[str, Namespace] = {}
        for ns in namespaces:
            if ns.name in self._cache:
                raise ValueError(f"namespace {ns.name} is listed twice")
            self._cache[ns.name] = ns

    def get(self, name: str, wait: float = 0.0) -> Lookup:
        """The file or list is the whole truth: nothing to wait for."""
        return _lookup(self._cache, name)

    def ready(self) -> bool:
        return True

    def start(self) -> None:
        """Nothing to watch."""

    def stop(self) -> None:
        """Nothing to stop."""


class FileSource(StaticSource):
    """Standalone mode (`make run`): the Namespace objects of a file, as `kubectl get ns -o yaml`
    prints them (a `List`), or single Namespace documents, one or several (`---`). With a log
    claim, the file's PersistentVolumeClaims of that name give each namespace its claim's phase
    (`kubectl get ns,pvc -A -o yaml`); others are ignored. Its LimitRanges give each namespace
    its Container constraints (`kubectl get ns,limitrange -A -o yaml`). Read once: a bad file fails at start
    with a ValueError naming the file, not later per review."""

    def __init__(self, path: str | os.PathLike[str], claim: str | None = None):
        try:
            with open(path, encoding="utf-8") as f:
                documents = list(yaml.safe_load_all(f))
        except OSError as exc:
            raise ValueError(f"cannot read namespaces file {path}: {exc.strerror}") from exc
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"namespaces file {path} is not valid YAML: {exc}") from exc
        except ValueError as exc:  # a scalar the loader cannot construct: a huge integer, 2020-13-45
            raise ValueError(f"namespaces file {path} cannot be read: {unreadable(exc)}") from None
        except RecursionError:  # the loader recurses per level of nesting
            raise ValueError(f"namespaces file {path} cannot be read: nested too deeply to read") from None
        namespaces, phases, ranges = [], {}, LimitRanges()
        for where, obj in _objects(documents, str(path)):
            kind = obj.get("kind") if isinstance(obj, Mapping) else None
            if kind == "LimitRange":
                ranges.put(*_file_fact(limit_range, obj, where))
            elif kind != "PersistentVolumeClaim":
                namespaces.append(namespace_from(obj, where))
            elif claim is not None and (obj.get("metadata") or {}).get("name") == claim:
                namespace, phases[namespace] = _file_fact(claim_phase, obj, where)
        if not namespaces:
            raise ValueError(f"namespaces file {path} holds no Namespace objects")
        try:
            super().__init__(dataclasses.replace(ns, log_claim=phases.get(ns.name), limit_range=ranges.of(ns.name))
                             for ns in namespaces)
        except ValueError as exc:
            raise ValueError(f"namespaces file {path}: {exc}") from exc


def _file_fact(read: Callable[[Any], T], obj: Any, where: str) -> T:
    try:
        return read(obj)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _objects(documents: Iterable[Any], path: str) -> Iterable[tuple[str, Any]]:
    """(where, object) for each Namespace, PersistentVolumeClaim or LimitRange, Lists unpacked."""
    for number, doc in enumerate(documents, 1):
        where = f"{path}: document {number}"
        if doc is None:  # an empty document, e.g. a trailing `---`
            continue
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if kind in ("List", "NamespaceList", "PersistentVolumeClaimList", "LimitRangeList"):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ValueError(f"{where}: items must be a list")
            yield from ((f"{where}: item {i}", item) for i, item in enumerate(items, 1))
        elif kind in ("Namespace", "PersistentVolumeClaim", "LimitRange"):
            yield where, doc
        else:
            raise ValueError(f"{where}: expected kind Namespace, PersistentVolumeClaim, LimitRange or a List, "
                             f"got {kind!r}")


class KubeSource:
    """One list+watch cache of all Namespaces, one of all LimitRanges and, when a log claim is
    watched, one of the PersistentVolumeClaims named like it in every namespace
    (webhook.kube.reflector: timing, backoff, relists).

    - get() reads the in-memory dict: no API call per review. Each Namespace carries its claim's
      phase (`log_claim`) and its LimitRanges' Container constraints (`limit_range`), so the
      engine learns them from the lookup it already gets, and the plan memo (which keys on the
      Namespace object) misses once either changes.
    - ready() once every first list has completed; it stays true during an API outage, because
      reviews are still answered from the (stale) cache; an unready webhook would instead fail
      every pod creation of the cluster.
    - A relist replaces the served dict in one assignment, so namespaces deleted meanwhile
      disappear and readers never see a half-built cache; watch events change single entries
      (atomic dict operations). The watch threads write under one lock, so a namespace event and
      a claim or LimitRange event never overwrite each other's news.

    `last_sync` (the stalest watch; None before the first lists) and `relists` (all watches
    together) feed metrics and health.
    """

    def __init__(self, api_client: kubernetes.client.ApiClient, *, claim: str | None = None,
                 limit_ranges: bool = True, **timing: Any):
        """`limit_ranges=False`: no LimitRange watch, for a reader of annotations only (the
        quarantine controller, whose RBAC has no limitranges: least privilege)."""
        from kubernetes.client import CoreV1Api

        api = CoreV1Api(api_client)
        self._cache: dict[str, Namespace] = {}
        self._namespaces: dict[str, Namespace] = {}  # as listed, without the facts of other objects
        self._phases: dict[str, str] = {}  # namespace -> its log claim's phase
        self._ranges = LimitRanges()
        self._claim = claim
        self._write = threading.Condition()  # notified when namespaces arrive (get() may wait for one)
        self._missed_at: dict[str, float] = {}  # namespace -> when a review first found it missing
        self._ready = False  # every reflector has synced (see ready())
        self.on_sync: Callable[[float], None] | None = None  # called with last_sync whenever it moves
        self._reflectors = [Reflector("namespaces", api.list_namespace, _Namespaces(self), on_sync=self._synced,
                                      **timing)]
        if limit_ranges:
            self._reflectors.append(Reflector("limitranges", api.list_limit_range_for_all_namespaces,
                                              _LimitRanges(self), on_sync=self._synced, **timing))
        if claim is not None:
            self._reflectors.append(Reflector("claims", api.list_persistent_volume_claim_for_all_namespaces,
                                              _Claims(self), selector=f"metadata.name={claim}", on_sync=self._synced,
                                              **timing))

    @property
    def convergence_bound(self) -> float:
        """Seconds after the API answers again within which the cache has relisted (this
        instance's CONVERGENCE_BOUND_SECONDS)."""
        return self._reflectors[0].convergence_bound

    @property
    def last_sync(self) -> float | None:
        syncs = [r.last_sync for r in self._reflectors]
        return None if None in syncs else min(s for s in syncs if s is not None)

    def _synced(self) -> None:
        last_sync, listener = self.last_sync, self.on_sync
        if last_sync is not None and listener is not None:
            listener(last_sync)

    @property
    def relists(self) -> int:
        return sum(r.relists for r in self._reflectors)

    def get(self, name: str, wait: float = 0.0) -> Lookup:
        if not self.ready():
            return Lookup(None, Reason.NAMESPACE_SOURCE_NOT_SYNCED)
        namespace = self._cache.get(name)
        if namespace:
            return Lookup(namespace, None)
        return self._awaited(name, wait) if wait > 0 else Lookup(None, Reason.NAMESPACE_UNKNOWN)

    def _awaited(self, name: str, wait: float) -> Lookup:
        """A namespace the cache lacks, waited for up to `wait` seconds. The API server's
        NamespaceLifecycle admission refuses a pod in a namespace that does not exist, before any
        webhook, so a review for one the cache lacks means the watch has not delivered it yet:
        `kubectl apply` of a Namespace, its ServiceAccount and a pod in one go sent the pod within
        the watch's lag (about 1 review in 120 on the real API server here, which skipped it as
        namespace-unknown). A name has ARRIVAL_WAIT_SECONDS from the first review that found it
        missing to arrive, whatever each review's deadline leaves it; after that no review waits
        for it until GIVE_UP_SECONDS after that first review, so a broken watch cannot hold every
        review of a namespace."""
        with self._write:
            if name in self._cache:  # arrived since get() looked: no miss to record
                return _lookup(self._cache, name)
            now = time.monotonic()
            first = self._missed_at.setdefault(name, now)
            if now - first >= GIVE_UP_SECONDS:  # missing for long: one more window
                first = self._missed_at[name] = now
            window = first + ARRIVAL_WAIT_SECONDS - now
            if window > 0:
                self._write.wait_for(lambda: name in self._cache, min(wait, window))
            return _lookup(self._cache, name)

    def ready(self) -> bool:
        """Latched: get() asks on every admission review, and a reflector's `synced` never goes
        back to False once its first list is done, so after that the answer is one attribute read."""
        if not self._ready:
            self._ready = all(r.synced for r in self._reflectors)
        return self._ready

    def start(self) -> None:
        for reflector in self._reflectors:
            reflector.start()

    def stop(self) -> None:
        for reflector in self._reflectors:
            reflector.stop()

    def _phase(self, namespace: str) -> str | None:
        return self._phases.get(namespace) if self._claim is not None else None

    def _current(self, ns: Namespace) -> bool:
        """Does `ns` carry its namespace's current claim phase and constraints?"""
        return ns.log_claim == self._phase(ns.name) and ns.limit_range == self._ranges.of(ns.name)

    def _with_facts(self, ns: Namespace) -> Namespace:
        return ns if self._current(ns) else dataclasses.replace(ns, log_claim=self._phase(ns.name),
                                                                limit_range=self._ranges.of(ns.name))

    def _kept(self, name: str, ns: Namespace) -> Namespace:
        """The served object itself while its facts are unchanged (a plan memo hit)."""
        cached = self._cache.get(name)
        return cached if cached is not None and self._current(cached) else self._with_facts(ns)

    def set_namespaces(self, namespaces: dict[str, Namespace]) -> None:
        with self._write:
            self._namespaces = namespaces
            self._cache = {name: self._with_facts(ns) for name, ns in namespaces.items()}
            self._missed_at.clear()
            self._write.notify_all()

    def set_namespace(self, name: str, ns: Namespace | None) -> None:
        with self._write:
            if ns is None:
                self._namespaces.pop(name, None)
                self._cache.pop(name, None)
            else:
                self._namespaces[name] = ns
                self._cache[name] = self._with_facts(ns)
                self._missed_at.pop(name, None)
                self._write.notify_all()

    def set_phases(self, phases: dict[str, str]) -> None:
        with self._write:
            self._phases = phases
            self._refresh_all()

    def set_phase(self, namespace: str, phase: str | None) -> None:
        with self._write:
            if phase is None:
                self._phases.pop(namespace, None)
            else:
                self._phases[namespace] = phase
            self._refresh(namespace)

    def set_limit_ranges(self, ranges: LimitRanges) -> None:
        with self._write:
            self._ranges = ranges
            self._refresh_all()

    def set_limit_range(self, namespace: str, name: str, constraints: tuple[Constraint, ...] | None) -> None:
        with self._write:
            self._ranges.put(namespace, name, constraints)
            self._refresh(namespace)

    def _refresh_all(self) -> None:
        self._cache = {name: self._kept(name, ns) for name, ns in self._namespaces.items()}

    def _refresh(self, namespace: str) -> None:
        ns = self._namespaces.get(namespace)
        if ns is not None:
            self._cache[namespace] = self._kept(namespace, ns)


class _Namespaces:
    """The Namespace watch's handler."""

    def __init__(self, source: KubeSource):
        self._source = source

    def replace(self, items: list[dict[str, Any]]) -> None:
        self._source.set_namespaces({ns.name: ns for ns in (namespace_from(item, "namespace list") for item in items)})

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._source.set_namespace(obj["metadata"]["name"], None)
        else:
            ns = namespace_from(obj, "namespace watch")
            self._source.set_namespace(ns.name, ns)


class _Claims:
    """The log claims' watch handler: namespace -> the claim's phase."""

    def __init__(self, source: KubeSource):
        self._source = source

    def replace(self, items: list[dict[str, Any]]) -> None:
        self._source.set_phases(dict(claim_phase(item) for item in items))

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        namespace, phase = claim_phase(obj)
        self._source.set_phase(namespace, None if kind == "DELETED" else phase)


class _LimitRanges:
    """The LimitRanges' watch handler: namespace -> name -> Container constraints."""

    def __init__(self, source: KubeSource):
        self._source = source

    def replace(self, items: list[dict[str, Any]]) -> None:
        ranges = LimitRanges()
        for item in items:
            ranges.put(*limit_range(item))
        self._source.set_limit_ranges(ranges)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        namespace, name, constraints = limit_range(obj)
        self._source.set_limit_range(namespace, name, None if kind == "DELETED" else constraints)


def claim_phase(obj: Any) -> tuple[str, str]:
    """A PersistentVolumeClaim -> (its namespace, its phase: Pending, Bound or Lost, and
    `Terminating` once it is being deleted: the kubelet starts no new pod on such a claim)."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise ValueError("a PersistentVolumeClaim without metadata.namespace")
    if meta.get("deletionTimestamp"):
        return namespace, "Terminating"
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    return namespace, phase if isinstance(phase, str) and phase else "Pending"


def source_from_args(namespaces_file: str | None, kubeconfig: str | None, claim: str | None = None) -> NamespaceSource:
    """--namespaces-file wins (standalone mode); otherwise watch the API. `claim`: the log
    claim's name, whose phase each Namespace carries (None: the log backend needs no claim)."""
    if namespaces_file:
        return FileSource(namespaces_file, claim)
    return KubeSource(kube_api_client(kubeconfig), claim=claim)


def live_lookup(kubeconfig: str, claim: str | None = None) -> Callable[[str], Lookup]:
    """Read each namespace (its log claim, its LimitRanges) once from a live cluster (a CLI run,
    not a watch)."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    api = CoreV1Api(kube_api_client(kubeconfig))
    cache: dict[str, Lookup] = {}

    def lookup(name: str) -> Lookup:
        if name not in cache:
            try:
                meta = api.read_namespace(name).metadata  # never None from an API server: never inject with defaults
                phase = _read_phase(api, name, claim) if claim else None
                cache[name] = (Lookup(Namespace(name, meta.annotations or {}, meta.labels or {}, phase,
                                                _read_limit_ranges(api, name)), None) if meta
                               else Lookup(None, Reason.NAMESPACE_LOOKUP_FAILED))
            except ApiException as exc:
                cache[name] = Lookup(None, Reason.NAMESPACE_UNKNOWN if exc.status == 404 else Reason.NAMESPACE_LOOKUP_FAILED)
            except Exception:  # network errors: never inject with defaults
                cache[name] = Lookup(None, Reason.NAMESPACE_LOOKUP_FAILED)
        return cache[name]

    return lookup


def _read_limit_ranges(api: Any, namespace: str) -> tuple[Constraint, ...]:
    """The namespace's LimitRanges' Container constraints; API errors raise."""
    ranges = LimitRanges()
    for item in json.loads(api.list_namespaced_limit_range(namespace, _preload_content=False).data)["items"]:
        ranges.put(*limit_range(item))
    return ranges.of(namespace)


def _read_phase(api: Any, namespace: str, claim: str) -> str | None:
    """The claim's phase, None when it does not exist; other API errors raise."""
    from kubernetes.client.exceptions import ApiException

    try:
        obj = api.read_namespaced_persistent_volume_claim(claim, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return claim_phase(json.loads(obj.data))[1]
