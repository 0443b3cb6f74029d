"""Remove exactly what podmedic added, using the injection marker as the record.

The marker (`<prefix>status`) lists, per container, what each feature added and the values it
replaced (the original command, the original preStop), the pod-level volumes and init
containers, and which maps and lists the patch had to create. Removing by name (not by replaying
the patch backwards) keeps working when someone edited the manifest after injection.
"""

from __future__ import annotations

import json
from typing import Any

from webhook.engine import pod_level
from webhook.engine.config import GlobalConfig

OUR_ENV = (pod_level.POD_NAME_ENV, pod_level.POD_UID_ENV)
OUR_MOUNTS = (pod_level.TOOLBOX_VOLUME, pod_level.STATE_VOLUME, pod_level.LOGS_VOLUME)


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
    for c in (template.get("spec") or {}).get("containers") or []:
        if c.get("name") == name:
            return c
    for c in (template.get("spec") or {}).get("initContainers") or []:
        if c.get("name") == name:
            return c
    return None


def _undo_container(c: dict[str, Any], added: dict[str, Any]) -> None:
    if "supervisor" in added:
        _restore(c, "command", added["supervisor"]["command"])
    for probe in added.get("probes", []):
        c.pop(probe, None)
    if "logs" in added:
        _drop(c.get("env"), OUR_ENV)
    if "forensics" in added and isinstance(c.get("lifecycle"), dict):
        _restore(c["lifecycle"], "preStop", added["forensics"]["preStop"])
    _drop(c.get("volumeMounts"), OUR_MOUNTS)


def _prune_created(template: dict[str, Any], created: list[str]) -> None:
    """Delete the maps and lists the patch created, deepest first, if they are empty now."""
    for ptr in sorted(created, key=lambda p: p.count("/"), reverse=True):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in ptr.split("/")[1:]]
        node: Any = template
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        last = parts[-1] if parts else None
        if isinstance(node, dict) and last in node and node[last] in ({}, []):
            del node[last]


def template(t: dict[str, Any], config: GlobalConfig) -> bool:
    """Uninject one pod template (or pod) in place; False when it carries no marker."""
    annotations = (t.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(config.status_key)
    if raw is None:
        return False
    status = json.loads(raw)
    for name, added in (status.get("containers") or {}).items():
        c = _container(t, name)
        if c is not None:
            _undo_container(c, added)
    pod = status.get("pod") or {}
    _drop(t["spec"].get("volumes"), pod.get("volumes", []))
    _drop(t["spec"].get("initContainers"), pod.get("initContainers", []))
    del annotations[config.status_key]
    _prune_created(t, status.get("created") or [])
    return True
