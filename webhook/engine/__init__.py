"""The injection engine: one pod in, explicit patch operations and decisions out.

Pure (no I/O): the webhook and the offline `podmedic inject/explain` CLI call the same
`inject()`, so they can never disagree (but in one case: offline, toolbox.imagePullSecrets are
never added to a template that lists none, pod_level.image_unusable). The flow is fixed:

    gates (namespace opted in? pod opted out? already injected? a mirror pod? Linux?
           a copy of an injected pod, marker dropped? pod_level.copied_parts)
      -> per feature, per target container: a mutator emits operations and one Decision
         (the features that need podmedic's init containers skip a pod pinned to a node
         architecture its toolbox lacks: pod_level.toolbox_unavailable)
      -> pod-level additions the features asked for (toolbox init container, volumes)
      -> the injection marker annotation (what was added, for idempotence and uninject)

Features run in dependency order: logs first (its directory is where the supervisor's exit
bundles and the forensics preStop write), the supervisor before probes (a held container needs
a liveness probe that does not kill it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from webhook.engine import marker, mesh, placement, pod_level
from webhook.engine.config import GlobalConfig
from webhook.engine.context import Feature, PodContext, Target, pod_annotations, probed_containers, regular_containers
from webhook.engine.decisions import Decision, Reason, Report
from webhook.engine.features import forensics, logs, probes, supervisor
from webhook.engine.keys import FeatureName, Level, parse_switch
from webhook.engine.namespace import Lookup, Namespace
from webhook.engine.patch import PatchBuilder, pointer
from webhook.engine.settings import InvalidSetting, Resolved

log = logging.getLogger(__name__)

# Set by the kubelet on the API object it creates for each static pod (the "mirror pod").
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
LINUX = frozenset(("linux",))


# In this order: the supervisor reads what the logs feature applied (exit bundles), the probes
# feature what the supervisor wrapped and whether its wrapper holds (supervisor.holds).
FEATURES: tuple[Feature, ...] = (
    Feature(FeatureName.LOGS, logs.mutate, regular_containers),
    Feature(FeatureName.SUPERVISOR, supervisor.mutate, regular_containers),
    Feature(FeatureName.PROBES, probes.mutate, probed_containers),
    Feature(FeatureName.FORENSICS, forensics.mutate, regular_containers),
)


@dataclass
class Outcome:
    ops: list[dict[str, Any]]
    report: Report
    denied: str | None = None  # set when onError=deny and a mutator failed


def _gate(lookup: Lookup, pod: dict[str, Any], config: GlobalConfig) -> tuple[Decision | None, Resolved | None]:
    """Whole-pod decisions: only an opted-in namespace's Linux pods that did not opt out get through.

    A namespace that cannot be looked up never falls back to defaults: the reason is recorded
    and nothing is injected (the Kyverno CVE-2025-46342 class of bug).
    """
    if lookup.namespace is None:
        return Decision("pod", None, lookup.reason or Reason.NAMESPACE_LOOKUP_FAILED), None
    annotations = pod_annotations(pod)
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
    if config.status_key in annotations:  # even a malformed marker: never inject twice
        return Decision("pod", None, Reason.ALREADY_INJECTED, _marker_problem(annotations[config.status_key]),
                        Level.POD), None
    if MIRROR_ANNOTATION in annotations:
        return Decision("pod", None, Reason.MIRROR_POD, level=Level.POD), None
    not_linux = _not_linux(pod.get("spec") or {})
    if not_linux:
        return Decision("pod", None, Reason.NOT_LINUX, not_linux, Level.POD), None
    return None, settings


def _not_linux(spec: dict[str, Any]) -> str:
    """What says the pod runs only on another OS than Linux (the decision's detail), or "".

    The toolbox is Linux binaries, and the API server rejects the Linux-only securityContext
    fields of podmedic's init containers in a pod with spec.os.name windows. But spec.os is
    optional: most Windows manifests choose their nodes by the `kubernetes.io/os` label instead,
    and HostProcess containers exist only on Windows. Only what *requires* another OS counts: a
    pod that may land on a Linux node is injected. The usual pod costs a few dict gets: a
    HostProcess pod must be hostNetwork, and in it either every container is HostProcess or
    none is (the API server's validation), so one container tells, and only in such a pod."""
    os_name = (spec.get("os") or {}).get("name")
    if os_name is not None:
        return "" if os_name == "linux" else f"spec.os.name={os_name!r}"
    selector = spec.get("nodeSelector")
    if selector:
        for label in placement.OS_LABELS:
            value = selector.get(label)
            if value is not None and value != "linux":
                return f"nodeSelector {label}={value}"
    affinity = spec.get("affinity")
    if affinity and placement.affinity_excludes(affinity, placement.OS_LABELS, LINUX):
        return "required node affinity excludes kubernetes.io/os=linux"
    if spec.get("hostNetwork") and _host_process(spec):
        return "windowsOptions.hostProcess"
    return ""


def _host_process(spec: dict[str, Any]) -> bool:
    """Whether the pod's first container is HostProcess (its own windowsOptions, else the pod's)."""
    containers = spec.get("containers") or [{}]
    own = ((containers[0].get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess")
    if own is not None:
        return bool(own)
    return bool(((spec.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess"))


def _marker_problem(raw: object) -> str:
    """Why a marker found on a pod is not one podmedic wrote (the decision's detail), or ""."""
    try:
        marker.parse(raw)
    except marker.MarkerError as exc:
        return f"malformed marker: {exc}"
    return ""


def inject_switch(namespace: Namespace, config: GlobalConfig) -> str:
    """The namespace's `inject` value as written (an empty value counts as unset), else the
    global default. `enabled` is the only value that opts a namespace in."""
    return namespace.annotations.get(config.prefix + "inject") or config.defaults["inject"]


def _run_feature(ctx: PodContext, feature: Feature, targets: list[Target], patch: PatchBuilder) -> str | None:
    """Run one feature over its targets; returns a deny message when onError=deny trips.

    Per target, only what differs between containers: the report's list's own append (not a
    Report.add call), and the feature's switch looked up once for every container without
    annotations of its own (they all get the pod's value; an invalid one is the same
    InvalidSetting for each of them, raised again per container)."""
    name, mutate, settings, add = feature.name, feature.mutate, ctx.settings, ctx.report.decisions.append
    own = settings.own
    switch: Any
    try:
        switch = settings.value(name)
    except InvalidSetting as exc:
        switch = exc
    for target in targets:
        mark = patch.mark()
        try:
            enabled = settings.value(name, target.name) if target.name in own else switch
            if enabled is not True:  # a switch parses to a bool (None: unset), or is the shared InvalidSetting
                if isinstance(enabled, InvalidSetting):
                    raise enabled
                add(Decision(name, target.name, Reason.FEATURE_DISABLED, level=settings.get(name, target.name).level))
                continue
            add(mutate(ctx, target, patch))
        except InvalidSetting as exc:
            patch.rollback(mark)
            add(Decision(name, target.name, Reason.INVALID_VALUE, str(exc), exc.level))
        except Exception as exc:  # a bug in one feature must not break the pod (onError)
            patch.rollback(mark)
            log.exception("mutator %s failed for container %s", name, target.name)
            add(Decision(name, target.name, Reason.MUTATOR_ERROR, type(exc).__name__))
            if ctx.config.on_error == "deny":
                return f"podmedic: internal error injecting {name} into {target.name}"
    return None


def _note_ignored(ctx: PodContext) -> None:
    for ignored in ctx.settings.ignored:
        reason = Reason.UNKNOWN_KEY if ignored.unknown else Reason.NOT_OVERRIDABLE
        ctx.report.add(Decision("settings", None, reason, ignored.annotation, Level.POD))
    if ctx.settings.containers:  # `<key>.<container>` naming no container is a typo the user should see
        spec = ctx.pod.get("spec") or {}
        names = {c.get("name") for kind in ("initContainers", "containers") for c in spec.get(kind) or []}
        for key, container in ctx.settings.containers:
            if container not in names:
                ctx.report.add(Decision("settings", None, Reason.UNKNOWN_CONTAINER,
                                        f"{ctx.config.prefix}{key}.{container}", Level.CONTAINER))


def inject(pod: dict[str, Any], lookup: Lookup, config: GlobalConfig, offline: bool = False) -> Outcome:
    """Plan and emit the patch for one pod shaped as podshape.problem() accepts (both callers
    check it first); a failing feature is contained in _run_feature. `offline`: a template from
    `podmedic inject`, which no admission plugin has seen yet (pod_level.image_unusable)."""
    report = Report()
    gate, settings = _gate(lookup, pod, config)
    if gate is not None:
        report.add(gate)
        return Outcome([], report)
    assert settings is not None and lookup.namespace is not None  # what _gate lets through
    taken = pod_level.names_taken(pod)
    copied = taken and pod_level.copied_parts(pod)
    if copied:  # a gate too, after _gate: only a pod that uses our names pays for it
        report.add(Decision("pod", None, Reason.COPY_OF_INJECTED, copied, Level.POD))
        return Outcome([], report)
    ctx = PodContext(pod, lookup.namespace.name, dict(lookup.namespace.labels), config, settings, report,
                     toolbox_blocked=taken, log_claim=lookup.namespace.log_claim,
                     limit_range=lookup.namespace.limit_range,
                     image_unusable=pod_level.image_unusable(pod.get("spec") or {}, config, offline),
                     ephemeral_short=pod_level.ephemeral_storage_short(pod.get("spec") or {}, config))
    ctx.mesh, proxies = mesh.injected(pod_annotations(pod), pod.get("spec") or {})
    _note_ignored(ctx)
    for proxy, mesh_name in proxies.items():  # the mesh's own: no feature changes it
        report.add(Decision("pod", proxy, Reason.MESH_PROXY, mesh_name, Level.POD))
    patch = PatchBuilder(pod)
    targets: dict[object, list[Target]] = {}  # by Feature.targets: each list made once per review
    for feature in FEATURES:
        found = targets.get(feature.targets)
        if found is None:
            found = targets[feature.targets] = ([t for t in feature.targets(pod) if t.name not in proxies] if proxies
                                                else list(feature.targets(pod)))
        denied = _run_feature(ctx, feature, found, patch)
        if denied:
            return Outcome([], report, denied=denied)
    pod_level.finish(ctx, patch)
    if patch.ops:
        patch.ensure_map(("metadata", "annotations"))  # so `created` lists it when it is new
        status = marker.build(ctx.status.get("containers", {}), ctx.status.get("pod"),
                              [pointer(p) for p in patch.created], {pointer(p): v for p, v in patch.replaced})
        patch.set(("metadata", "annotations", config.status_key), marker.write(status))
    return Outcome(patch.ops, report)
