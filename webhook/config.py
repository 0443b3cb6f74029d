"""The admin's global configuration: embedded defaults, merged with an optional YAML file.

Loaded once at start-up and validated eagerly: a bad admin file must stop the server with a
clear message, while bad *annotations* (tenant input) only ever skip a feature.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from webhook import settings


class ConfigError(ValueError):
    """The global configuration is unusable; the message names the key."""


@dataclass(frozen=True)
class ToolboxConfig:
    image: str
    image_pull_policy: str
    resources: Mapping[str, Any]


@dataclass(frozen=True)
class LogsConfig:
    host_root: str
    namespace_roots: Mapping[str, str]

    def root_for(self, namespace: str) -> str:
        """The host directory under which this namespace's pod log directories live."""
        return self.namespace_roots.get(namespace, self.host_root)


@dataclass(frozen=True)
class GlobalConfig:
    prefix: str
    on_error: Literal["allow", "deny"]
    max_request_bytes: int
    review_deadline_seconds: float
    plan_memo_bytes: int
    defaults: Mapping[str, str]
    pod_overridable: frozenset[str]
    toolbox: ToolboxConfig
    logs: LogsConfig
    source: str = field(default="embedded")

    @property
    def status_key(self) -> str:
        """The injection marker annotation: its presence means 'already injected'."""
        return self.prefix + "status"


def _embedded() -> dict[str, Any]:
    return yaml.safe_load(resources.files("webhook").joinpath("defaults.yaml").read_text())


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge maps; lists and scalars in the override replace the base's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(path: str | Path | None = None) -> GlobalConfig:
    """The embedded defaults, with `path` (the admin's file) merged over them."""
    raw = _embedded()
    source = "embedded"
    if path:
        try:
            override = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(override, Mapping):
            raise ConfigError(f"config {path}: top level must be a mapping")
        raw = _merge(raw, override)
        source = str(path)
    return from_mapping(raw, source)


def _absolute_root(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or posixpath.normpath(value) != value:
        raise ConfigError(f"{where}: must be an absolute, normalised path (got {value!r})")
    if value == "/":
        raise ConfigError(f"{where}: must not be the host's root directory")
    return value


def _non_negative(where: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: must be a whole number >= 0 (got {value!r})")
    return value


def from_mapping(raw: Mapping[str, Any], source: str = "embedded") -> GlobalConfig:
    """Validate a merged configuration mapping; every problem names its key."""
    try:
        prefix = str(raw["annotationPrefix"])
        if not prefix.endswith("/"):
            raise ConfigError("annotationPrefix must end with '/' (e.g. podmedic.io/)")
        on_error = raw["onError"]
        if on_error not in ("allow", "deny"):
            raise ConfigError(f"onError must be allow or deny (got {on_error!r})")
        defaults = {str(k): "" if v is None else str(v) for k, v in raw["defaults"].items()}
        unknown = set(defaults) - set(settings.KEYS) | set(raw["podOverridable"]) - set(settings.KEYS)
        if unknown:
            raise ConfigError(f"unknown setting keys: {', '.join(sorted(unknown))}")
        missing = sorted(k for k, key in settings.KEYS.items() if not key.optional and not defaults.get(k))
        if missing:
            raise ConfigError(f"defaults need a value for: {', '.join(missing)}")
        for key, value in defaults.items():
            if value != "":
                try:
                    settings.KEYS[key].parse(value)
                except ValueError as exc:
                    raise ConfigError(f"defaults.{key}: {exc}") from None
        logs = raw["logs"]
        roots = {str(ns): _absolute_root(f"logs.namespaceRoots.{ns}", root)
                 for ns, root in (logs.get("namespaceRoots") or {}).items()}
        toolbox = raw["toolbox"]
        return GlobalConfig(
            prefix=prefix,
            on_error=on_error,
            max_request_bytes=int(raw["maxRequestBytes"]),
            review_deadline_seconds=float(raw["reviewDeadlineSeconds"]),
            plan_memo_bytes=_non_negative("planMemoBytes", raw["planMemoBytes"]),
            defaults=defaults,
            pod_overridable=frozenset(raw["podOverridable"]),
            toolbox=ToolboxConfig(
                image=str(toolbox["image"]),
                image_pull_policy=str(toolbox.get("imagePullPolicy", "IfNotPresent")),
                resources=toolbox.get("resources") or {},
            ),
            logs=LogsConfig(host_root=_absolute_root("logs.hostRoot", logs["hostRoot"]), namespace_roots=roots),
            source=source,
        )
    except KeyError as exc:
        raise ConfigError(f"missing configuration key {exc}") from None
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"malformed configuration: {exc}") from None
