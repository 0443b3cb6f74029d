"""The admin's global configuration, validated: `from_mapping()` turns the merged YAML
(read by `webhook.cli.config`) into a GlobalConfig.

Validated eagerly at start-up: a bad admin file must stop the server with a clear message,
while bad *annotations* (tenant input) only ever skip a feature.
"""

from __future__ import annotations

import math
import posixpath
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Mapping, TypeGuard

from webhook.engine.keys import KEYS, parse_retention
from webhook.engine.quantity import quantity
from webhook.toolbox.arch import ARCHITECTURES, GOARCH


class ConfigError(ValueError):
    """The global configuration is unusable; the message names the key."""


def unreadable(exc: ValueError) -> str:
    """Why a YAML value cannot be read, for a person: Python's own words for an integer longer
    than it reads ("use sys.set_int_max_str_digits()") speak to a programmer."""
    digits = re.search(r"value has (\d+) digits", str(exc))
    if not digits:
        return f"a value cannot be read: {exc}"
    return f"a number of {digits.group(1)} digits, more than the {sys.get_int_max_str_digits()} that can be read"


@dataclass(frozen=True)
class ToolboxConfig:
    image: str
    image_pull_policy: str
    resources: Mapping[str, Any]
    # The node architectures (kubernetes.io/arch) of its static toolbox; None: unknown, none checked.
    architectures: frozenset[str] | None
    image_pull_secrets: tuple[str, ...] = ()  # added to the pods that get an init container


LogBackend = Literal["hostPath", "pvc", "auto"]
LOG_BACKENDS: tuple[LogBackend, ...] = ("hostPath", "pvc", "auto")
# A PersistentVolumeClaim's name: a DNS-1123 subdomain.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class JanitorConfig:
    """`podmedic logs janitor`: deletion switch, retention bounds (seconds), run budget."""

    dry_run: bool = True
    min_retention: int = 3600
    max_retention: int = 90 * 86400
    max_pin: int = 90 * 86400
    run_seconds: int = 600
    extra_roots: tuple[str, ...] = ()  # swept too: the pvc backend's claim directories on the nodes


@dataclass(frozen=True)
class LogsConfig:
    host_root: str
    namespace_roots: Mapping[str, str]
    backend: LogBackend = "hostPath"   # auto: pvc where Pod Security forbids hostPath
    claim_name: str = "podmedic-logs"  # each namespace's log claim in the pvc backend
    janitor: JanitorConfig = field(default_factory=JanitorConfig)

    @property
    def watched_claim(self) -> str | None:
        """The claim whose phase the namespace source must know (None: hostPath only)."""
        return None if self.backend == "hostPath" else self.claim_name

    def root_for(self, namespace: str) -> str:
        """The host directory under which this namespace's pod log directories live."""
        return self.namespace_roots.get(namespace, self.host_root)

    @property
    def roots(self) -> list[str]:
        """Every configured root, once each (what the janitor sweeps)."""
        return sorted({self.host_root, *self.namespace_roots.values(), *self.janitor.extra_roots})


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


def _absolute_root(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or posixpath.normpath(value) != value:
        raise ConfigError(f"{where}: must be an absolute, normalised path (got {value!r})")
    if value == "/":
        raise ConfigError(f"{where}: must not be the host's root directory")
    return value


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    """A section of the file: anything else would fail as Python's message, naming no key."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping (got {value!r})")
    return value


_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_namespace_name(name: object) -> TypeGuard[str]:
    """A name a namespace can have: a DNS-1123 label (at most 63 characters)."""
    return isinstance(name, str) and len(name) <= 63 and _LABEL.fullmatch(name) is not None


def is_subdomain_name(name: object) -> TypeGuard[str]:
    """A name a Secret or a PersistentVolumeClaim can have: a DNS-1123 subdomain (at most 253)."""
    return isinstance(name, str) and len(name) <= 253 and _SUBDOMAIN.fullmatch(name) is not None


def _namespace(name: Any) -> str:
    """A key no namespace can have would leave its root unused, that namespace's logs under hostRoot."""
    if not is_namespace_name(name):
        raise ConfigError(f"logs.namespaceRoots: {name!r} is not a namespace name (DNS-1123 label)")
    return name


def _prefix(value: Any) -> str:
    """Every annotation key (and the quarantine label) is this prefix plus a name: the API server
    accepts a key only if its prefix is a DNS-1123 subdomain of at most 253 characters."""
    if not isinstance(value, str) or not value.endswith("/"):
        raise ConfigError("annotationPrefix must end with '/' (e.g. podmedic.io/)")
    if len(value) > 254 or not _SUBDOMAIN.fullmatch(value[:-1]):
        raise ConfigError(f"annotationPrefix: must be a DNS subdomain followed by '/' (e.g. podmedic.io/), got {value!r}")
    return value


def _image(value: Any) -> str:
    """Copied into each init container: the API server refuses an empty image or one with
    surrounding whitespace, and str() would have turned a list into the image '[1]'."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise ConfigError("toolbox.image: must be a container image name, a non-empty string "
                          f"without surrounding spaces (got {value!r})")
    return value


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _pull_policy(value: Any) -> str:
    """The API server accepts only these; any other refuses every injected pod."""
    if value not in PULL_POLICIES:
        raise ConfigError(f"toolbox.imagePullPolicy: must be one of {', '.join(PULL_POLICIES)} (got {value!r})")
    return str(value)


def _pull_secrets(value: Any) -> tuple[str, ...]:
    """Secret names added to every pod that gets podmedic's init containers: a name the API
    server refuses (not a DNS-1123 subdomain) would refuse every such pod, and one listed twice
    would be added twice."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"toolbox.imagePullSecrets: must be a list of Secret names (got {value!r})")
    for i, name in enumerate(value):
        if not is_subdomain_name(name):
            raise ConfigError(f"toolbox.imagePullSecrets[{i}]: must be a Secret name (a DNS-1123 subdomain: "
                              f"lowercase letters, digits, '-' and '.', at most 253 characters), got {name!r}")
        if name in value[:i]:
            raise ConfigError(f"toolbox.imagePullSecrets[{i}]: {name!r} is listed twice")
    return tuple(value)


def _architectures(value: Any) -> frozenset[str] | None:
    """A pod pinned to a node architecture outside this list gets no init containers (the engine's
    arch-unsupported). A machine's own name (x86_64) never matches a node's label, so it is
    refused with the label's name for it; an empty list would turn every pinned pod away. None
    (no list given, no recorded toolbox architecture: webhook.cli.config): none is checked."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ConfigError(f"toolbox.architectures: must be a list of GOARCH names such as amd64, arm64 (got {value!r})")
    if not value:
        raise ConfigError("toolbox.architectures: must list at least one architecture (leave it out for the "
                          "toolbox's own)")
    for i, name in enumerate(value):
        if name not in ARCHITECTURES:
            hint = f" ({GOARCH[name]}?)" if isinstance(name, str) and name in GOARCH else ""
            raise ConfigError(f"toolbox.architectures[{i}]: {name!r} is not a GOARCH name{hint}; expected one of "
                              f"{', '.join(sorted(ARCHITECTURES))}, as the node label kubernetes.io/arch")
        if name in value[:i]:
            raise ConfigError(f"toolbox.architectures[{i}]: {name!r} is listed twice")
    return frozenset(value)


def _check_resources(resources: Mapping[str, Any]) -> None:
    """toolbox.resources are copied into the init containers of every injected pod: what the API
    server would refuse there (no quantity, a request above its limit) must stop the load instead."""
    parsed: dict[str, dict[str, Fraction]] = {}
    for kind, values in resources.items():
        if kind not in ("requests", "limits"):
            raise ConfigError(f"toolbox.resources: unknown key {kind!r} (expected requests, limits)")
        if not isinstance(values, Mapping):
            raise ConfigError(f"toolbox.resources.{kind}: must be a mapping (got {values!r})")
        parsed[kind] = {}
        for name, value in values.items():
            try:
                amount = None if isinstance(value, bool) or not isinstance(value, (str, int, float)) else quantity(value)
            except ValueError:
                amount = None
            if amount is None or amount < 0:
                raise ConfigError(f"toolbox.resources.{kind}.{name}: expected a quantity such as 100m or 64Mi "
                                  f"(got {value!r})")
            parsed[kind][name] = amount
    for name, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(name)
        if limit is not None and request > limit:
            raise ConfigError(f"toolbox.resources: requests.{name} ({resources['requests'][name]}) exceeds "
                              f"limits.{name} ({resources['limits'][name]})")


def _backend(value: Any) -> LogBackend:
    for backend in LOG_BACKENDS:
        if value == backend:
            return backend
    raise ConfigError(f"logs.backend must be one of {', '.join(LOG_BACKENDS)} (got {value!r})")


def _claim_name(value: Any) -> str:
    if not is_subdomain_name(value):
        raise ConfigError(f"logs.claimName must be a PersistentVolumeClaim name (DNS-1123 subdomain), got {value!r}")
    return value


def _non_negative(where: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: must be a whole number >= 0 (got {value!r})")
    return value


def _positive_whole(where: str, value: Any) -> int:
    """int() alone would take True as 1 and cut 1.5 to 1; a limit of 0 or less refuses every body."""
    if isinstance(value, (bool, float)):
        raise ConfigError(f"{where}: expected a whole number (got {value!r})")
    try:
        number = int(value)
    except (TypeError, ValueError):  # int()'s own message names no key
        raise ConfigError(f"{where}: expected a whole number (got {value!r})") from None
    if number < 1:
        raise ConfigError(f"{where}: must be at least 1 (got {number!r})")
    return number


def _positive_seconds(where: str, value: Any) -> float:
    """A deadline of 0, below 0 or NaN would answer every review late (unpatched); inf never early."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number (got {value!r})")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number (got {value!r})") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{where}: must be a finite number above 0 (got {seconds!r})")
    return seconds


def _janitor(raw: Mapping[str, Any]) -> JanitorConfig:
    def duration(key: str) -> int:
        try:
            return parse_retention(str(raw[key]))
        except ValueError as exc:
            raise ConfigError(f"logs.janitor.{key}: {exc}") from None

    if not isinstance(raw.get("dryRun"), bool):
        raise ConfigError(f"logs.janitor.dryRun: must be true or false (got {raw.get('dryRun')!r})")
    low, high = duration("minRetention"), duration("maxRetention")
    if low > high:
        raise ConfigError("logs.janitor: minRetention must not exceed maxRetention")
    run = raw["runSeconds"]
    if not isinstance(run, int) or isinstance(run, bool) or run < 1:
        raise ConfigError(f"logs.janitor.runSeconds: must be a whole number >= 1 (got {run!r})")
    extra = raw.get("roots") or []
    if not isinstance(extra, list):
        raise ConfigError(f"logs.janitor.roots: must be a list of absolute paths (got {extra!r})")
    return JanitorConfig(dry_run=raw["dryRun"], min_retention=low, max_retention=high,
                         max_pin=duration("maxPin"), run_seconds=run,
                         extra_roots=tuple(_absolute_root(f"logs.janitor.roots.{i}", r) for i, r in enumerate(extra)))


def from_mapping(raw: Mapping[str, Any], source: str = "embedded") -> GlobalConfig:
    """Validate a merged configuration mapping; every problem names its key."""
    try:
        prefix = _prefix(raw["annotationPrefix"])
        on_error = raw["onError"]
        if on_error not in ("allow", "deny"):
            raise ConfigError(f"onError must be allow or deny (got {on_error!r})")
        defaults = {str(k): "" if v is None else str(v) for k, v in _mapping("defaults", raw["defaults"]).items()}
        overridable = raw["podOverridable"]
        if not isinstance(overridable, list) or not all(isinstance(k, str) for k in overridable):
            raise ConfigError(f"podOverridable: must be a list of setting keys (got {overridable!r})")
        unknown = set(defaults) - set(KEYS) | set(overridable) - set(KEYS)
        if unknown:
            raise ConfigError(f"unknown setting keys: {', '.join(sorted(unknown))}")
        missing = sorted(k for k, key in KEYS.items() if not key.optional and not defaults.get(k))
        if missing:
            raise ConfigError(f"defaults need a value for: {', '.join(missing)}")
        for key, value in defaults.items():
            if value != "":
                try:
                    KEYS[key].parse(value)
                except ValueError as exc:
                    raise ConfigError(f"defaults.{key}: {exc}") from None
        logs = _mapping("logs", raw["logs"])
        roots = {_namespace(ns): _absolute_root(f"logs.namespaceRoots.{ns}", root)
                 for ns, root in _mapping("logs.namespaceRoots", logs.get("namespaceRoots") or {}).items()}
        toolbox = _mapping("toolbox", raw["toolbox"])
        resources = toolbox.get("resources") or {}
        if not isinstance(resources, Mapping):  # copied into each init container: a list or number breaks every pod
            raise ConfigError(f"toolbox.resources: must be a mapping, as a container's resources (got {resources!r})")
        _check_resources(resources)
        return GlobalConfig(
            prefix=prefix,
            on_error=on_error,
            max_request_bytes=_positive_whole("maxRequestBytes", raw["maxRequestBytes"]),
            review_deadline_seconds=_positive_seconds("reviewDeadlineSeconds", raw["reviewDeadlineSeconds"]),
            plan_memo_bytes=_non_negative("planMemoBytes", raw["planMemoBytes"]),
            defaults=defaults,
            pod_overridable=frozenset(overridable),
            toolbox=ToolboxConfig(
                image=_image(toolbox["image"]),
                image_pull_policy=_pull_policy(toolbox.get("imagePullPolicy", "IfNotPresent")),
                resources=resources,
                image_pull_secrets=_pull_secrets(toolbox.get("imagePullSecrets")),
                architectures=_architectures(toolbox["architectures"]),
            ),
            logs=LogsConfig(host_root=_absolute_root("logs.hostRoot", logs["hostRoot"]), namespace_roots=roots,
                            backend=_backend(logs.get("backend", "hostPath")),
                            claim_name=_claim_name(logs.get("claimName", "podmedic-logs")),
                            janitor=_janitor(_mapping("logs.janitor", logs["janitor"])) if "janitor" in logs else JanitorConfig()),
            source=source,
        )
    except KeyError as exc:
        raise ConfigError(f"missing configuration key {exc}") from None
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"malformed configuration: {exc}") from None
