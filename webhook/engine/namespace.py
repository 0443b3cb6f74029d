"""What the engine knows of a namespace (annotations: the opt-in and switches; labels: the
enforced Pod Security level; the phase of its log claim; its LimitRanges' Container constraints),
and a lookup's answer. Types only: the sources that fill them (a file, a watch of the API) live in
webhook.kube.namespaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, NamedTuple

from webhook.engine.decisions import Reason


ConstraintKind = Literal["min", "max", "maxLimitRequestRatio", "default", "defaultRequest"]


class Constraint(NamedTuple):
    """One constraint of a LimitRange item of type Container, which the API server's LimitRanger
    checks on every container of a pod, podmedic's init containers included, after the mutating
    webhooks (webhook.engine.limitrange fits them in). `default` and `defaultRequest` are no check:
    what LimitRanger fills in where a container leaves a limit or request out (init_resources keeps
    them out of a pod's budget)."""

    kind: ConstraintKind
    resource: str  # cpu, memory, ephemeral-storage, ...
    value: Fraction  # exact (webhook.engine.quantity)
    raw: str  # as written: the value podmedic sets when it raises or lowers one of its own to it
    limit_range: str  # the LimitRange's name, for the warning


@dataclass(frozen=True)
class Namespace:
    """What the engine needs of a Namespace object; read-only, shared between threads."""

    name: str
    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    # The phase of the namespace's PersistentVolumeClaim named logs.claimName (Bound, Pending,
    # Lost, Terminating), None when it has none -- or when the source was not asked to watch
    # claims (the hostPath log backend needs none). The pvc log backend injects only on Bound.
    log_claim: str | None = None
    # Every Container constraint of the namespace's LimitRanges (all of them apply), () when it has
    # none -- or when the source carries none (a namespaces file without LimitRange objects).
    limit_range: tuple[Constraint, ...] = ()


class Lookup(NamedTuple):
    """A lookup's answer: the namespace, or None and why (always a reason, so the skip is audited).

    reason is None when found; NAMESPACE_UNKNOWN when the source is synced and the namespace is
    not in it; NAMESPACE_SOURCE_NOT_SYNCED before the first full list; NAMESPACE_LOOKUP_FAILED for
    any other failure (memory-served sources never produce it; one-shot API reads do).
    """

    namespace: Namespace | None
    reason: Reason | None
