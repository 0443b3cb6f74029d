"""Fitting podmedic's init containers' resources into the namespace's LimitRanges. Pure.

The API server's LimitRanger validates every container of a pod against the namespace's
LimitRange items of type Container, init containers included, and it does so AFTER the mutating
webhooks: toolbox.resources that a tenant's LimitRange does not allow (a cpu request below its
`min`, a limit ten times the request where `maxLimitRequestRatio` allows 2) got every pod that
podmedic injected there refused. Its defaulting (`default`, `defaultRequest`) only fills in what a
container leaves out, and podmedic's init containers set their requests and limits (the one
exception, a pod with pod-level resources, whose init containers carry none, is in
init_resources).

Per resource, the way LimitRanger checks it (plugin/pkg/admission/limitranger):
- `min`: the request is required and must be at least min, and so must a limit that is set;
- `max`: the limit is required and must be at most max, and so must the request;
- `maxLimitRequestRatio`: both are required, and limit / request must be at most the ratio.
So podmedic raises a request to `min`, lowers a limit to `max` (a request above it comes down
with it), then raises the request towards the limit until the ratio holds. Raising and lowering
in that order never undoes an earlier step unless the constraints contradict each other (min
above max), and a limit is never lowered below `floor` (the caller's: toolbox.resources' requests),
nor a memory limit below limit_floors.MEMORY_LIMIT_FLOOR. (The requests fitted may be lower than
the floor: init_resources' quota-charge cap asks no more than the app does.)
Either is no fit: the caller skips the features that need the init containers
(limitrange-conflict) rather than have the pod refused, or never started.
`default` and `defaultRequest` are no check: fit() passes them by.

init_resources adds a pod's own budget as `max` constraints named POD_BUDGET, so that the same
fitting keeps its init containers within what the pod's spec.resources allow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from webhook.engine.limit_floors import MEMORY_LIMIT_FLOOR
from webhook.engine.namespace import Constraint
from webhook.engine.quantity import quantity


CHECKED = frozenset(("min", "max", "maxLimitRequestRatio"))  # what LimitRanger checks on a container
POD_BUDGET = "the pod's spec.resources"  # the `limit_range` of init_resources' budget constraints

_MEMORY_FLOOR = quantity(MEMORY_LIMIT_FLOOR)


class NoFit(Exception):
    """No requests and limits satisfy the constraints (the message names them, for the warning)."""


def fit(resources: Mapping[str, Any], constraints: tuple[Constraint, ...],
        floor: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`resources` ({"requests": ..., "limits": ...}) fitted into `constraints`: values that
    already satisfy them are kept as written, a value raised or lowered to a constraint takes the
    constraint's own spelling. `floor`: the requests no limit may be lowered below (a memory
    limit not below MEMORY_LIMIT_FLOOR either). Raises NoFit."""
    values = {kind: {name: (quantity(raw), raw) for name, raw in (resources.get(kind) or {}).items()}
              for kind in ("requests", "limits")}
    requests, limits = values["requests"], values["limits"]
    written = {name: value for name, (value, _) in limits.items()}
    for c in constraints:
        if c.kind == "min":
            if c.resource not in requests or requests[c.resource][0] < c.value:
                requests[c.resource] = (c.value, c.raw)
            if c.resource in limits and limits[c.resource][0] < c.value:
                limits[c.resource] = (c.value, c.raw)
    for c in constraints:
        if c.kind == "max":
            if c.resource not in limits or limits[c.resource][0] > c.value:
                limits[c.resource] = (c.value, c.raw)
            if c.resource in requests and requests[c.resource][0] > limits[c.resource][0]:
                requests[c.resource] = limits[c.resource]
    for c in constraints:
        if c.kind == "maxLimitRequestRatio":
            _fit_ratio(c, requests, limits)
    _check(constraints, requests, limits, floor, written)
    return {kind: {name: raw for name, (_, raw) in kept.items()} for kind, kept in values.items() if kept}


def _fit_ratio(c: Constraint, requests: dict[str, tuple[Fraction, Any]], limits: dict[str, tuple[Fraction, Any]]) -> None:
    """Raise the request until limit / request is at most the ratio. A side left out takes the
    other's value (the API server defaults a missing request to the limit; a missing limit would
    fail the ratio); with neither there is nothing to fit from."""
    r = c.resource
    if r not in requests and r not in limits:
        raise NoFit(f"LimitRange {c.limit_range}: {r} maxLimitRequestRatio {c.raw} needs a request and a limit, "
                    f"and podmedic's init containers set no {r}")
    if r not in limits:
        limits[r] = requests[r]
    if r not in requests:
        requests[r] = limits[r]
    limit, request = limits[r][0], requests[r][0]
    if request == 0 or limit > request * c.value:
        raised = _ceil(limit / c.value, r)
        requests[r] = (raised, _format(raised))


def _check(constraints: tuple[Constraint, ...], requests: dict[str, tuple[Fraction, Any]],
           limits: dict[str, tuple[Fraction, Any]], floor: Mapping[str, Any], written: Mapping[str, Fraction]) -> None:
    """Raise NoFit, naming every constraint on the resource, unless the fitted values satisfy
    all of them (min above max leaves one broken) and no limit was lowered below its floor
    (_floors; a limit written lower in toolbox.resources is the admin's choice, kept)."""
    checked = [c for c in constraints if c.kind in CHECKED]
    for c in checked:
        request, limit = requests.get(c.resource, (None,))[0], limits.get(c.resource, (None,))[0]
        if not _holds(c, request, limit):
            on = ", ".join(f"{o.kind} {o.raw} ({o.limit_range})" for o in checked if o.resource == c.resource)
            raise NoFit(f"no {c.resource} fits the LimitRange constraints {on}")
    for name, (least, what) in _floors(floor).items():
        if name in limits and limits[name][0] < min(least, written.get(name, least)):
            by = ", ".join(sorted({_source(c.limit_range) for c in checked if c.kind == "max" and c.resource == name}))
            raise NoFit(f"{by}: max {name} {limits[name][1]} is below {what}")


def _floors(requests: Mapping[str, Any]) -> dict[str, tuple[Fraction, str]]:
    """What no limit may be lowered below, and what to call it in the warning: the toolbox's
    configured requests, memory no lower than MEMORY_LIMIT_FLOOR."""
    floors = {name: (quantity(raw), f"the toolbox's request {raw} (toolbox.resources)")
              for name, raw in requests.items()}
    if floors.get("memory", (0,))[0] < _MEMORY_FLOOR:
        floors["memory"] = (_MEMORY_FLOOR, f"{MEMORY_LIMIT_FLOOR}, the least memory podmedic's init containers start in")
    return floors


def _source(limit_range: str) -> str:
    return limit_range if limit_range == POD_BUDGET else f"LimitRange {limit_range}"


def _holds(c: Constraint, request: Fraction | None, limit: Fraction | None) -> bool:
    if c.kind == "min":
        return request is not None and request >= c.value and (limit is None or limit >= c.value)
    if c.kind == "max":
        return limit is not None and limit <= c.value and (request is None or request <= c.value)
    return request is not None and limit is not None and request > 0 and limit <= request * c.value


def _ceil(value: Fraction, resource: str) -> Fraction:
    """Up to what LimitRanger counts in: millicores for cpu, whole units (bytes) otherwise."""
    unit = Fraction(1, 1000) if resource == "cpu" else Fraction(1)
    return math.ceil(value / unit) * unit


def _format(value: Fraction) -> str:
    """A quantity podmedic computed (whole units or millis, _ceil), as the API writes it."""
    return str(value.numerator) if value.denominator == 1 else f"{value * 1000}m"
