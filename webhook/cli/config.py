"""The global configuration file: podmedic's embedded defaults (webhook/defaults.yaml) with the
admin's YAML file (`--config`) merged over them key by key, then validated by the engine's
`from_mapping()`. The file reading lives here, outside the pure engine.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from webhook.engine.config import ConfigError, GlobalConfig, from_mapping


def _embedded() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load(resources.files("webhook").joinpath("defaults.yaml").read_text())
    return defaults  # our own file, a map (the tests load it)


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
