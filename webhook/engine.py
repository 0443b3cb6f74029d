"""The injection engine: one pod in, explicit patch operations and decisions out.

Pure (no I/O): the webhook and the offline `podmedic inject/explain` CLI call the same
`inject()`, so they can never disagree. The flow is fixed:

    gates (namespace opted in? pod opted out? already injected?)
      -> per feature, per target container: a mutator emits operations and one Decision
      -> pod-level additions the features asked for (toolbox init container, volumes)
      -> the injection marker annotation (what was added, for idempotence and uninject)

Features run in dependency order: the supervisor decides before probes (a held container
needs a liveness probe that does not kill it), logs before forensics (where bundles go).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook import delivery, forensics, logdir, probes, wrapper
from webhook.config import GlobalConfig
from webhook.namespaces import Lookup, Namespace
from webhook.patch import PatchBuilder, pointer
from webhook.reasons import Reason
from webhook.report import Decision, Report
from webhook.settings import InvalidSetting, Level, Resolved, parse_switch

log = logging.getLogger(__name__)

STATUS_VERSION = 1


@dataclass(frozen=True)
class Target:
    """A container a feature may change, addressed by its position in the original pod."""

    kind: str            # "containers" or "initContainers"
    index: int
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def path(self) -> tuple[str, str, int]:
        return ("spec", self.kind, self.index)


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
    users: dict[str, list[Target]] = field(default_factory=dict)  # feature -> containers it changed
    toolbox_blocked: bool = False  # the pod already uses one of podmedic's volume/container names

    def applied(self, feature: str, container: str) -> bool:
        return feature in self.status.get("containers", {}).get(container, {})

    def record(self, target: Target, feature: str, what: Any) -> None:
        """Remember what a feature added to a container: the marker lists it (for uninject),
        and delivery.finish() adds the pod-level pieces for it. Mutators call this last, so a
        mutator that raises leaves no record behind."""
        self.status.setdefault("containers", {}).setdefault(target.name, {})[feature] = what
        self.users.setdefault(feature, []).append(target)


Mutator = Callable[[PodContext, Target, PatchBuilder], Decision]


@dataclass(frozen=True)
class Feature:
    name: str
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


def _list(parent: Any, key: str) -> list[dict[str, Any]]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


FEATURES: tuple[Feature, ...] = (
    Feature("supervisor", wrapper.mutate, regular_containers),
    Feature("probes", probes.mutate, probed_containers),
    Feature("logs", logdir.mutate, regular_containers),
    Feature("forensics", forensics.mutate, regular_containers),
)


@dataclass
class Outcome:
    ops: list[dict[str, Any]]
    report: Report
    denied: str | None = None  # set when onError=deny and a mutator failed


def _gate(lookup: Lookup, pod: dict[str, Any], config: GlobalConfig) -> tuple[Decision | None, Resolved | None]:
    """Whole-pod decisions: only an opted-in namespace's pods that did not opt out get through.

    A namespace that cannot be looked up never falls back to defaults: the reason is recorded
    and nothing is injected (the Kyverno CVE-2025-46342 class of bug).
    """
    if lookup.namespace is None:
        return Decision("pod", None, lookup.reason or Reason.NAMESPACE_LOOKUP_FAILED), None
    annotations = _annotations(pod)
    settings = Resolved(config, lookup.namespace.annotations, annotations)
    level = Level.NAMESPACE if "inject" in settings.namespace else Level.GLOBAL
    raw = inject_switch(lookup.namespace, config)
    try:
        enabled = parse_switch(raw)
    except ValueError as exc:
        return Decision("pod", None, Reason.INVALID_VALUE, f"{config.prefix}inject={raw!r}: {exc}", level), None
    if not enabled:
        return Decision("pod", None, Reason.NAMESPACE_NOT_ENABLED, level=level), None
    if settings.pod.get("inject") == "disabled":
        return Decision("pod", None, Reason.POD_OPTED_OUT, level=Level.POD), None
    if config.status_key in annotations:
        return Decision("pod", None, Reason.ALREADY_INJECTED, level=Level.POD), None
    return None, settings


def inject_switch(namespace: Namespace, config: GlobalConfig) -> str:
    """The namespace's `inject` value as written (an empty value counts as unset), else the
    global default. `enabled` is the only value that opts a namespace in."""
    return namespace.annotations.get(config.prefix + "inject") or config.defaults["inject"]


def _annotations(pod: dict[str, Any]) -> dict[str, Any]:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _switch(ctx: PodContext, feature: str, container: str) -> tuple[bool, Level]:
    return bool(ctx.settings.value(feature, container)), ctx.settings.get(feature, container).level


def _run_feature(ctx: PodContext, feature: Feature, patch: PatchBuilder) -> str | None:
    """Run one feature over its targets; returns a deny message when onError=deny trips."""
    for target in feature.targets(ctx.pod):
        try:
            enabled, level = _switch(ctx, feature.name, target.name)
            if not enabled:
                ctx.report.add(Decision(feature.name, target.name, Reason.FEATURE_DISABLED, level=level))
                continue
            with patch.transaction():
                ctx.report.add(feature.mutate(ctx, target, patch))
        except InvalidSetting as exc:
            ctx.report.add(Decision(feature.name, target.name, Reason.INVALID_VALUE, str(exc), exc.level))
        except Exception as exc:  # a bug in one feature must not break the pod (onError)
            log.exception("mutator %s failed for container %s", feature.name, target.name)
            ctx.report.add(Decision(feature.name, target.name, Reason.MUTATOR_ERROR, type(exc).__name__))
            if ctx.config.on_error == "deny":
                return f"podmedic: internal error injecting {feature.name} into {target.name}"
    return None


def _note_ignored(ctx: PodContext) -> None:
    for ignored in ctx.settings.ignored:
        reason = Reason.UNKNOWN_KEY if ignored.unknown else Reason.NOT_OVERRIDABLE
        ctx.report.add(Decision("settings", None, reason, ignored.annotation, Level.POD))


def inject(pod: dict[str, Any], lookup: Lookup, config: GlobalConfig) -> Outcome:
    """Plan and emit the patch for one pod shaped as podshape.problem() accepts (both callers
    check it first); a failing feature is contained in _run_feature."""
    report = Report()
    gate, settings = _gate(lookup, pod, config)
    if gate is not None or settings is None or lookup.namespace is None:
        report.add(gate)  # type: ignore[arg-type]
        return Outcome([], report)
    ctx = PodContext(pod, lookup.namespace.name, dict(lookup.namespace.labels), config, settings, report,
                     toolbox_blocked=delivery.names_taken(pod))
    _note_ignored(ctx)
    patch = PatchBuilder(pod)
    for feature in FEATURES:
        denied = _run_feature(ctx, feature, patch)
        if denied:
            return Outcome([], report, denied=denied)
    delivery.finish(ctx, patch)
    if patch.ops:
        patch.ensure_map(("metadata", "annotations"))  # so `created` lists it when it is new
        ctx.status["version"] = STATUS_VERSION
        ctx.status["created"] = [pointer(p) for p in patch.created]
        patch.set(("metadata", "annotations", config.status_key), orjson.dumps(ctx.status).decode())
    return Outcome(patch.ops, report)
