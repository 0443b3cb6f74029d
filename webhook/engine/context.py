"""What a feature's mutator works on: the pod's context (resolved once per review), the
container it changes, and the Feature and Mutator types. Below the features: they import this,
and only the engine's entry point imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from webhook.engine import secret_env
from webhook.engine.config import GlobalConfig
from webhook.engine.decisions import Decision, Reason, Report
from webhook.engine.keys import FeatureName
from webhook.engine.namespace import Constraint
from webhook.engine.patch import PatchBuilder
from webhook.engine.settings import Resolved

T = TypeVar("T")


class Target:
    """A container a feature may change, addressed by its position in the original pod. Its
    name and path are worked out once: every mutator asks for them several times. (A slotted
    class: a 20-container pod makes 40 of them per review, several times faster than a frozen
    dataclass's.)"""

    __slots__ = ("kind", "index", "spec", "name", "path", "_mount_paths", "_redact_flags")

    def __init__(self, kind: str, index: int, spec: dict[str, Any]):
        self.kind = kind      # "containers" or "initContainers"
        self.index = index
        self.spec = spec
        self.name = str(spec.get("name", ""))
        self.path: tuple[str, str, int] = ("spec", kind, index)
        self._mount_paths: frozenset[str] | None = None
        self._redact_flags: tuple[str, ...] | None = None

    def mount_paths(self) -> frozenset[str]:
        """Where the container mounts volumes (three features ask: worked out once)."""
        if self._mount_paths is None:
            mounts = self.spec.get("volumeMounts") or []
            self._mount_paths = frozenset(m["mountPath"] for m in mounts
                                          if isinstance(m, dict) and isinstance(m.get("mountPath"), str))
        return self._mount_paths

    def redact_flags(self) -> tuple[str, ...]:
        """The forensics collector's flags naming the container's Secret-sourced variables
        (secret_env): the wrapper and the preStop both ask, and a 20-container pod's env is long."""
        if self._redact_flags is None:
            self._redact_flags = secret_env.collector_flags(self.spec)
        return self._redact_flags

    def __repr__(self) -> str:
        return f"Target({self.kind}[{self.index}] {self.name!r})"


DEFAULT_GRACE = 30  # terminationGracePeriodSeconds where a pod sets none (the API's default)
# A container's terminationMessagePolicy under which the kubelet makes the log's tail the
# termination message on an error, but only while the termination-message file is empty: the
# toolbox must then write nothing there (toolbox.NO_TERMINATION_LOG).
LOGS_ON_ERROR = "FallbackToLogsOnError"


@dataclass
class PodContext:
    """Everything a mutator may read, resolved once per review."""

    pod: dict[str, Any]
    namespace: str
    namespace_labels: dict[str, str]
    config: GlobalConfig
    settings: Resolved
    report: Report = field(default_factory=Report)
    status: dict[str, Any] = field(default_factory=dict)  # the injection marker's content
    users: dict[FeatureName, list[Target]] = field(default_factory=dict)  # containers each feature changed
    toolbox_blocked: bool = False  # the pod already uses one of podmedic's volume/container names
    image_unusable: tuple[Reason, str] | None = None  # why podmedic's image cannot run in the pod (pod_level)
    log_claim: str | None = None  # the phase of the namespace's log claim (engine.namespace.Namespace)
    limit_range: tuple[Constraint, ...] = ()  # the namespace's LimitRanges' Container constraints (likewise)
    ephemeral_short: str = ""  # why the pod's ephemeral-storage limit cannot hold the toolbox (pod_level)
    review: dict[str, Any] = field(default_factory=dict)  # what once() worked out for this review
    mesh: str = ""  # the service mesh that injected the pod before podmedic (engine.mesh), or ""
    holding: set[str] = field(default_factory=set)  # containers whose wrapper holds a FATAL app (supervisor.holds)

    def once(self, what: str, make: Callable[[], T]) -> T:
        """make() once per review, not per container: for what a mutator works out from the pod
        and its namespace alone (the logs feature's pod-level verdict). `what` names the result."""
        try:
            return cast(T, self.review[what])
        except KeyError:
            value = self.review[what] = make()
            return value

    def per_pod(self, what: str, container: str, make: Callable[[], T]) -> T:
        """make() once, not per container and review: for what a mutator works out from settings
        alone (the supervisor's options, a probe's timings), which is the same for every container
        without a `<key>.<container>` annotation of its own, and for every pod with the same
        configuration, namespace values and pod values (kept with the settings, Resolved.derived).
        `what` names the result; make() must read neither the container nor the pod, and return a
        value no caller changes (a mapping proxy). A container with annotations of its own gets
        its own make(); an exception (InvalidSetting) is never kept."""
        if container in self.settings.own:
            return make()
        derived = self.settings.derived
        try:
            return cast(T, derived[what])
        except KeyError:
            value = derived[what] = make()
            return value

    def grace_seconds(self) -> int:
        """The pod's terminationGracePeriodSeconds: how long the kubelet gives its containers
        between the stop (preStop hooks, then the stop signal) and SIGKILL. The API server sets
        30 before admission where the pod sets none; a manifest given offline may not have it."""
        grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return grace if isinstance(grace, int) and grace >= 0 else DEFAULT_GRACE

    def applied(self, feature: FeatureName, container: str) -> bool:
        records = self.status.get("containers")
        return records is not None and container in records and feature in records[container]

    def record(self, target: Target, feature: FeatureName, what: Any) -> None:
        """Remember what a feature added to a container: the marker lists it (for uninject),
        and pod_level.finish() adds the pod-level pieces for it. Mutators call this last, so a
        mutator that raises leaves no record behind. (Called for every feature and container:
        the maps and lists are made only when missing, the key read from a table.)"""
        records: dict[str, dict[str, Any]] | None = self.status.get("containers")
        if records is None:
            records = self.status["containers"] = {}
        mine = records.get(target.name)
        if mine is None:
            mine = records[target.name] = {}
        mine[_PLAIN[feature]] = what  # JSON keys: plain str
        users = self.users.get(feature)
        if users is None:
            self.users[feature] = [target]
        else:
            users.append(target)


# Each feature's name as a plain str (a FeatureName is a StrEnum; str() makes a copy every call).
_PLAIN: dict[FeatureName, str] = {name: name.value for name in FeatureName}

Mutator = Callable[[PodContext, Target, PatchBuilder], Decision]


@dataclass(frozen=True)
class Feature:
    name: FeatureName
    mutate: Mutator
    targets: Callable[[dict[str, Any]], Iterator[Target]]


def regular_containers(pod: dict[str, Any]) -> Iterator[Target]:
    for i, c in enumerate(_list(pod.get("spec"), "containers")):
        yield Target("containers", i, c)


def probed_containers(pod: dict[str, Any]) -> Iterator[Target]:
    """Regular containers and native sidecars: plain init containers cannot have probes."""
    yield from regular_containers(pod)
    for i, c in enumerate(_list(pod.get("spec"), "initContainers")):
        if c.get("restartPolicy") == "Always":
            yield Target("initContainers", i, c)


def pod_annotations(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's annotations, or {} where it has none (or they are not a map)."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _list(parent: Any, key: str) -> list[dict[str, Any]]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []
