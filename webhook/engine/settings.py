"""Settings: the table of keys, their parsers, and resolution global < namespace < pod < container.

Precedence (a truth table, as Linkerd writes it above its resolver):

    global default  namespace annot.  pod annot. (key overridable)  pod `<key>.<container>`   -> value
    ---------------------------------------------------------------------------------------------------
    d               -                 -                              -                         d (global)
    d               n                 -                              -                         n (namespace)
    d               n                 p                              -                         p (pod)
    d               n                 p                              c                         c (container)
    d               n                 p (key NOT overridable)        c                         n + warning

`inject` is special: the namespace opts in; a pod can only opt out (see engine).

Values stay raw strings until a feature asks for them, so an invalid value only skips the
feature that reads it, with a precise message, and never rejects the pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from webhook.engine.config import GlobalConfig
from webhook.engine.keyed import IdentityCache
from webhook.engine.keys import KEYS, OUTPUT_KEYS, Level


# ------------------------------------------------------------------ resolution

class InvalidSetting(ValueError):
    """A tenant-supplied value does not parse; the message is the user-facing warning."""

    def __init__(self, annotation: str, raw: str, expected: str, level: Level):
        self.level = level
        shown = raw if len(raw) <= 64 else raw[:61] + "..."
        super().__init__(f"{annotation}={shown!r} is invalid: {expected}")


class Setting(NamedTuple):
    """One key's winning value for one container (a tuple: built ~20 times per review)."""

    key: str
    raw: str
    level: Level
    annotation: str  # the annotation it came from ("" for global)

    def value(self) -> Any:
        try:
            return KEYS[self.key].parse(self.raw) if self.raw != "" else None
        except ValueError as exc:
            raise InvalidSetting(self.annotation, self.raw, str(exc), self.level) from None


@dataclass(frozen=True)
class Ignored:
    """A pod annotation that was not honoured (unknown key, or not overridable)."""

    annotation: str
    unknown: bool  # True: no such key (a typo?); False: a key the admin keeps for itself


class Resolved:
    """All settings for one pod, resolved once into plain values.

    Most containers have no `<key>.<container>` annotation of their own, so what they get is
    the same for all of them: that shared Setting and its parsed value are computed once per
    key and pod (a 20-container pod asks for about 500 settings per review), and only a
    container named by a container-level annotation gets its own entries. What is shared
    depends only on the configuration and the namespace's and the pod's pod-level values, so it
    is kept across reviews too (_SHARED): the pods of a namespace mostly have the same ones."""

    def __init__(self, config: GlobalConfig, ns_annotations: Mapping[str, str],
                 pod_annotations: Mapping[str, str]):
        self._config = config
        prefix = config.prefix
        self.namespace, namespace_key = _namespace(config, ns_annotations)  # never changed: shared
        self.pod: dict[str, str] = {}
        self.containers: dict[tuple[str, str], str] = {}
        self.ignored: list[Ignored] = []
        self._values: dict[tuple[str, str], Any] = {}  # parsed once per (key, container with annotations)
        for annotation, raw in pod_annotations.items():
            if annotation.startswith(prefix):
                self._take_pod_annotation(annotation, annotation[len(prefix):], raw)
        # the containers with `<key>.<container>` annotations: the others all get the same values
        self.own = frozenset(container for _, container in self.containers)
        # By key, what a container without its own annotation gets: its Setting, and its parsed
        # value (never a list, which a caller could change: those are parsed on every call).
        # `derived`: what mutators work out from these alone (PodContext.per_pod), kept as long.
        self._shared, self._shared_values, self.derived = _shared(config, namespace_key, self.pod)

    def _take_pod_annotation(self, annotation: str, name: str, raw: Any) -> None:
        key, _, container = name.partition(".")
        if name in OUTPUT_KEYS or raw == "":
            return
        if key not in KEYS:
            self.ignored.append(Ignored(annotation, unknown=True))
        elif key not in self._config.pod_overridable:
            self.ignored.append(Ignored(annotation, unknown=False))
        elif container:
            self.containers[(key, container)] = str(raw)
        else:
            self.pod[key] = str(raw)

    def get(self, key: str, container: str | None = None) -> Setting:
        if container is not None and container in self.own and (key, container) in self.containers:
            return Setting(key, self.containers[(key, container)], Level.CONTAINER,
                           f"{self._config.prefix}{key}.{container}")
        setting = self._shared.get(key)
        if setting is None:
            setting = self._shared[key] = self._resolve_shared(key)
        return setting

    def _resolve_shared(self, key: str) -> Setting:
        prefix = self._config.prefix
        if key in self.pod:
            return Setting(key, self.pod[key], Level.POD, prefix + key)
        if key in self.namespace:
            return Setting(key, self.namespace[key], Level.NAMESPACE, prefix + key)
        return Setting(key, self._config.defaults.get(key, ""), Level.GLOBAL, "")

    def value(self, key: str, container: str | None = None) -> Any:
        """The parsed value (None when unset); raises InvalidSetting for a bad tenant value."""
        if container is not None and container in self.own:
            cache_key = (key, container)
            if cache_key not in self._values:
                self._values[cache_key] = self.get(key, container).value()
            return self._values[cache_key]
        try:
            return self._shared_values[key]
        except KeyError:
            value = self.get(key).value()
            if not isinstance(value, list):
                self._shared_values[key] = value
            return value


# (configuration, namespace values, pod values) -> what Resolved shares. The dicts are filled as
# keys are asked for, by several threads at once: each key's entries are the same whoever
# writes them first. Bounded (tenants choose the pod values).
_Shared = tuple[dict[str, Setting], dict[str, Any], dict[str, Any]]
_SHARED: IdentityCache[tuple[int, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], _Shared] = \
    IdentityCache(256)


def _shared(config: GlobalConfig, namespace: tuple[tuple[str, str], ...], pod: dict[str, str]) -> _Shared:
    key = (id(config), namespace, tuple(pod.items()))
    shared = _SHARED.get(key, config)
    if shared is None:
        shared = _SHARED.put(key, ({}, {}, {}), config)
    return shared


# (configuration, a namespace's annotations) -> its values (Resolved.namespace) and their items
# (_shared's key), by the identity of both: a namespace source keeps one read-only mapping per
# version of a namespace (engine.namespace.Namespace: read-only, never changed in place), and
# every review in it asks; the dict comprehension and the key's tuple were 2 % of a typical pod's
# review.
_NAMESPACE: IdentityCache[tuple[int, int], tuple[dict[str, str], tuple[tuple[str, str], ...]]] = \
    IdentityCache(4096)


def _namespace(config: GlobalConfig, annotations: Mapping[str, str]) -> tuple[dict[str, str],
                                                                               tuple[tuple[str, str], ...]]:
    key = (id(config), id(annotations))
    found = _NAMESPACE.get(key, config, annotations)
    if found is None:
        prefix = config.prefix
        # An empty annotation value counts as not set: the next level down decides.
        values = {k[len(prefix):]: v for k, v in annotations.items()
                  if k.startswith(prefix) and k[len(prefix):] in KEYS and v != ""}
        found = _NAMESPACE.put(key, (values, tuple(values.items())), config, annotations)
    return found
