"""A LimitRange object -> the Container constraints the engine fits podmedic's init containers
into (webhook.engine.limitrange). Only items of type Container: their `min`, `max` and
`maxLimitRequestRatio`, and `default` and `defaultRequest`, which fill in what a container leaves
out (podmedic's init containers in a pod with pod-level resources); Pod and PersistentVolumeClaim
items constrain what podmedic does not add.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.namespace import Constraint, ConstraintKind
from webhook.engine.quantity import quantity

CONSTRAINTS: tuple[ConstraintKind, ...] = ("min", "max", "maxLimitRequestRatio", "default", "defaultRequest")


def limit_range(obj: Any) -> tuple[str, str, tuple[Constraint, ...]]:
    """A LimitRange (as the API serves it) -> (its namespace, its name, its Container
    constraints). The API server validated its quantities; one that is not is a ValueError."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if not (isinstance(namespace, str) and namespace and isinstance(name, str) and name):
        raise ValueError("a LimitRange without metadata.namespace or metadata.name")
    spec = obj.get("spec")
    items = spec.get("limits") if isinstance(spec, Mapping) else None
    return namespace, name, tuple(
        Constraint(kind, resource, quantity(raw), str(raw), name)
        for item in items or () if isinstance(item, Mapping) and item.get("type") == "Container"
        for kind in CONSTRAINTS for resource, raw in (item.get(kind) or {}).items())


class LimitRanges:
    """Each namespace's LimitRanges by name; a namespace's constraints are all of theirs."""

    def __init__(self) -> None:
        self._by_namespace: dict[str, dict[str, tuple[Constraint, ...]]] = {}

    def put(self, namespace: str, name: str, constraints: tuple[Constraint, ...] | None) -> None:
        """Set one LimitRange's constraints; None: it was deleted."""
        mine = self._by_namespace.setdefault(namespace, {})
        if constraints is None:
            mine.pop(name, None)
        else:
            mine[name] = constraints

    def of(self, namespace: str) -> tuple[Constraint, ...]:
        mine = self._by_namespace.get(namespace)
        return tuple(c for name in sorted(mine) for c in mine[name]) if mine else ()
