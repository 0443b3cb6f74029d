"""Plans by pod template: a controller's burst of identical pods is planned once per worker.

A Deployment scaled up, a rollout, an HPA step or a parallel Job sends the API server a run of
pod creations whose objects are byte-identical (generateName, not a name; the same template,
labels and owner). The engine is a pure function of the pod, its namespace and the global
configuration, so its verified answer for one of them is the answer for all of them.

The memo is exact, never approximate:
- the key is the pod object itself, encoded (orjson keeps the order the API server sent),
  with two things that differ between the pods of one template and that no mutator reads
  (a mutator that starts to read them must take them out of this list):
  - `metadata.managedFields` is not in it: the API server stamps it with the request's second
    (the decoder never builds it, webhook/admission/decode.py);
  - the ServiceAccount token volume's random name (`kube-api-access-xxxxx`, added to every pod
    by the ServiceAccount admission plugin before webhooks run) is replaced, wherever it is the
    whole of a string (the volume and its mounts), by a byte that orjson never writes, so the
    replacement cannot coincide with anything a pod contains. A consistent renaming of a
    volume that podmedic neither names nor compares with its own names changes no plan.
- an entry is only used for the very Namespace object it was planned with. The namespace
  sources replace that object on every change, so a changed annotation or label is a miss.
- the configuration is fixed for the life of the process that owns the memo.
- only plans worth keeping are kept: those with a patch, made without a mutator failure (a
  failure is planned, and logged, again every time). The pods of namespaces that are not opted
  in are not even looked up (admission.handle.review asks engine.inject_switch first).
- only templates seen before are kept (a doorkeeper, as in TinyLFU): the first miss of a key
  remembers a fingerprint of it, the second stores the plan, the third is a hit. When every pod
  is new (StatefulSet pods, Jobs, many workloads interleaved) no plan is stored just to be
  evicted unused: that churn cost allocator work and filled the byte budget (an 80 KB key and
  its patch for a large pod). The fingerprint is Python's hash() of the key (the key's bytes
  hash is computed by the entries' lookup anyway and cached on the bytes object; the process
  owns the memo, so the per-process hash seed does not matter). A collision only stores a plan one
  sighting early: a hit still compares the whole key and the Namespace object.

Bounded in bytes (keys, patches and an allowance for the plan's objects; least recently used
entry out first), plus the doorkeeper's fixed number of fingerprints (4096, oldest out first;
about 0.5 MB, not counted in the byte budget), so pods that never repeat cost a little encoding
per review and a bounded amount of memory, nothing else. One memo per worker process, shared by
its threads.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

from webhook.engine.namespace import Namespace

T = TypeVar("T")


TOKEN_VOLUME = re.compile(r"kube-api-access-[a-z0-9]{5}")  # the ServiceAccount plugin's naming


def template_key(pod: dict[str, Any]) -> bytes:
    """The pod as decoded (without metadata.managedFields), its token volume's name masked."""
    key = orjson.dumps(pod)
    token = _token_volume(pod)
    return key.replace(b'"' + token.encode() + b'"', b'"\x00"') if token else key


def _token_volume(pod: dict[str, Any]) -> str | None:
    """The one projected volume named like the ServiceAccount plugin names it, or None (also
    when there are several: then nothing is masked and the key stays the pod as sent)."""
    spec = pod.get("spec")
    volumes = spec.get("volumes") if isinstance(spec, dict) else None
    names = [v["name"] for v in volumes or [] if isinstance(v, dict) and "projected" in v
             and isinstance(v.get("name"), str) and TOKEN_VOLUME.fullmatch(v["name"])]
    return names[0] if len(names) == 1 else None


class PlanMemo(Generic[T]):
    """Least-recently-used map from (namespace, template) to a plan, bounded in bytes; a plan is
    only kept for a key seen once before (`seen_capacity` fingerprints of keys seen once)."""

    def __init__(self, max_bytes: int, seen_capacity: int = 4096):
        self.max_bytes = max_bytes
        self.seen_capacity = seen_capacity
        self._entries: OrderedDict[tuple[str, bytes], tuple[Namespace, T, int]] = OrderedDict()
        self._seen: OrderedDict[int, None] = OrderedDict()  # fingerprints of keys seen once
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def plan(self, namespace: Namespace, pod: dict[str, Any], make: Callable[[], tuple[T, int | None]]) -> tuple[T, bool]:
        """The plan for this pod, and whether it came from the memo. `make()` returns the plan
        and its size in bytes, or None as the size for a plan that must not be kept."""
        if self.max_bytes <= 0:
            return make()[0], False
        key = (namespace.name, template_key(pod))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is namespace:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1], True
            self.misses += 1
            admit = entry is not None or self._seen_before(hash(key))  # an entry: seen, namespace changed
        plan, size = make()
        if admit and size is not None:
            self._keep(key, namespace, plan, len(key[1]) + size)
        return plan, False

    def _seen_before(self, fingerprint: int) -> bool:
        """The doorkeeper (under the lock): True on a key's second sighting, which then stores
        its plan; on the first, remembers the key, forgetting the oldest one beyond capacity."""
        if fingerprint in self._seen:
            del self._seen[fingerprint]
            return True
        self._seen[fingerprint] = None
        if len(self._seen) > self.seen_capacity:
            self._seen.popitem(last=False)
        return False

    def _keep(self, key: tuple[str, bytes], namespace: Namespace, plan: T, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (namespace, plan, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes
