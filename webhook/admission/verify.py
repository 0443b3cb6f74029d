"""Verify a patch before it leaves: apply it to the pod as sent and re-check the API server's
validation rules that a mutation can break.

A pod the API server rejects is worse than a pod podmedic did not touch, so a failing check
turns the whole answer into "allowed, unpatched" with a warning (engine reason verify-failed).
Only the rules mutations can break are checked here; the full OpenAPI schema check
(kubernetes-validate) runs in the tests, off the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from webhook.engine.pod_level import OUR_VOLUMES
from webhook.engine.patch import apply_in_place

HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
HOOK_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")
_HANDLER_SET, _HOOK_HANDLER_SET = frozenset(HANDLERS), frozenset(HOOK_HANDLERS)
ANNOTATIONS_LIMIT = 256 * 1024  # bytes, keys and values together (TotalAnnotationSizeLimitB)
# Container securityContext fields the API server forbids when spec.os.name is not linux.
LINUX_ONLY = ("seLinuxOptions", "seccompProfile", "capabilities", "readOnlyRootFilesystem", "privileged",
              "allowPrivilegeEscalation", "procMount", "runAsUser", "runAsGroup", "appArmorProfile")
HOOKS = ("postStart", "preStop")  # the lifecycle fields that hold a handler
_VAR_REF = re.compile(r"\$\(([^)]*)\)")
Ours = Callable[[Any], bool]  # is this handler (or mount) one the patch wrote?


class PatchRejected(ValueError):
    """The patch does not apply, or the patched pod breaks a validation rule."""


def apply(pod: dict[str, Any], patch: bytes | str) -> dict[str, Any]:
    """Apply the encoded JSON patch to `pod` IN PLACE (RFC 6902) and check the result.

    The encoded text, not the builder's operations: what is verified is exactly what will be
    sent, and the decoded operations are fresh objects that the pod may keep (decoding them
    with orjson is faster than copying values would be). The webhook owns the decoded request
    object and needs no pristine copy afterwards, so it skips a deep copy of a pod whose
    managedFields alone can be tens of kilobytes; offline callers pass a copy."""
    try:
        ops = orjson.loads(patch)
        patched = apply_in_place(pod, ops)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise PatchRejected(f"patch does not apply: {exc}") from None
    problems = check(patched, _written(ops))
    if problems:
        raise PatchRejected("; ".join(problems))
    return patched


def check(pod: dict[str, Any], ours: Ours | None = None) -> list[str]:
    """One message per rule the pod breaks, in order. (It runs on every patched review: the
    rules append to one list, and messages are formatted only for rules that fail.) `ours`: the
    handlers held to a declared port and the mounts held to defined env vars (None: all of them)."""
    spec = pod.get("spec") or {}
    volumes = [v.get("name") for v in spec.get("volumes") or []]
    out = [f"duplicate volume name {volume!r}" for volume in _duplicates(volumes)]
    containers = [(kind, c) for kind in ("initContainers", "containers", "ephemeralContainers")
                  for c in spec.get(kind) or []]
    out += [f"duplicate container name {name!r}" for name in _duplicates([c.get("name") for _, c in containers])]
    declared = set(volumes)
    for kind, c in containers:
        _check_container(out, kind, c, declared, ours)
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    size = _annotations_size(annotations)
    if size > ANNOTATIONS_LIMIT:  # the marker copies commands and hooks: a large script can cross it
        out.append(f"metadata.annotations: total size {size} bytes exceeds the API server's limit of "
                   f"{ANNOTATIONS_LIMIT}")
    os_name = (spec.get("os") or {}).get("name")
    if os_name is not None and os_name != "linux":  # the engine's gate skips these pods; a second line
        out += [f"container {c.get('name')}: securityContext.{field} cannot be set for a {os_name} pod"
                for _, c in containers for field in LINUX_ONLY if field in (c.get("securityContext") or {})]
    return out


def _written(ops: list[dict[str, Any]]) -> Ours:
    """Whether a handler or a mount is one the patch wrote (apply_in_place inserts the operations'
    values as they are). A named port, and a subPathExpr's variables, are checked only in those:
    the API server checks their form alone (the kubelet resolves them), so an app's own handler
    naming an undeclared port, or its mount naming a variable its env does not define, is stored
    as sent, and podmedic keeps it. The values are walked only when one of them fails, which a
    patch of podmedic's alone never makes. A handler or mount is the patch's when an operation's
    value holds it whole (podmedic writes probes, hooks and mounts whole, never a field inside an
    app's: such an operation would not be recognised here)."""
    ids: set[int] = set()

    def ours(handler: Any) -> bool:
        if not ids:
            _collect_maps(ids, [op["value"] for op in ops])
        return id(handler) in ids
    return ours


def _collect_maps(ids: set[int], value: Any) -> None:
    """The ids of every map in `value`, itself included."""
    if isinstance(value, dict):
        ids.add(id(value))
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            _collect_maps(ids, item)


def _annotations_size(annotations: dict[str, Any]) -> int:
    """Keys and values in UTF-8 bytes, as the API server counts them (Go's len of a string);
    an ASCII str's length is its byte count, known without encoding it."""
    return sum((len(k) if k.isascii() else len(k.encode())) + (len(v) if v.isascii() else len(v.encode()))
               for k, v in annotations.items())


def _duplicates(names: list[Any]) -> list[Any]:
    if len(set(names)) == len(names):  # the usual case, in C
        return []
    seen: set[Any] = set()
    repeated = []
    for name in names:
        if name in seen:
            repeated.append(name)
        seen.add(name)
    return repeated


def _check_container(out: list[str], kind: str, c: dict[str, Any], volumes: set[Any], ours: Ours | None) -> None:
    name = c.get("name")
    env_names = [e.get("name") for e in c.get("env") or []]
    mounts = c.get("volumeMounts") or []
    out += [f"duplicate mountPath in container {name} {path!r}" for path in _duplicates([m.get("mountPath") for m in mounts])]
    for m in mounts:
        mount = m.get("name")
        # Only podmedic's own mounts: a StatefulSet template's mounts of volumeClaimTemplates
        # name volumes the controller adds later, and user mistakes are the API server's to report.
        if mount in OUR_VOLUMES and mount not in volumes:
            out.append(f"container {name}: volumeMount {mount!r} names no volume")
        expr = m.get("subPathExpr")
        if expr is None:
            continue
        if expr and m.get("subPath"):
            out.append(f"container {name}: volumeMount {mount!r} has both subPath and subPathExpr")
        if not isinstance(expr, str):
            out.append(f"container {name}: volumeMount {mount!r} subPathExpr must be a string")
        elif "$(" in expr:  # a str without "$(" references nothing
            refs = _VAR_REF.findall(expr)
            # the usual refs are all defined, the logs mount's at the end of env: one set
            # difference in C, where a list scan per ref compares most names
            try:
                undefined = set(refs).difference(env_names)
            except TypeError:  # a name that is not hashable: the scan tells
                undefined = set(refs)
            # Only podmedic's mounts: the API server stores an app's reference to a variable its env
            # does not define (envFrom may define it, else the kubelet says so at container start).
            if undefined and (ours is None or ours(m)):
                out += [f"container {name}: subPathExpr references undefined env var {var!r}"
                        for var in refs if var not in env_names]
    if not _plain_names(env_names):
        out += [f"container {name}: invalid env var name {env!r}" for env in env_names if not env or "=" in str(env)]
    ports = _PortNames(c)
    probes_allowed = not (kind == "ephemeralContainers" or kind == "initContainers" and c.get("restartPolicy") != "Always")
    for probe_kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = c.get(probe_kind)
        if probe is None:
            continue
        if not probes_allowed:
            out.append(f"container {name}: {probe_kind} is not allowed on {kind} without restartPolicy Always")
        _check_handler(out, name, probe_kind, probe, HANDLERS, _HANDLER_SET, ports, ours)
        if probe_kind != "readinessProbe" and probe.get("successThreshold", 1) != 1:
            out.append(f"container {name}: {probe_kind}.successThreshold must be 1")
        for field in ("periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"):
            if field in probe and not (isinstance(probe[field], int) and probe[field] >= 1):
                out.append(f"container {name}: {probe_kind}.{field} must be a positive integer")
    for hook_name, hook in (c.get("lifecycle") or {}).items():
        if hook_name in HOOKS and hook is not None:  # lifecycle.stopSignal (1.33+) is a string, not a handler
            _check_handler(out, name, f"lifecycle.{hook_name}", hook, HOOK_HANDLERS, _HOOK_HANDLER_SET, ports, ours)


def _plain_names(env_names: list[Any]) -> bool:
    """Are all env var names non-empty strings without '=' (the usual case, checked in C)?"""
    try:
        return all(env_names) and "=" not in "".join(env_names)
    except TypeError:  # a name that is not a string
        return False


class _PortNames:
    """The names of a container's ports, collected when a handler first names a port."""

    __slots__ = ("_container", "_names")

    def __init__(self, container: dict[str, Any]):
        self._container = container
        self._names: set[Any] | None = None

    def __contains__(self, name: object) -> bool:
        if self._names is None:
            self._names = {p.get("name") for p in self._container.get("ports") or [] if p.get("name")}
        return name in self._names


def _check_handler(out: list[str], container: Any, field: str, obj: dict[str, Any], allowed: tuple[str, ...],
                   allowed_set: frozenset[str], ports: _PortNames, ours: Ours | None) -> None:
    """`allowed` in the API's order (for the message), `allowed_set` the same handlers as a set:
    the usual probe or hook names exactly one, found by a set intersection in C; the list of
    handlers that are set (not null) is only worked out when that is not so."""
    named = obj.keys() & allowed_set
    handler = next(iter(named)) if len(named) == 1 else None
    body = obj[handler] if handler is not None else None
    if body is None:
        present = [h for h in allowed if obj.get(h) is not None]
        if len(present) != 1:
            out.append(f"container {container}: {field} must have exactly one handler (has {present or 'none'})")
            return
        handler = present[0]
        body = obj[handler]
    port = body.get("port") if isinstance(body, dict) else None
    if isinstance(port, str) and port not in ports and (ours is None or ours(obj)):
        out.append(f"container {container}: {field} names port {port!r} that the container does not declare")
    if handler == "exec" and not (isinstance(body, dict) and body.get("command")):
        out.append(f"container {container}: {field}: exec needs a command")
