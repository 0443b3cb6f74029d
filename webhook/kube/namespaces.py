"""Where podmedic learns a namespace's annotations (the opt-in and feature switches) and labels
(the enforced Pod Security level).

Why the webhook looks namespaces up itself: a MutatingWebhookConfiguration's namespaceSelector
sees labels only, and podmedic's opt-in is an annotation. Admission sits on the path of every
pod creation, so a lookup never does I/O: it is served from memory, filled either from a file
(standalone mode, `--namespaces-file`) or by one list+watch cache per process (`KubeSource`).

Fail closed: a lookup that cannot say what the namespace holds returns no namespace and a
reason, never an empty namespace. Treating "lookup failed" as "no annotations, use the
defaults" is exactly Kyverno's CVE-2025-46342; the engine turns every reason into a skip with
an audit line.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from webhook.engine.decisions import Reason
from webhook.engine.namespace import Lookup, Namespace
from webhook.kube.client import CONNECT_RETRIES, kube_api_client

if TYPE_CHECKING:  # the client is slow to import; file mode must not pay for it
    import kubernetes

log = logging.getLogger("podmedic.namespaces")

# Watch timing. Each watch asks the API server to end it after WATCH_TIMEOUT_SECONDS and is
# re-opened from the last resourceVersion (cheap: served from the API server's watch cache), so a
# connection that died without a FIN (network partition) is noticed within READ_TIMEOUT_SECONDS.
# After a failure the cache is kept (stale while unreachable) and a relist is retried with
# capped exponential backoff and jitter. While connected, a change is applied as soon as its
# event arrives (milliseconds).
WATCH_TIMEOUT_SECONDS = 10
READ_MARGIN_SECONDS = 5
READ_TIMEOUT_SECONDS = WATCH_TIMEOUT_SECONDS + READ_MARGIN_SECONDS
CONNECT_TIMEOUT_SECONDS = 2.0
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 5.0
# Once the API server answers again, the cache has converged (relisted: changed namespaces
# updated, deleted ones gone) within this bound, plus the list request's own duration: the
# attempt in flight fails within its connect timeout, the next one starts within the capped
# backoff. An outage is noticed at once when the connection is closed or refused (API server
# restart), and within READ_TIMEOUT_SECONDS when it silently dies.
def convergence_bound(backoff_max: float, connect_timeout: float) -> float:
    return backoff_max + (1 + CONNECT_RETRIES) * connect_timeout


CONVERGENCE_BOUND_SECONDS = convergence_bound(BACKOFF_MAX_SECONDS, CONNECT_TIMEOUT_SECONDS)  # 7 s


class NamespaceSource(Protocol):
    def get(self, name: str) -> Lookup:
        """Never raises, never blocks on I/O: served from memory on every admission review."""

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

    def get(self, name: str) -> Lookup:
        return _lookup(self._cache, name)

    def ready(self) -> bool:
        return True

    def start(self) -> None:
        """Nothing to watch."""

    def stop(self) -> None:
        """Nothing to stop."""


class FileSource(StaticSource):
    """Standalone mode (`make run`): the Namespace objects of a file, as `kubectl get ns -o yaml`
    prints them (a `List`), or single Namespace documents, one or several (`---`). Read once: a
    bad file fails at start with a ValueError naming the file, not later per review."""

    def __init__(self, path: str | os.PathLike[str]):
        try:
            with open(path, encoding="utf-8") as f:
                documents = list(yaml.safe_load_all(f))
        except OSError as exc:
            raise ValueError(f"cannot read namespaces file {path}: {exc.strerror}") from exc
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"namespaces file {path} is not valid YAML: {exc}") from exc
        namespaces = list(_from_documents(documents, str(path)))
        if not namespaces:
            raise ValueError(f"namespaces file {path} holds no Namespace objects")
        try:
            super().__init__(namespaces)
        except ValueError as exc:
            raise ValueError(f"namespaces file {path}: {exc}") from exc


def _from_documents(documents: Iterable[Any], path: str) -> Iterable[Namespace]:
    for number, doc in enumerate(documents, 1):
        where = f"{path}: document {number}"
        if doc is None:  # an empty document, e.g. a trailing `---`
            continue
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if kind in ("List", "NamespaceList"):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ValueError(f"{where}: items must be a list")
            yield from (namespace_from(item, f"{where}: item {i}") for i, item in enumerate(items, 1))
        elif kind == "Namespace":
            yield namespace_from(doc, where)
        else:
            raise ValueError(f"{where}: expected kind Namespace, List or NamespaceList, got {kind!r}")


class KubeSource:
    """One list+watch cache of all Namespaces, kept by a daemon thread (see the timing constants).

    - get() reads the in-memory dict: no API call per review.
    - ready() once the first list has completed; it stays true during an API outage, because
      reviews are still answered from the (stale) cache; an unready webhook would instead fail
      every pod creation of the cluster.
    - A relist replaces the dict in one assignment, so namespaces deleted meanwhile disappear and
      readers never see a half-built cache; watch events change single entries (atomic dict
      operations; this thread is the only writer).
    - Every failure, 410 Gone included, ends in a relist: the API server's watch cache may not
      hold our resourceVersion any more after a reconnect, and a list is the one way to learn
      about deletions missed meanwhile.

    State for metrics and health: `last_sync` (time.time() when the cache was last known
    current: a list, an event, a watch ended normally; None before the first list) and
    `relists` (lists after the first: expiries and reconnects).
    """

    def __init__(self, api_client: kubernetes.client.ApiClient, *, watch_timeout: int = WATCH_TIMEOUT_SECONDS,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS, backoff_initial: float = BACKOFF_INITIAL_SECONDS,
                 backoff_max: float = BACKOFF_MAX_SECONDS):
        from kubernetes.client import CoreV1Api

        self._api = CoreV1Api(api_client)
        self._watch_timeout = watch_timeout
        self._request_timeout = (connect_timeout, watch_timeout + READ_MARGIN_SECONDS)
        self._backoff = (backoff_initial, backoff_max)
        self._cache: dict[str, Namespace] = {}
        self._synced = False
        self._failures = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None  # the open kubernetes.watch.Watch, so stop() can cut it
        self.last_sync: float | None = None
        self.relists = 0

    @property
    def convergence_bound(self) -> float:
        """Seconds after the API answers again within which the cache has relisted (this
        instance's CONVERGENCE_BOUND_SECONDS)."""
        return convergence_bound(self._backoff[1], self._request_timeout[0])

    def get(self, name: str) -> Lookup:
        if not self._synced:
            return Lookup(None, Reason.NAMESPACE_SOURCE_NOT_SYNCED)
        return _lookup(self._cache, name)

    def ready(self) -> bool:
        return self._synced

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="podmedic-namespaces", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=self._request_timeout[0] + 1)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                rv = self._relist()
                while not self._stopping.is_set():
                    rv = self._watch_from(rv)
            except Exception as exc:  # anything: keep the cache, back off, relist
                if self._stopping.is_set():
                    return
                self._failures += 1
                delay = backoff_delay(self._failures, *self._backoff)
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(level, "namespace watch failed (%s), serving the cached namespaces; relisting in %.1f s",
                        _describe(exc), delay)
                self._stopping.wait(delay)

    def _relist(self) -> str:
        response = self._api.list_namespace(_preload_content=False, _request_timeout=self._request_timeout)
        # _preload_content=False returns the urllib3 response, not the model the client's annotations name
        body = json.loads(response.data)  # type: ignore[attr-defined]
        self._cache = {ns.name: ns for ns in (namespace_from(item, "namespace list") for item in body["items"])}
        if self._synced:
            self.relists += 1
        if self._failures:
            log.info("namespace cache relisted after %d failed attempt(s): %d namespaces", self._failures, len(self._cache))
        self._synced, self._failures, self.last_sync = True, 0, time.time()
        return str(body["metadata"]["resourceVersion"])

    def _watch_from(self, rv: str) -> str:
        """One watch, until the API server ends it after watch_timeout; returns the new position.
        An ERROR event (410 Gone) or a broken connection raises."""
        from kubernetes import watch

        self._watch = watch.Watch()
        for event in self._watch.stream(self._api.list_namespace, resource_version=rv, allow_watch_bookmarks=True,
                                        timeout_seconds=self._watch_timeout, _request_timeout=self._request_timeout):
            obj = event["raw_object"]
            rv = str(obj["metadata"]["resourceVersion"])
            if event["type"] == "DELETED":
                self._cache.pop(obj["metadata"]["name"], None)
            elif event["type"] in ("ADDED", "MODIFIED"):
                ns = namespace_from(obj, "namespace watch")
                self._cache[ns.name] = ns
            self.last_sync = time.time()
            if self._stopping.is_set():
                break
        self.last_sync = time.time()
        return rv


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Capped exponential backoff with jitter (0.5-1x, so replicas do not relist in step); never
    above the cap, which CONVERGENCE_BOUND_SECONDS relies on."""
    return min(cap, initial * 2.0 ** (failures - 1)) * random.uniform(0.5, 1.0)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status == 410:
        return "410 Gone: resourceVersion expired"
    return f"HTTP {status}" if status else type(exc).__name__


def source_from_args(namespaces_file: str | None, kubeconfig: str | None) -> NamespaceSource:
    """--namespaces-file wins (standalone mode); otherwise watch the API."""
    if namespaces_file:
        return FileSource(namespaces_file)
    return KubeSource(kube_api_client(kubeconfig))


def live_lookup(kubeconfig: str) -> Callable[[str], Lookup]:
    """Read each namespace once from a live cluster (a CLI run, not a watch)."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    api = CoreV1Api(kube_api_client(kubeconfig))
    cache: dict[str, Lookup] = {}

    def lookup(name: str) -> Lookup:
        if name not in cache:
            try:
                meta = api.read_namespace(name).metadata  # never None from an API server: never inject with defaults
                cache[name] = (Lookup(Namespace(name, meta.annotations or {}, meta.labels or {}), None) if meta
                               else Lookup(None, Reason.NAMESPACE_LOOKUP_FAILED))
            except ApiException as exc:
                cache[name] = Lookup(None, Reason.NAMESPACE_UNKNOWN if exc.status == 404 else Reason.NAMESPACE_LOOKUP_FAILED)
            except Exception:  # network errors: never inject with defaults
                cache[name] = Lookup(None, Reason.NAMESPACE_LOOKUP_FAILED)
        return cache[name]

    return lookup
