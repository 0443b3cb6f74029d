"""The global configuration file: podmedic's embedded defaults (webhook/defaults.yaml) with the
admin's YAML file (`--config`) merged over them key by key, then validated by the engine's
`from_mapping()`. The file reading lives here, outside the pure engine.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from webhook.engine.config import ConfigError, GlobalConfig, from_mapping, unreadable
from webhook.toolbox.build import built_architecture


def _embedded() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load(resources.files("webhook").joinpath("defaults.yaml").read_text())
    return defaults  # our own file, a map (the tests load it)


def _resolved(raw: dict[str, Any]) -> dict[str, Any]:
    """toolbox.architectures resolved here, not in the pure engine, after the admin's file is
    merged (its null is unset too, as defaults.yaml says): unset, it is the one the image's
    toolbox was built for (an image built on arm64 must not claim amd64), which only this
    process can read; without a recorded one it stays unset, and the engine checks none."""
    toolbox = raw.get("toolbox")
    if not isinstance(toolbox, Mapping) or toolbox.get("architectures") is not None:
        return raw  # a toolbox that is no map is from_mapping()'s to name
    recorded = built_architecture()
    return {**raw, "toolbox": {**toolbox, "architectures": [recorded] if recorded else None}}


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge maps; lists and scalars in the override replace the base's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# The sections whose keys are fixed by the embedded defaults (the others name settings,
# namespaces or resources, and from_mapping() checks those keys itself).
_FIXED_SECTIONS = ((), ("toolbox",), ("logs",), ("logs", "janitor"))


def _unknown_keys(base: Mapping[str, Any], override: Mapping[str, Any]) -> list[str]:
    """The override's keys, dotted, that the embedded defaults do not have in a fixed section: a
    misspelt key (`onErorr: deny`) would otherwise be merged, never read, and the admin would
    run on the default without knowing it."""
    unknown = []
    for section in _FIXED_SECTIONS:
        known: Any = base
        given: Any = override
        for part in section:
            known = known.get(part) or {}
            given = given.get(part) if isinstance(given, Mapping) else None
        if isinstance(given, Mapping):  # a section of another type is from_mapping()'s to name
            unknown += [".".join((*section, str(key))) for key in given if key not in known]
    return unknown


def load(path: str | Path | None = None) -> GlobalConfig:
    """The embedded defaults, with `path` (the admin's file) merged over them."""
    raw = _embedded()
    source = "embedded"
    if path:
        try:
            override = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"cannot read config {path}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} "
                              f"at offset {exc.start})") from None
        except ValueError as exc:  # a scalar the loader cannot construct: a huge integer, 2020-13-45
            raise ConfigError(f"cannot read config {path}: {unreadable(exc)}") from None
        except RecursionError:  # the loader recurses per level of nesting
            raise ConfigError(f"cannot read config {path}: nested too deeply to read") from None
        if not isinstance(override, Mapping):
            raise ConfigError(f"config {path}: top level must be a mapping")
        unknown = _unknown_keys(raw, override)
        if unknown:
            raise ConfigError(f"config {path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                              "(webhook/defaults.yaml lists every key)")
        raw = _merge(raw, override)
        source = str(path)
    return from_mapping(_resolved(raw), source)
