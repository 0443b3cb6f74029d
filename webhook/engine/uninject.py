"""Remove exactly what podmedic added, using the injection marker as the record.

The marker (`<prefix>status`, schema in engine/marker.py) lists, per container, what each
feature added and the values it replaced (the original command, the original preStop), the
pod-level volumes, init containers and pull secrets, which maps and lists the patch had to
create, and the null or empty members it overwrote. Removing by name (not by replaying the patch backwards) keeps
working when someone edited the manifest after injection.

The marker is untrusted: it is parsed and validated completely before the template is touched,
so a malformed one raises MarkerError and leaves the template as it was; so does a supervisor
record for a container whose command is not podmedic's wrapper (it would delete the user's).
"""

from __future__ import annotations

from typing import Any

from webhook.engine import marker, pod_level
from webhook.engine.config import GlobalConfig
from webhook.engine.marker import MarkerError
from webhook.engine.patch import tokens
from webhook.toolbox import argv as toolbox

__all__ = ["MarkerError", "template"]

OUR_ENV = (pod_level.POD_NAME_ENV, pod_level.POD_UID_ENV)
OUR_MOUNTS = (pod_level.TOOLBOX_VOLUME, pod_level.STATE_VOLUME, pod_level.LOGS_VOLUME)
WRAPPER = toolbox.supervise_command(name="", flags=(), app=())[0]  # what a wrapped command starts with


def _drop(items: Any, names: tuple[str, ...] | list[str]) -> None:
    """Remove list entries whose `name` is in names, in place (ruamel lists keep comments)."""
    if isinstance(items, list):
        for i in reversed(range(len(items))):
            if isinstance(items[i], dict) and items[i].get("name") in names:
                del items[i]


def _restore(parent: dict[str, Any], key: str, original: Any) -> None:
    if original is None:
        parent.pop(key, None)
    else:
        parent[key] = original


def _container(template: dict[str, Any], name: str) -> dict[str, Any] | None:
    spec = template.get("spec")
    for kind in ("containers", "initContainers"):
        items = spec.get(kind) if isinstance(spec, dict) else None
        for c in items if isinstance(items, list) else []:
            if isinstance(c, dict) and c.get("name") == name:
                return c
    return None


def _undo_container(c: dict[str, Any], added: marker.ContainerRecord) -> None:
    if "supervisor" in added:
        _restore(c, "command", added["supervisor"]["command"])
    for probe in added.get("probes", []):
        c.pop(probe, None)
    if "logs" in added:
        _drop(c.get("env"), OUR_ENV)
    if "forensics" in added and isinstance(c.get("lifecycle"), dict):
        _restore(c["lifecycle"], "preStop", added["forensics"]["preStop"])
    _drop(c.get("volumeMounts"), OUR_MOUNTS)


def _parent(template: dict[str, Any], ptr: str) -> tuple[Any, str]:
    """The node holding the last segment of `ptr` (None when the path is gone), and that segment."""
    parts = tokens(ptr)
    node: Any = template
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None, ""
    return node, parts[-1] if parts else ""


def _prune_created(template: dict[str, Any], created: list[str], replaced: dict[str, Any]) -> None:
    """Delete the maps and lists the patch created, deepest first, if they are empty now; one
    that replaced a null or empty original becomes that original again, in its place."""
    for ptr in sorted(created, key=lambda p: p.count("/"), reverse=True):
        node, last = _parent(template, ptr)
        if isinstance(node, dict) and last in node and node[last] in ({}, []):
            if ptr in replaced:
                node[last] = replaced[ptr]
            else:
                del node[last]


def _put_back(template: dict[str, Any], replaced: dict[str, Any]) -> None:
    """Null or empty originals whose member the undo removed (a `command: []`, a `preStop: null`)."""
    for ptr, original in replaced.items():
        node, last = _parent(template, ptr)
        if isinstance(node, dict) and last not in node:
            node[last] = original


def _check_wrapped(t: dict[str, Any], status: marker.Marker) -> None:
    """A supervisor record is trusted only for a container that runs podmedic's wrapper: it says
    which command to put back, so on the user's own command it would delete or replace it."""
    for name, added in status["containers"].items():
        c = _container(t, name) if "supervisor" in added else None
        command = c.get("command") if c is not None else None
        if c is not None and not (isinstance(command, list) and command[:1] == [WRAPPER]):
            raise MarkerError(f"containers[{name!r}].supervisor: the container's command is not podmedic's "
                              f"wrapper ({WRAPPER} ...)")


def template(t: dict[str, Any], config: GlobalConfig) -> bool:
    """Uninject one pod template (or pod) in place; False when it carries no marker, MarkerError
    (before any change) when its marker is not one podmedic wrote."""
    metadata = t.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict) or config.status_key not in annotations:
        return False
    status = marker.parse(annotations[config.status_key])
    _check_wrapped(t, status)
    for name, added in status["containers"].items():
        c = _container(t, name)
        if c is not None:
            _undo_container(c, added)
    pod = status.get("pod")
    spec = t.get("spec")
    if isinstance(spec, dict):
        _drop(spec.get("volumes"), pod["volumes"] if pod else [])
        _drop(spec.get("initContainers"), pod["initContainers"] if pod else [])
        _drop(spec.get("imagePullSecrets"), pod.get("imagePullSecrets", []) if pod else [])
    for key, original in (pod.get("annotations", {}) if pod else {}).items():
        _restore(annotations, key, original)
    del annotations[config.status_key]
    replaced = status.get("replaced", {})
    _prune_created(t, status["created"], replaced)
    _put_back(t, replaced)
    return True
