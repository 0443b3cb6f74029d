"""A bounded cache whose keys name objects by their id(), for what the engine builds from a
configuration (and a namespace's annotations) once and then shares across reviews."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    """Values by a key made of the id() of the objects they were built from (plus plain values).

    An id() names an object only while it lives: a new configuration may reuse a freed one's id.
    So each entry holds the one or two objects it was built from (`kept`, `also`: the engine's
    caches need no more, and two fixed slots keep a hit nearly as cheap as the check written
    out), which keeps their ids from being reused while it is kept, and a value is returned only
    for those very objects (checked by identity, not equality): a key that now names other
    objects is a miss, never a wrong hit.

    Bounded: emptied when full, rather than evicting in order, because tenants choose some of a
    key's parts (a pod's annotations, the namespaces they create), and emptying is cheap and has
    no per-hit bookkeeping. Several threads may use one: a race builds a value twice, and
    whichever is stored last stays.
    """

    __slots__ = ("bound", "entries")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.entries: dict[K, tuple[object, object, V]] = {}

    def get(self, key: K, kept: object, also: object = None) -> V | None:
        """The value stored for `key` if it was built from these very objects, else None."""
        entry = self.entries.get(key)
        if entry is None or entry[0] is not kept or entry[1] is not also:
            return None
        return entry[2]

    def put(self, key: K, value: V, kept: object, also: object = None) -> V:
        """Store `value`, built from `kept` (and `also`), emptying the cache first when full."""
        if len(self.entries) >= self.bound:
            self.entries.clear()
        self.entries[key] = (kept, also, value)
        return value
