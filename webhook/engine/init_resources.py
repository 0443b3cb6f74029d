"""The requests and limits of podmedic's init containers (podmedic-toolbox, podmedic-logdir) in a
pod: toolbox.resources, changed where the pod needs it. Pure.

Three things change them, in this order:
- the pod's ResourceQuota charge: they ask no more than the app's containers in all, no limit
  below limit_floors' (_within_charge);
- the pod's QoS class, kept: none of their own, or requests equal to their limits (_carry_none,
  _class_kept);
- the namespace's LimitRange, fitted (limitrange.fit), and in a pod with pod-level resources the
  pod's budget (_pod_budget).
pod_level.finish() gives each init container it adds what init_fit() says; the features that need
those init containers skip where nothing fits (limitrange_conflict).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from webhook.engine import limitrange
from webhook.engine.config import GlobalConfig
from webhook.engine.context import PodContext
from webhook.engine.keyed import IdentityCache
from webhook.engine.limit_floors import CPU_LIMIT_FLOOR, MEMORY_LIMIT_FLOOR
from webhook.engine.namespace import Constraint
from webhook.engine.quantity import quantity


class _InitResources(NamedTuple):
    fit: Callable[[dict[str, Any]], dict[str, Any]] | None  # how the init containers change; None: as configured
    conflict: str | None  # why no resources fit the namespace's LimitRange; None: they fit


def limitrange_conflict(ctx: PodContext) -> str | None:
    """Why podmedic's init containers fit no requests and limits that the namespace's LimitRange
    allows (webhook.engine.limitrange), or None. The features that need them skip with it: the
    API server would refuse the pod. (The usual namespace has no LimitRange: one attribute read.)"""
    return _init_resources(ctx).conflict if ctx.limit_range else None


def init_fit(ctx: PodContext) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """How podmedic's init containers change in this pod, or None: as configured."""
    if ctx.limit_range:
        return _init_resources(ctx).fit
    return _fitting(_qos_and_charge(ctx.pod.get("spec") or {}, ctx.config))


def _init_resources(ctx: PodContext) -> _InitResources:
    """The class-keeping, charge-capped resources (_qos_and_charge) fitted into the namespace's
    LimitRange, worked out once per review (only asked where it has one)."""
    return ctx.once("init-resources", lambda: _fitted(ctx.pod.get("spec") or {}, ctx.config, ctx.limit_range))


def _fitted(spec: dict[str, Any], config: GlobalConfig, constraints: tuple[Constraint, ...]) -> _InitResources:
    """The class-keeping, charge-capped resources fitted into `constraints`, no lower than the
    configured requests (what the toolbox needs). Resources that already fit are left as they were
    (the same patch). In a pod with pod-level resources, what LimitRanger would fill in is set
    instead, within the pod's budget (_pod_budget). A pod's quantity that cannot be read
    (ValueError): the API server refuses that pod anyway, the features skip."""
    qos = _qos_and_charge(spec, config)
    try:
        budget = _pod_budget(spec, constraints) if qos == {} else ()
        if budget:
            qos = _pinned(config, budget)
        base = {kind: dict(values) for kind, values in (config.toolbox.resources if qos is None else qos).items() if values}
        fitted = limitrange.fit(base, constraints + budget, config.toolbox.resources.get("requests") or {})
    except (limitrange.NoFit, ValueError) as exc:
        return _InitResources(None, str(exc))
    return _InitResources(_fitting(qos if fitted == base else fitted), None)


# A LimitRange's constraints that make LimitRanger fill in what a container leaves out: `default`
# (a limit), `defaultRequest` (a request), and `max` (the API server defaults `default` to it and
# `defaultRequest` to that). A `min` needs no entry: fit() sets the request it asks for.
_DEFAULTING = frozenset(("default", "defaultRequest", "max"))


