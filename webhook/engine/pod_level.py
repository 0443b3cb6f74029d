"""Pod-level additions that features share: the toolbox init container and volumes, and the
log directory's volume (hostPath or the namespace's claim) and its preparing init container,
with the pull secrets of their image (toolbox.imagePullSecrets).

Features only touch their own container; after all of them ran, `finish()` adds what the pod
needs exactly once (never per container, never twice), placed first among init containers so
that native sidecars and the app find the toolbox installed.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from webhook.engine import limitrange, placement
from webhook.engine.config import GlobalConfig
from webhook.engine.context import PodContext, Target, pod_annotations
from webhook.engine.decisions import Decision, Reason
from webhook.engine.keyed import IdentityCache
from webhook.engine.keys import FeatureName
from webhook.engine.namespace import Constraint
from webhook.engine.patch import PatchBuilder
from webhook.engine.quantity import quantity
from webhook.toolbox import argv as toolbox


TOOLBOX_VOLUME = "podmedic-toolbox"
STATE_VOLUME = "podmedic-state"
LOGS_VOLUME = "podmedic-logs"
TOOLBOX_INIT = "podmedic-toolbox"
LOGDIR_INIT = "podmedic-logdir"
STATE_MOUNT = "/podmedic-state"
LOGS_ROOT_MOUNT = "/podmedic-logs"
POD_NAME_ENV = "PODMEDIC_POD_NAME"
POD_UID_ENV = "PODMEDIC_POD_UID"
# The cluster-autoscaler does not scale a node down while a pod on it has local storage (emptyDir,
# hostPath) that this annotation does not list (comma-separated volume names). podmedic's own
# local volumes hold nothing worth keeping on that node: the toolbox is copied in again, the state
# is per incarnation, and a hostPath log root is the shared CephFS mount of every node.
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
HOSTPATH_FORBIDDEN = ("baseline", "restricted")

TOOLBOX_FEATURES = (FeatureName.SUPERVISOR, FeatureName.FORENSICS)
OUR_VOLUMES = (TOOLBOX_VOLUME, STATE_VOLUME, LOGS_VOLUME)
TOOLBOX_MOUNTS = frozenset((toolbox.TOOLBOX_MOUNT, STATE_MOUNT))
POD_ENV_NAMES = frozenset((POD_NAME_ENV, POD_UID_ENV))
OUR_CONTAINERS = (TOOLBOX_INIT, LOGDIR_INIT)

# Restricted-profile compliant, so the toolbox works in every Pod Security level and when the
# pod runs as non-root: the installed files are world-readable and executable.
TOOLBOX_SECURITY = {
    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
    "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The log directory's per-container subdirectories are created by the kubelet root-owned with the
# volume root's mode (subPathExpr), 0755 on a hostPath root, so a non-root app could not write
# them. This init container creates them first and opens them up (mode 1777, like /tmp).
# hostPath backend: it runs as root -- the directories' owner, so chmod needs no capability --
# with every capability dropped; it is only ever added where hostPath is allowed, i.e. in
# namespaces that do not enforce baseline or restricted.
LOGDIR_SECURITY = {
    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
    "readOnlyRootFilesystem": True, "runAsNonRoot": False, "runAsUser": 0,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# pvc backend: restricted-compliant like the toolbox's (any namespace may use the claim). It needs
# no root: the admin provisions each namespace's root directory with mode 1777 (`podmedic logs
# provision`), so this UID creates the pod's directory and owns it and the 1777 per-container
# directories below it (docs/operations.md, "Log claims").
LOGDIR_PVC_SECURITY = TOOLBOX_SECURITY


def names_taken(pod: dict[str, Any]) -> bool:
    """Does the pod already use one of podmedic's volume or container names?"""
    spec = pod.get("spec") or {}
    volumes = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)}
    containers = {c.get("name") for kind in ("initContainers", "containers")
                  for c in spec.get(kind) or [] if isinstance(c, dict)}
    return bool(volumes & set(OUR_VOLUMES) or containers & set(OUR_CONTAINERS))


def image_unusable(spec: dict[str, Any], config: GlobalConfig, offline: bool) -> tuple[Reason, str] | None:
    """Why podmedic's image (its init containers, the toolbox they copy) cannot run in this pod,
    or None; the features that need it skip with the reason.

    - A pod pinned to node architectures the toolbox lacks (engine.placement): nothing the image
      holds can exec there (exec format error: the pod would never start).
    - Offline (`podmedic inject` on a template), toolbox.imagePullSecrets configured and the
      template lists none: at admission the ServiceAccount admission plugin copies the
      ServiceAccount's pull secrets only into a pod that lists none, so adding ours to the
      template would take the ServiceAccount's away from its pods (the app's image may need
      them). Without ours the image needs a login it has not got. At admission the plugin has
      already run (the webhook sees its copy), and a template that lists some gets no copy
      anyway: both take ours safely."""
    arch = placement.foreign_arch(spec, config.toolbox.architectures)
    if arch:
        return Reason.ARCH_UNSUPPORTED, arch
    secrets = config.toolbox.image_pull_secrets
    if offline and secrets and not spec.get("imagePullSecrets"):
        return Reason.PULL_SECRETS_OFFLINE, f"toolbox.imagePullSecrets: {', '.join(secrets)}; the template lists none"
    return None


def toolbox_unavailable(ctx: PodContext, target: Target, feature: FeatureName) -> Decision | None:
    """The skip decision when the toolbox cannot be delivered to this container, or None. A
    mount at, inside or above one of the toolbox's mounts conflicts: the runtime cannot create
    a mount point inside the read-only toolbox (EROFS), nor mount the same path twice, and a
    mount above ours would hide it or be hidden. (Two features ask for every container of every
    review: the feature's level is looked up only for a skip, the conflicts once per set of
    mounts.)

    A pod in which podmedic's image cannot run (ctx.image_unusable) is skipped here, per feature,
    not at the gate as a pod for another OS is: the network probes need nothing of the image, so
    the pod keeps them."""
    if ctx.image_unusable:
        reason, detail = ctx.image_unusable
        return Decision(feature, target.name, reason, detail, ctx.settings.get(feature, target.name).level)
    if ctx.toolbox_blocked:
        return Decision(feature, target.name, Reason.NAME_CONFLICT, level=ctx.settings.get(feature, target.name).level)
    if ctx.limit_range:
        conflict = limitrange_conflict(ctx)
        if conflict:
            return Decision(feature, target.name, Reason.LIMITRANGE_CONFLICT, conflict,
                            ctx.settings.get(feature, target.name).level)
    taken = _toolbox_taken(target.mount_paths())
    if taken:
        return Decision(feature, target.name, Reason.MOUNT_CONFLICT, taken, ctx.settings.get(feature, target.name).level)
    return None


@lru_cache(maxsize=4096)
def _toolbox_taken(paths: frozenset[str]) -> str:
    """The container's mounts that overlap the toolbox's, sorted and joined, or "". Memoised by
    the set of mount paths (a frozenset keeps its hash): the containers of a template's pods
    recur with the same mounts."""
    return ", ".join(sorted(path for path in paths if toolbox_overlap(path)))


@lru_cache(maxsize=4096)
def toolbox_overlap(path: str) -> str | None:
    """The toolbox mount that `path` is equal to, inside or above, by path components, or None
    (/podmedic-x is not inside /podmedic; /podmedic/ and //podmedic are /podmedic). Memoised:
    two features ask it for every mount of every container, and the same few paths recur."""
    mine = _components(path)
    for ours in sorted(TOOLBOX_MOUNTS):
        theirs = _components(ours)
        if _within(mine, theirs) or _within(theirs, mine):
            return ours
    return None


@lru_cache(maxsize=4096)
def mounted_at(path: str, paths: frozenset[str]) -> bool:
    """Does one of a container's mount `paths` name the normalised `path`, as the runtime sees it?
    The API server compares mountPaths as written, so /var/log/app/ (or //var/log/app) and
    /var/log/app both get through, and the later mount hides the earlier on the node. Memoised by
    the set of mount paths, as _toolbox_taken."""
    return path in paths or any(posixpath.normpath("/" + p.lstrip("/")) == path for p in paths)


def inside(path: str, mount: str) -> bool:
    """Is `path` at or under `mount`, by path components (the API server keeps a container's
    paths as written: /tmp/term/ and //tmp/term are /tmp/term; /tmp/terminal is beside it)?"""
    return _within(_components(path), _components(mount))


def _within(mine: list[str], theirs: list[str]) -> bool:
    return mine[:len(theirs)] == theirs


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def pod_env() -> list[dict[str, Any]]:
    """Downward-API env vars that name this pod incarnation (for subPathExpr and $(VAR) args)."""
    return [{"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": POD_UID_ENV, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}}]


def pod_dir(namespace: str) -> str:
    """The kubelet's /var/log/pods naming, resolved by the kubelet: controller-made pods have
    no name and no uid at admission time."""
    return f"{namespace}_$({POD_NAME_ENV})_$({POD_UID_ENV})"


def _toolbox_init(config: GlobalConfig) -> dict[str, Any]:
    cfg = config.toolbox
    return {"name": TOOLBOX_INIT, "image": cfg.image, "imagePullPolicy": cfg.image_pull_policy,
            "command": ["podmedic", "toolbox", "install", toolbox.TOOLBOX_MOUNT],
            "resources": dict(cfg.resources), "securityContext": TOOLBOX_SECURITY,
            "volumeMounts": [{"name": TOOLBOX_VOLUME, "mountPath": toolbox.TOOLBOX_MOUNT}]}


def log_backend(ctx: PodContext) -> Literal["hostPath", "pvc"]:
    """The configured backend; `auto` is the claim where the namespace's enforced Pod Security
    level forbids hostPath (the pod would be refused), hostPath elsewhere."""
    backend = ctx.config.logs.backend
    if backend == "auto":
        return "pvc" if enforced_level(ctx) in HOSTPATH_FORBIDDEN else "hostPath"
    return backend


def enforced_level(ctx: PodContext) -> str:
    return ctx.namespace_labels.get(PSA_ENFORCE, "privileged")


def _logs_volume(config: GlobalConfig, namespace: str, backend: str) -> dict[str, Any]:
    if backend == "pvc":
        return {"name": LOGS_VOLUME, "persistentVolumeClaim": {"claimName": config.logs.claim_name}}
    return {"name": LOGS_VOLUME, "hostPath": {"path": config.logs.root_for(namespace), "type": "DirectoryOrCreate"}}


def _logdir_init(config: GlobalConfig, namespace: str, backend: str) -> dict[str, Any]:
    """The log directory's init container without the names of the containers it prepares
    (finish() appends them to `command`)."""
    cfg = config.toolbox
    return {"name": LOGDIR_INIT, "image": cfg.image, "imagePullPolicy": cfg.image_pull_policy,
            "command": ["podmedic", "logdir", "--root", LOGS_ROOT_MOUNT, "--pod-dir", pod_dir(namespace)],
            "env": pod_env(), "resources": dict(cfg.resources),
            "securityContext": LOGDIR_PVC_SECURITY if backend == "pvc" else LOGDIR_SECURITY,
            "volumeMounts": [{"name": LOGS_VOLUME, "mountPath": LOGS_ROOT_MOUNT}]}


class _Pieces(NamedTuple):
    toolbox_init: dict[str, Any]
    logs_volume: dict[str, Any]
    logdir_init: dict[str, Any]  # `command` lacks the containers' names


# What finish() adds that depends on the configuration and the namespace alone, built once and
# shared by the patches of every review (rebuilding these dicts was about 2 % of a typical pod's
# review), like the constant mounts and volumes below. Sharing is safe because nothing changes an
# operation's value once emitted: the engine's only caller (admission.plan) encodes the operations,
# verification applies objects decoded from those bytes, and the marker records names only.
# Bounded (namespaces come and go).
_PIECES: IdentityCache[tuple[int, str, str], _Pieces] = IdentityCache(1024)
_TOOLBOX_MOUNT = {"name": TOOLBOX_VOLUME, "mountPath": toolbox.TOOLBOX_MOUNT, "readOnly": True}
_STATE_MOUNT = {"name": STATE_VOLUME, "mountPath": STATE_MOUNT}
_TOOLBOX_VOLUME = {"name": TOOLBOX_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}}
_STATE_VOLUME = {"name": STATE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}


def _pieces(config: GlobalConfig, namespace: str, backend: str) -> _Pieces:
    key = (id(config), namespace, backend)
    pieces = _PIECES.get(key, config)
    if pieces is None:
        pieces = _PIECES.put(key, _Pieces(_toolbox_init(config), _logs_volume(config, namespace, backend),
                                          _logdir_init(config, namespace, backend)), config)
    return pieces


def finish(ctx: PodContext, patch: PatchBuilder) -> None:
    """Add the shared pieces for the containers that features recorded."""
    added: dict[str, list[str]] = {"volumes": [], "initContainers": []}
    toolbox_users = {t.path: t for f in TOOLBOX_FEATURES for t in ctx.users.get(f, [])}
    log_users = [t.name for t in ctx.users.get(FeatureName.LOGS, [])]
    backend = log_backend(ctx) if log_users else "hostPath"
    pieces = _pieces(ctx.config, ctx.namespace, backend)
    fit = _init_fit(ctx) if toolbox_users or log_users else None
    if toolbox_users:
        for target in toolbox_users.values():
            patch.append(target.path + ("volumeMounts",), _TOOLBOX_MOUNT, target.spec)
            patch.append(target.path + ("volumeMounts",), _STATE_MOUNT, target.spec)
        patch.append(("spec", "volumes"), _TOOLBOX_VOLUME)
        patch.append(("spec", "volumes"), _STATE_VOLUME)
        patch.prepend(("spec", "initContainers"), fit(pieces.toolbox_init) if fit else pieces.toolbox_init)
        added["volumes"] += [TOOLBOX_VOLUME, STATE_VOLUME]
        added["initContainers"].append(TOOLBOX_INIT)
    local = list(added["volumes"])
    if log_users:
        logdir = pieces.logdir_init
        patch.append(("spec", "volumes"), pieces.logs_volume)
        logdir = {**logdir, "command": [*logdir["command"], *log_users]}
        patch.prepend(("spec", "initContainers"), fit(logdir) if fit else logdir)
        added["volumes"].append(LOGS_VOLUME)
        added["initContainers"].append(LOGDIR_INIT)
        local += [LOGS_VOLUME] if backend == "hostPath" else []
    if added["volumes"]:  # with an init container each (the toolbox's two, the log directory's one)
        record: dict[str, Any] = dict(added)
        original = _list_local_volumes(ctx.pod, local, patch)
        if original is not _UNCHANGED:
            record["annotations"] = {SAFE_TO_EVICT: original}
        secrets = _add_pull_secrets(ctx, patch) if ctx.config.toolbox.image_pull_secrets else None
        if secrets:
            record["imagePullSecrets"] = secrets
        ctx.status["pod"] = record


class _InitResources(NamedTuple):
    fit: Callable[[dict[str, Any]], dict[str, Any]] | None  # how the init containers change; None: as configured
    conflict: str | None  # why no resources fit the namespace's LimitRange; None: they fit


def limitrange_conflict(ctx: PodContext) -> str | None:
    """Why podmedic's init containers fit no requests and limits that the namespace's LimitRange
    allows (webhook.engine.limitrange), or None. The features that need them skip with it: the
    API server would refuse the pod. (The usual namespace has no LimitRange: one attribute read.)"""
    return _init_resources(ctx).conflict if ctx.limit_range else None


def _init_fit(ctx: PodContext) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """How podmedic's init containers change in this pod, or None: as configured."""
    if ctx.limit_range:
        return _init_resources(ctx).fit
    return _fitting(_qos_resources(ctx.pod.get("spec") or {}, ctx.config))


def _init_resources(ctx: PodContext) -> _InitResources:
    """The QoS-keeping resources (_qos_resources) fitted into the namespace's LimitRange, worked
    out once per review (only asked where it has one)."""
    return ctx.once("init-resources", lambda: _fitted(ctx.pod.get("spec") or {}, ctx.config, ctx.limit_range))


def _fitted(spec: dict[str, Any], config: GlobalConfig, constraints: tuple[Constraint, ...]) -> _InitResources:
    """The QoS-keeping resources fitted into `constraints`, no lower than the configured requests
    (what the toolbox needs). Resources that already fit are left as they were (the same patch).
    In a pod with pod-level resources, what LimitRanger would fill in is set instead, within the
    pod's budget (_pod_budget). A pod's quantity that cannot be read (ValueError): the API server
    refuses that pod anyway, the features skip."""
    qos = _qos_resources(spec, config)
    try:
        budget = _pod_budget(spec, constraints) if qos == {} else ()
        if budget:
            qos = _pinned(config, budget)
        base = {kind: dict(values) for kind, values in (config.toolbox.resources if qos is None else qos).items() if values}
        fitted = limitrange.fit(base, constraints + budget, config.toolbox.resources.get("requests") or {})
    except (limitrange.NoFit, ValueError) as exc:
        return _InitResources(None, str(exc))
    return _InitResources(_fitting(qos if fitted == base else fitted), None)


# A LimitRange's constraints that make LimitRanger fill in what a container leaves out: `default`
# (a limit), `defaultRequest` (a request), and `max` (the API server defaults `default` to it and
# `defaultRequest` to that). A `min` needs no entry: fit() sets the request it asks for.
_DEFAULTING = frozenset(("default", "defaultRequest", "max"))


def _pod_budget(spec: dict[str, Any], constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    """The pod's budget, as `max` constraints (limitrange.POD_BUDGET), on each resource of its
    spec.resources that the namespace's LimitRanges would fill into podmedic's init containers.
    Why: in a pod with pod-level resources ours carry none (_qos_resources), LimitRanger fills in
    the LimitRange's defaults after the webhooks, and the API server refuses a pod whose requests
    are below its containers' aggregate ("must be greater than or equal to aggregate container
    requests"), which counts init containers by the largest (ours run first, alone). So these
    resources are set, a request and a limit (LimitRanger then adds neither), no higher than the
    pod's request -- its limit where it sets none: the API server then defaults the pod's request
    to the aggregate, ours included. (The API server checks no init container's limit against
    the pod's; the limit is kept within the request all the same, the simpler rule.)"""
    pod = spec["resources"] if isinstance(spec.get("resources"), dict) else {}
    requests, limits = (pod[k] if isinstance(pod.get(k), dict) else {} for k in ("requests", "limits"))
    defaulted = sorted({c.resource for c in constraints if c.kind in _DEFAULTING})
    return tuple(Constraint("max", name, quantity(raw), str(raw), limitrange.POD_BUDGET)
                 for name in defaulted for raw in (requests.get(name, limits.get(name)),) if raw is not None)


def _pinned(config: GlobalConfig, budget: tuple[Constraint, ...]) -> dict[str, dict[str, Any]]:
    """toolbox.resources' request and limit of each resource of the `budget`, both set: a request
    left out is the limit (as the API server defaults it), a limit left out the request. Raises
    NoFit for a resource toolbox.resources does not set (there is nothing to set it to)."""
    requests, limits = (config.toolbox.resources.get(k) or {} for k in ("requests", "limits"))
    pinned: dict[str, dict[str, Any]] = {"requests": {}, "limits": {}}
    for c in budget:
        request = requests.get(c.resource, limits.get(c.resource))
        if request is None:
            raise limitrange.NoFit(f"a LimitRange fills in {c.resource} for podmedic's init containers, and "
                                   f"toolbox.resources sets no {c.resource} to keep it within the pod's")
        pinned["requests"][c.resource], pinned["limits"][c.resource] = request, limits.get(c.resource, request)
    return pinned


def _fitting(resources: Mapping[str, Any] | None) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """How an init container changes to get `resources`: None (as configured) stays None, none at
    all drops its `resources`."""
    if resources is None:
        return None
    if not resources:
        return _unresourced
    return lambda init: {**init, "resources": resources}


def _qos_resources(spec: dict[str, Any], config: GlobalConfig) -> Mapping[str, Any] | None:
    """The resources podmedic's init containers need so that the pod is admitted and keeps its
    QoS class, or None: as configured (toolbox.resources). The API server computes
    status.qosClass over the init containers too, ours included:
    - pod-level resources (spec.resources): none of their own ({}). The API server refuses a pod
      whose requests do not cover its containers' aggregate requests, ours included, so ours share
      the pod's budget; the class is then computed from spec.resources alone and holds. (Where a
      LimitRange would fill its defaults in, _fitted sets those resources within the pod's
      budget instead: _pod_budget.)
    - every container Guaranteed (cpu and memory requests equal to limits): requests equal to the
      (charge-capped) limits, so the pod stays Guaranteed. The configured requests, below the
      limits, would make it Burstable: evicted earlier, and no exclusive CPUs under the kubelet's
      static CPU manager. (Configured limits without both cpu and memory cannot keep the class.)
    - BestEffort (_best_effort): none of their own ({}), so the pod stays BestEffort.
    Every other pod (Burstable) gets the configured requests and limits. Both, in a Guaranteed or
    Burstable pod, no higher than the app's own charge (_within_charge)."""
    if spec.get("resources") or _best_effort(spec):
        return {}
    configured = config.toolbox.resources
    resources = _within_charge(spec, configured)
    if not (_guaranteed(spec) and _requests_its_limits({"limits": resources.get("limits")})):
        return None if resources is configured else resources
    return {**resources, "requests": dict(resources["limits"])}


_NANO = 10**9
_CHARGED = ("cpu", "memory")


def _within_charge(spec: dict[str, Any], configured: Mapping[str, Any]) -> Mapping[str, Any]:
    """`configured` with each cpu and memory request and limit lowered to what the app's
    containers ask in all (_app_totals), a limit to no less than _LIMIT_FLOORS; `configured`
    itself where nothing is lowered. Why: a ResourceQuota on requests.* or limits.* charges a pod
    the larger of its containers' sum (native sidecars included) and its largest init container
    (k8s.io/component-helpers/resource: PodRequests, PodLimits; ours run first, so no sidecar's
    share adds to theirs), and the configured values made a small app cost the toolbox's (50m
    / 32Mi charged 100m / 64Mi: half the pods a tight quota was sized for refused). Where the
    floor is above the app's total, the charge still rises to it. A request stays within its
    limit (_requests_within)."""
    ceilings = _CEILINGS.get(id(configured), configured)
    if ceilings is None:
        ceilings = _CEILINGS.put(id(configured), _ceilings(configured), configured)
    totals = _app_totals(spec, ceilings)
    lowered: dict[str, dict[str, Any]] = {}
    final = dict(ceilings)
    for (kind, name), total in totals.items():
        least = max(total, _LIMIT_FLOORS.get(name, total)) if kind == "limits" else total
        if least < ceilings[kind, name]:
            final[kind, name] = least
            lowered.setdefault(kind, dict(configured[kind]))[name] = _spelled(least, name)
    if "limits" in lowered:
        _requests_within(final, lowered, configured)
    return {**configured, **lowered} if lowered else configured


def _requests_within(final: dict[tuple[str, str], int], lowered: dict[str, dict[str, Any]],
                     configured: Mapping[str, Any]) -> None:
    """A request no higher than its lowered limit, in `lowered`: the API server refuses a
    container whose request exceeds its limit. A lowered request is the app's total, within its
    limits' total, but a request that was not lowered (the app's requests sum to zero, or one of
    them is left out) stays as configured, and an admin's toolbox.resources may request more
    than the app's limits (requests 100m / 64Mi under an app limited to 60m / 48Mi)."""
    for name in _CHARGED:
        request, limit = final.get(("requests", name)), final.get(("limits", name))
        if request is not None and limit is not None and request > limit:
            lowered.setdefault("requests", dict(configured["requests"]))[name] = lowered["limits"][name]


# toolbox.resources' cpu and memory in nanos, per configuration (the same in every review).
_CEILINGS: IdentityCache[int, dict[tuple[str, str], int]] = IdentityCache(16)


def _ceilings(configured: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """The configured cpu and memory requests and limits in nanos, by (kind, resource)."""
    return {(kind, name): _nanos(values[name]) for kind in ("requests", "limits")
            for values in (configured.get(kind) or {},) for name in _CHARGED if name in values}


def _app_totals(spec: dict[str, Any], ceilings: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Per (kind, resource) of `ceilings` (in nanos, _nanos), the pod's containers' and native
    sidecars' positive sum of requests or limits, where every one of them sets it to a readable
    quantity (a request left out counts as its limit, as the API server defaults it) and the sum
    is below the ceiling. (Counts the room left below each ceiling: most apps' first container
    fills it, and the review is done with no sum.)"""
    room = dict(ceilings)
    for c in _charged_containers(spec):
        resources = c.get("resources") if isinstance(c, dict) else None
        if not isinstance(resources, dict):
            return {}
        requests, limits = resources.get("requests"), resources.get("limits")
        requests = requests if isinstance(requests, dict) else {}
        limits = limits if isinstance(limits, dict) else {}
        for key in tuple(room):
            kind, name = key
            amount = _read(limits.get(name) if kind == "limits" else requests.get(name, limits.get(name)))
            if amount is None or amount >= room[key]:
                del room[key]
            elif amount:
                room[key] -= amount
        if not room:
            return {}
    return {key: ceilings[key] - left for key, left in room.items() if left < ceilings[key]}


def _charged_containers(spec: dict[str, Any]) -> list[Any]:
    """The containers whose requests and limits a quota adds up: the app's, and the native
    sidecars (init containers with restartPolicy Always), which run beside them."""
    containers = spec.get("containers") or []
    inits = spec.get("initContainers")
    if not inits:
        return containers
    return [*containers, *(c for c in inits if isinstance(c, dict) and c.get("restartPolicy") == "Always")]


def _read(raw: Any) -> int | None:
    """_nanos(raw), or None for what is none (left out, not a string or number, unreadable)."""
    if not isinstance(raw, (str, int, float)):
        return None
    try:
        return _nanos(raw)
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _nanos(raw: str | int | float) -> int:
    """quantity(raw) in billionths, rounded up (the API server keeps no finer quantity): an int,
    compared and added ten times faster than a Fraction. Memoised: the same few quantities recur
    in every review, and parsing one was most of a typical review's cost of the class check (4 %).
    Raises ValueError, as quantity."""
    return math.ceil(quantity(raw) * _NANO)


# What _within_charge never lowers a limit below. Memory is incompressible: under less podmedic's
# init containers are OOM-killed (limitrange.MEMORY_LIMIT_FLOOR). CPU only throttles, but each init
# container is a Python interpreter: on the real node (tests/node/test_init_resources.py) an app
# at cpu 10m started about 50 s after the same pod without podmedic (20 s per init container),
# at 20m 25 s, at 50m 10 s, at the configured 100m 5 s; since the image's standard library is
# precompiled (93b54bd), about 2 s at 50m. Below 50m a small app's limits.cpu charge rises to it
# (still half the configured 100m).
CPU_LIMIT_FLOOR = "50m"
_LIMIT_FLOORS = {"memory": _nanos(limitrange.MEMORY_LIMIT_FLOOR), "cpu": _nanos(CPU_LIMIT_FLOOR)}


def _spelled(nanos: int, resource: str) -> str:
    """A quantity in nanos as the API writes one: whole units (memory in Gi, Mi or Ki where
    whole), else millis, else nanos."""
    whole, rest = divmod(nanos, _NANO)
    if not rest:
        units = (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)) if resource == "memory" else ()
        return next((f"{whole // unit}{suffix}" for suffix, unit in units if whole % unit == 0), str(whole))
    return f"{nanos // 10**6}m" if nanos % 10**6 == 0 else f"{nanos}n"


def _best_effort(spec: dict[str, Any]) -> bool:
    """Is the pod BestEffort, as the API server computes the class: no container or init container
    requests or limits a positive cpu or memory. It must stay so: a ResourceQuota scoped
    NotBestEffort (`pods: "0"`, or one that tracks requests.cpu and so wants every container it
    covers to set them) does not cover such a pod, and init containers with requests made it
    Burstable, covered, and refused. A LimitRange's defaults reach the app's containers before
    this webhook sees the pod, so such a pod is not BestEffort here. (Loops, as _guaranteed.)"""
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or ():
            resources = c.get("resources") if isinstance(c, dict) else None
            if isinstance(resources, dict) and not _no_cpu_or_memory(resources):
                return False
    return True


def _no_cpu_or_memory(resources: dict[str, Any]) -> bool:
    """Neither requests nor limits hold a positive cpu or memory (zero counts as unset, as in the
    API server's class). A quantity that cannot be read counts as set: the configured requests."""
    for kind in ("requests", "limits"):
        values = resources.get(kind)
        if not isinstance(values, dict):
            continue
        for name in ("cpu", "memory"):
            raw = values.get(name, 0)
            try:
                if not isinstance(raw, (str, int, float)) or _nanos(raw) > 0:
                    return False
            except ValueError:
                return False
    return True


def _unresourced(init: dict[str, Any]) -> dict[str, Any]:
    """`init` without requests or limits of its own: in a pod with pod-level resources, a
    container without them runs within the pod's."""
    return {key: value for key, value in init.items() if key != "resources"}


def _guaranteed(spec: dict[str, Any]) -> bool:
    """Is the pod Guaranteed by its containers, as the API server computes the class: every
    container and init container (not the ephemeral ones) requests its cpu and memory limits.
    (Loops, not generators: asked in every review, and most pods fail at the first container.)"""
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or ():
            resources = c.get("resources") if isinstance(c, dict) else None
            if not isinstance(resources, dict) or not _requests_its_limits(resources):
                return False
    return True


def _requests_its_limits(resources: dict[str, Any]) -> bool:
    """Positive cpu and memory limits, each requested exactly (a request left out is defaulted
    to the limit; "1" is "1000m"). A quantity that cannot be read: not Guaranteed. Read by
    _read, as the class and charge checks read them: memoised, and none parsed twice a review."""
    limits, requests = resources.get("limits"), resources.get("requests") or {}
    if not (isinstance(limits, dict) and "cpu" in limits and "memory" in limits and isinstance(requests, dict)):
        return False
    for name in _CHARGED:
        limit = _read(limits[name])
        if limit is None or limit <= 0 or _read(requests.get(name, limits[name])) != limit:
            return False
    return True


def _add_pull_secrets(ctx: PodContext, patch: PatchBuilder) -> list[str]:
    """Add toolbox.imagePullSecrets that the pod does not list to spec.imagePullSecrets, after
    its own (the ServiceAccount admission plugin has already copied the ServiceAccount's there
    when the pod had none: it runs before the webhooks); returns the names added, for uninject.
    Without them, where toolbox.image needs a registry login, the init containers' image pull
    fails and the pod never starts. A list that is not one (an offline manifest's): left alone;
    an entry or name that is not one (the API server refuses it after admission) names none."""
    spec = ctx.pod.get("spec") or {}
    listed = spec.get("imagePullSecrets")
    if listed is not None and not isinstance(listed, list):
        return []
    have = {name for ref in listed or () if isinstance(ref, dict) and isinstance(name := ref.get("name"), str)}
    missing = [name for name in ctx.config.toolbox.image_pull_secrets if name not in have]
    for name in missing:
        patch.append(("spec", "imagePullSecrets"), {"name": name})
    return missing


_UNCHANGED = object()


def _list_local_volumes(pod: dict[str, Any], names: list[str], patch: PatchBuilder) -> Any:
    """Add `names` to the pod's safe-to-evict-local-volumes list (the pod's own entries kept
    first, as written, none twice); returns the value it had (None: absent) for uninject, or
    _UNCHANGED when every name was listed already or the value is not a string."""
    current = pod_annotations(pod).get(SAFE_TO_EVICT)
    if current is not None and not isinstance(current, str):
        return _UNCHANGED
    listed = current.split(",") if current else []
    missing = [n for n in names if n not in listed]
    if not missing:
        return _UNCHANGED
    kept = current.rstrip(", ") if current else ""
    patch.set(("metadata", "annotations", SAFE_TO_EVICT), ",".join([kept, *missing] if kept else missing))
    return current