def _pod_budget(spec: dict[str, Any], constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    """The pod's budget, as `max` constraints (limitrange.POD_BUDGET), on each resource of its
    spec.resources that the namespace's LimitRanges would fill into podmedic's init containers.
    Why: in a pod with pod-level resources ours carry none (_carry_none), LimitRanger fills in
    the LimitRange's defaults after the webhooks, and the API server refuses a pod whose requests
    are below its containers' aggregate ("must be greater than or equal to aggregate container
    requests"), which counts init containers by the largest (ours run first, alone). So these
    resources are set, a request and a limit (LimitRanger then adds neither), no higher than the
    pod's request -- its limit where it sets none: the API server then defaults the pod's request
    to the aggregate, ours included. (The API server checks no init container's limit against
    the pod's; the limit is kept within the request all the same, the simpler rule.)"""
    pod = spec["resources"] if isinstance(spec.get("resources"), dict) else {}
    requests, limits = (pod[k] if isinstance(pod.get(k), dict) else {} for k in ("requests", "limits"))
    defaulted = sorted({c.resource for c in constraints if c.kind in _DEFAULTING})
    return tuple(Constraint("max", name, quantity(raw), str(raw), limitrange.POD_BUDGET)
                 for name in defaulted for raw in (requests.get(name, limits.get(name)),) if raw is not None)


def _pinned(config: GlobalConfig, budget: tuple[Constraint, ...]) -> dict[str, dict[str, Any]]:
    """toolbox.resources' request and limit of each resource of the `budget`, both set: a request
    left out is the limit (as the API server defaults it), a limit left out the request. Raises
    NoFit for a resource toolbox.resources does not set (there is nothing to set it to)."""
    requests, limits = (config.toolbox.resources.get(k) or {} for k in ("requests", "limits"))
    pinned: dict[str, dict[str, Any]] = {"requests": {}, "limits": {}}
    for c in budget:
        request = requests.get(c.resource, limits.get(c.resource))
        if request is None:
            raise limitrange.NoFit(f"a LimitRange fills in {c.resource} for podmedic's init containers, and "
                                   f"toolbox.resources sets no {c.resource} to keep it within the pod's")
        pinned["requests"][c.resource], pinned["limits"][c.resource] = request, limits.get(c.resource, request)
    return pinned


def _fitting(resources: Mapping[str, Any] | None) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """How an init container changes to get `resources`: None (as configured) stays None, none at
    all drops its `resources`."""
    if resources is None:
        return None
    if not resources:
        return _unresourced
    return lambda init: {**init, "resources": resources}


def _unresourced(init: dict[str, Any]) -> dict[str, Any]:
    """`init` without requests or limits of its own: in a pod with pod-level resources, a
    container without them runs within the pod's."""
    return {key: value for key, value in init.items() if key != "resources"}


def _qos_and_charge(spec: dict[str, Any], config: GlobalConfig) -> Mapping[str, Any] | None:
    """The resources podmedic's init containers need in this pod before any LimitRange (_fitted),
    or None: as configured (toolbox.resources). Two jobs, composed here in this order: the quota
    charge capped to the app's (_within_charge), then the QoS class kept (_class_kept), because a
    Guaranteed pod's init containers request the capped limits. Where the class wants them to
    carry none of their own (_carry_none), they are charged nothing: there is no cap to work out."""
    if _carry_none(spec):
        return {}
    configured = config.toolbox.resources
    resources = _class_kept(spec, _within_charge(spec, configured))
    return None if resources is configured else resources


def _carry_none(spec: dict[str, Any]) -> bool:
    """Must podmedic's init containers carry no resources of their own for the pod to be admitted
    and keep its QoS class? The API server computes status.qosClass over the init containers too,
    ours included:
    - pod-level resources (spec.resources): the API server refuses a pod whose requests do not
      cover its containers' aggregate requests, ours included, so ours share the pod's budget;
      the class is then computed from spec.resources alone and holds. (Where a LimitRange would
      fill its defaults in, _fitted sets those resources within the pod's budget instead:
      _pod_budget.)
    - BestEffort (_best_effort): the pod stays BestEffort."""
    if spec.get("resources"):
        return True
    return _best_effort(spec)


def _class_kept(spec: dict[str, Any], resources: Mapping[str, Any]) -> Mapping[str, Any]:
    """`resources`, for a pod whose init containers carry their own (not _carry_none), as they
    keep the pod's QoS class:
    - every container Guaranteed (cpu and memory requests equal to limits): requests equal to the
      limits, so the pod stays Guaranteed. Requests below the limits (the configured ones) would
      make it Burstable: evicted earlier, and no exclusive CPUs under the kubelet's static CPU
      manager. (Limits without both cpu and memory cannot keep the class.)
    - every other pod (Burstable): `resources` themselves."""
    if _guaranteed(spec) and _requests_its_limits({"limits": resources.get("limits")}):
        return {**resources, "requests": dict(resources["limits"])}
    return resources


def _best_effort(spec: dict[str, Any]) -> bool:
    """Is the pod BestEffort, as the API server computes the class: no container or init container
    requests or limits a positive cpu or memory. It must stay so: a ResourceQuota scoped
    NotBestEffort (`pods: "0"`, or one that tracks requests.cpu and so wants every container it
    covers to set them) does not cover such a pod, and init containers with requests made it
    Burstable, covered, and refused. A LimitRange's defaults reach the app's containers before
    this webhook sees the pod, so such a pod is not BestEffort here. (Loops, as _guaranteed.)"""
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or ():
            resources = c.get("resources") if isinstance(c, dict) else None
            if isinstance(resources, dict) and not _no_cpu_or_memory(resources):
                return False
    return True


def _no_cpu_or_memory(resources: dict[str, Any]) -> bool:
    """Neither requests nor limits hold a positive cpu or memory (zero counts as unset, as in the
    API server's class). A quantity that cannot be read counts as set: the configured requests."""
    for kind in ("requests", "limits"):
        values = resources.get(kind)
        if not isinstance(values, dict):
            continue
        for name in ("cpu", "memory"):
            raw = values.get(name, 0)
            try:
                if not isinstance(raw, (str, int, float)) or _nanos(raw) > 0:
                    return False
            except ValueError:
                return False
    return True


def _guaranteed(spec: dict[str, Any]) -> bool:
    """Is the pod Guaranteed by its containers, as the API server computes the class: every
    container and init container (not the ephemeral ones) requests its cpu and memory limits.
    (Loops, not generators: asked in every review, and most pods fail at the first container.)"""
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or ():
            resources = c.get("resources") if isinstance(c, dict) else None
            if not isinstance(resources, dict) or not _requests_its_limits(resources):
                return False
    return True


def _requests_its_limits(resources: dict[str, Any]) -> bool:
    """Positive cpu and memory limits, each requested exactly (a request left out is defaulted
    to the limit; "1" is "1000m"). A quantity that cannot be read: not Guaranteed. Read by
    _read, as the class and charge checks read them: memoised, and none parsed twice a review."""
    limits, requests = resources.get("limits"), resources.get("requests") or {}
    if not (isinstance(limits, dict) and "cpu" in limits and "memory" in limits and isinstance(requests, dict)):
        return False
    for name in _CHARGED:
        limit = _read(limits[name])
        if limit is None or limit <= 0 or _read(requests.get(name, limits[name])) != limit:
            return False
    return True


_NANO = 10**9
_CHARGED = ("cpu", "memory")


def _within_charge(spec: dict[str, Any], configured: Mapping[str, Any]) -> Mapping[str, Any]:
    """`configured` with each cpu and memory request and limit lowered to what the app's
    containers ask in all (_app_totals), a limit to no less than _LIMIT_FLOORS; `configured`
    itself where nothing is lowered. Why: a ResourceQuota on requests.* or limits.* charges a pod
    the larger of its containers' sum (native sidecars included) and its largest init container
    (k8s.io/component-helpers/resource: PodRequests, PodLimits; ours run first, so no sidecar's
    share adds to theirs), and the configured values made a small app cost the toolbox's (50m
    / 32Mi charged 100m / 64Mi: half the pods a tight quota was sized for refused). Where the
    floor is above the app's total, the charge still rises to it. A request stays within its
    limit (_requests_within)."""
    ceilings = _CEILINGS.get(id(configured), configured)
    if ceilings is None:
        ceilings = _CEILINGS.put(id(configured), _ceilings(configured), configured)
    totals = _app_totals(spec, ceilings)
    lowered: dict[str, dict[str, Any]] = {}
    final = dict(ceilings)
    for (kind, name), total in totals.items():
        least = max(total, _LIMIT_FLOORS.get(name, total)) if kind == "limits" else total
        if least < ceilings[kind, name]:
            final[kind, name] = least
            lowered.setdefault(kind, dict(configured[kind]))[name] = _spelled(least, name)
    if "limits" in lowered:
        _requests_within(final, lowered, configured)
    return {**configured, **lowered} if lowered else configured


def _requests_within(final: dict[tuple[str, str], int], lowered: dict[str, dict[str, Any]],
                     configured: Mapping[str, Any]) -> None:
    """A request no higher than its lowered limit, in `lowered`: the API server refuses a
    container whose request exceeds its limit. A lowered request is the app's total, within its
    limits' total, but a request that was not lowered (the app's requests sum to zero, or one of
    them is left out) stays as configured, and an admin's toolbox.resources may request more
    than the app's limits (requests 100m / 64Mi under an app limited to 60m / 48Mi)."""
    for name in _CHARGED:
        request, limit = final.get(("requests", name)), final.get(("limits", name))
        if request is not None and limit is not None and request > limit:
            lowered.setdefault("requests", dict(configured["requests"]))[name] = lowered["limits"][name]


# toolbox.resources' cpu and memory in nanos, per configuration (the same in every review).
_CEILINGS: IdentityCache[int, dict[tuple[str, str], int]] = IdentityCache(16)


def _ceilings(configured: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """The configured cpu and memory requests and limits in nanos, by (kind, resource)."""
    return {(kind, name): _nanos(values[name]) for kind in ("requests", "limits")
            for values in (configured.get(kind) or {},) for name in _CHARGED if name in values}


def _app_totals(spec: dict[str, Any], ceilings: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Per (kind, resource) of `ceilings` (in nanos, _nanos), the pod's containers' and native
    sidecars' positive sum of requests or limits, where every one of them sets it to a readable
    quantity (a request left out counts as its limit, as the API server defaults it) and the sum
    is below the ceiling. (Counts the room left below each ceiling: most apps' first container
    fills it, and the review is done with no sum.)"""
    room = dict(ceilings)
    for c in _charged_containers(spec):
        resources = c.get("resources") if isinstance(c, dict) else None
        if not isinstance(resources, dict):
            return {}
        requests, limits = resources.get("requests"), resources.get("limits")
        requests = requests if isinstance(requests, dict) else {}
        limits = limits if isinstance(limits, dict) else {}
        for key in tuple(room):
            kind, name = key
            amount = _read(limits.get(name) if kind == "limits" else requests.get(name, limits.get(name)))
            if amount is None or amount >= room[key]:
                del room[key]
            elif amount:
                room[key] -= amount
        if not room:
            return {}
    return {key: ceilings[key] - left for key, left in room.items() if left < ceilings[key]}


def _charged_containers(spec: dict[str, Any]) -> list[Any]:
    """The containers whose requests and limits a quota adds up: the app's, and the native
    sidecars (init containers with restartPolicy Always), which run beside them."""
    containers = spec.get("containers") or []
    inits = spec.get("initContainers")
    if not inits:
        return containers
    return [*containers, *(c for c in inits if isinstance(c, dict) and c.get("restartPolicy") == "Always")]


def _read(raw: Any) -> int | None:
    """_nanos(raw), or None for what is none (left out, not a string or number, unreadable)."""
    if not isinstance(raw, (str, int, float)):
        return None
    try:
        return _nanos(raw)
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _nanos(raw: str | int | float) -> int:
    """quantity(raw) in billionths, rounded up (the API server keeps no finer quantity): an int,
    compared and added ten times faster than a Fraction. Memoised: the same few quantities recur
    in every review, and parsing one was most of a typical review's cost of the class check (4 %).
    Raises ValueError, as quantity."""
    return math.ceil(quantity(raw) * _NANO)


# What _within_charge never lowers a limit below, in nanos (limit_floors says why).
_LIMIT_FLOORS = {"memory": _nanos(MEMORY_LIMIT_FLOOR), "cpu": _nanos(CPU_LIMIT_FLOOR)}


def _spelled(nanos: int, resource: str) -> str:
    """A quantity in nanos as the API writes one: whole units (memory in Gi, Mi or Ki where
    whole), else millis, else nanos."""
    whole, rest = divmod(nanos, _NANO)
    if not rest:
        units = (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)) if resource == "memory" else ()
        return next((f"{whole // unit}{suffix}" for suffix, unit in units if whole % unit == 0), str(whole))
    return f"{nanos // 10**6}m" if nanos % 10**6 == 0 else f"{nanos}n"
