"""Pod-level additions that features share: the toolbox init container and volumes, and the
log directory's volume (hostPath or the namespace's claim) and its preparing init container,
with the pull secrets of their image (toolbox.imagePullSecrets).

Features only touch their own container; after all of them ran, `finish()` adds what the pod
needs exactly once (never per container, never twice), placed first among init containers so
that native sidecars and the app find the toolbox installed. What those init containers request
and limit is init_resources' concern.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from webhook.engine import init_resources, placement
from webhook.engine.config import GlobalConfig
from webhook.engine.context import PodContext, Target, pod_annotations
from webhook.engine.decisions import Decision, Reason
from webhook.engine.keyed import IdentityCache
from webhook.engine.keys import FeatureName
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
# What the toolbox volume may hold: the installed toolbox takes about 3.4 MB of it (busybox, tini,
# sigreset, the scripts; measured on a real node). On the node's disk, so the kubelet counts it in
# the pod's local ephemeral storage (ephemeral_storage_short).
TOOLBOX_SIZE_LIMIT = "64Mi"
_TOOLBOX_BYTES = quantity(TOOLBOX_SIZE_LIMIT)
EPHEMERAL_STORAGE = "ephemeral-storage"
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


def copied_parts(pod: dict[str, Any]) -> str:
    """Which of podmedic's own parts a pod without its marker carries (the decision's detail), or
    "": such a pod is a copy of an injected one, and is not injected again.

    `kubectl debug --copy-to` copies an injected pod's spec -- podmedic's init containers,
    volumes, mounts, env and wrapped commands -- but drops its annotations, the marker with them,
    and its probes, so that the kubelet leaves the copy's debug shell or broken app alone.
    Injected again, the copy got fresh probes on the app's port: a shell that serves nothing
    never became Ready and was killed at the startup bound. Only podmedic names its init
    containers so, mounts its toolbox volume at the toolbox's path, mounts its log volume at the
    kubelet's pod directory naming over its env (subPathExpr): a user's volume that merely bears
    one of our names (names_taken) is no copy, and its pod keeps what needs no toolbox. The
    PODMEDIC_POD_* env is no sign: podmedic only adds it with that mount, and a user's pod may
    set the same downward-API env itself. The mounts count because `--keep-init-containers=false`
    drops the init containers, and an injection without the toolbox (forensics and supervisor
    off) has no toolbox mount. Called only when names_taken: the usual pod pays nothing."""
    spec = pod.get("spec") or {}
    for init in spec.get("initContainers") or []:
        if isinstance(init, dict) and init.get("name") in OUR_CONTAINERS:
            return f"init container {init['name']}"
    for container in spec.get("containers") or []:
        part = _copied_part(container) if isinstance(container, dict) else ""
        if part:
            return f"container {container.get('name')} {part}"
    return ""


_POD_DIR_VARS = f"_$({POD_NAME_ENV})_$({POD_UID_ENV})/"  # in pod_dir(): our subPathExpr, whatever the namespace


def _copied_part(container: dict[str, Any]) -> str:
    """The part of podmedic's that one container of a pod without the marker carries, or ""
    (copied_parts): its toolbox mount, then its log mount."""
    mounts = [m for m in container.get("volumeMounts") or [] if isinstance(m, dict)]
    for mount in mounts:
        if mount.get("name") == TOOLBOX_VOLUME and mount.get("mountPath") == toolbox.TOOLBOX_MOUNT:
            return f"mounts {TOOLBOX_VOLUME} at {toolbox.TOOLBOX_MOUNT}"
    for mount in mounts:
        expr = mount.get("subPathExpr")
        if mount.get("name") == LOGS_VOLUME and isinstance(expr, str) and _POD_DIR_VARS in expr:
            return f"mounts {LOGS_VOLUME} at podmedic's subPathExpr"
    return ""


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
        conflict = init_resources.limitrange_conflict(ctx)
        if conflict:
            return Decision(feature, target.name, Reason.LIMITRANGE_CONFLICT, conflict,
                            ctx.settings.get(feature, target.name).level)
    if ctx.ephemeral_short:
        return Decision(feature, target.name, Reason.EPHEMERAL_STORAGE_LIMIT, ctx.ephemeral_short,
                        ctx.settings.get(feature, target.name).level)
    taken = _toolbox_taken(target.mount_paths())
    if taken:
        return Decision(feature, target.name, Reason.MOUNT_CONFLICT, taken, ctx.settings.get(feature, target.name).level)
    return None


def ephemeral_storage_short(spec: dict[str, Any], config: GlobalConfig) -> str:
    """The pod's ephemeral-storage limit where it is below the toolbox volume's sizeLimit (the
    decision's detail), else "". The kubelet's eviction manager evicts a pod whose local ephemeral
    storage -- its containers' writable layers and logs and its disk-backed emptyDirs, podmedic's
    toolbox volume among them -- exceeds the pod's limit, which it adds up as the scheduler does
    (component-helpers' PodLimits): the containers' and native sidecars' limits, at least any init
    container's (with the sidecars started before it), plus the pod's overhead. Measured on a real
    node: an app limited to 3Mi, which used 32 KiB, ran without podmedic and was Evicted ("Pod
    ephemeral local storage usage exceeds the total limit of containers 3Mi") about a minute after
    its start with the toolbox. Below the sizeLimit, what the toolbox volume may hold could evict
    the pod by itself, so the features that need it skip. (No container limits ephemeral storage:
    no pod limit, nothing counted; a quantity that cannot be read: the API server refuses the pod.)
    Above it, the toolbox takes its ~3.4 MB of the pod's limit (docs/configuration.md). podmedic's
    own init containers count too: they carry toolbox.resources, whose ephemeral-storage limit
    (copied as configured) makes a limit of the pod's where its containers set none. Once per
    review (the engine keeps it in the context); the usual pod, with no such limit, costs a look
    at each container's limits."""
    own = _own_limit(config.toolbox.resources)
    if own is not None:
        return _short(spec, own)
    for kind in _LIMITED:
        for container in spec.get(kind) or ():
            resources = container.get("resources") if isinstance(container, dict) else None
            if isinstance(resources, dict) and EPHEMERAL_STORAGE in (resources.get("limits") or ()):
                return _short(spec, None)
    return ""


def _own_limit(resources: Mapping[str, Any]) -> Fraction | None:
    """toolbox.resources' ephemeral-storage limit, the one of podmedic's init containers (the
    configuration checked it is a quantity)."""
    return _storage_limit(resources)


_LIMITED = ("containers", "initContainers")


def _short(spec: dict[str, Any], own: Fraction | None) -> str:
    """ephemeral_storage_short() for a pod where some container, or podmedic's own init
    containers (`own`: they run first, with no sidecar started before them), limit ephemeral
    storage."""
    found = own is not None
    total = sidecars = Fraction(0)
    largest_init = own or Fraction(0)
    try:
        for container in spec.get("containers") or ():
            limit = _ephemeral_limit(container)
            if limit is not None:
                found, total = True, total + limit
        for init in spec.get("initContainers") or ():
            limit = _ephemeral_limit(init)
            if limit is not None:
                found = True
            if isinstance(init, dict) and init.get("restartPolicy") == "Always":
                sidecars += limit or 0
                total += limit or 0
                largest_init = max(largest_init, sidecars)
            else:
                largest_init = max(largest_init, (limit or 0) + sidecars)
        if not found:
            return ""
        pod = max(total, largest_init)
        overhead = (spec.get("overhead") or {}).get(EPHEMERAL_STORAGE)
        pod += quantity(overhead) if overhead is not None else 0
    except (ValueError, TypeError, AttributeError):
        return ""
    if pod >= _TOOLBOX_BYTES:
        return ""
    return f"{int(pod)} bytes for the pod, below {TOOLBOX_VOLUME}'s sizeLimit {TOOLBOX_SIZE_LIMIT}"


def _ephemeral_limit(container: Any) -> Fraction | None:
    """A container's ephemeral-storage limit as a number (None: none); ValueError where it is no
    quantity."""
    return _storage_limit(container.get("resources") if isinstance(container, dict) else None)


def _storage_limit(resources: Any) -> Fraction | None:
    """The ephemeral-storage limit of a container's `resources` (None: none)."""
    limits = resources.get("limits") if isinstance(resources, Mapping) else None
    raw = limits.get(EPHEMERAL_STORAGE) if isinstance(limits, Mapping) else None
    return None if raw is None else quantity(raw)


@lru_cache(maxsize=4096)
def _toolbox_taken(paths: frozenset[str]) -> str:
    """The container's mounts that overlap the toolbox's, sorted and joined, or "". Memoised by
    the set of mount paths (a frozenset keeps its hash): the containers of a template's pods
    recur with the same mounts."""
    return ", ".join(sorted(path for path in paths if toolbox_overlap(path)))


@lru_cache(maxsize=4096)
def toolbox_overlap(path: str) -> str | None:
    """The toolbox mount that `path` is equal to, inside or above, as the runtime cleans it
    (clean), or None (/podmedic-x is not inside /podmedic; /podmedic/, //podmedic and
    /x/../podmedic are /podmedic). Memoised: two features ask it for every mount of every
    container, and the same few paths recur."""
    mine = clean(path)
    for ours in sorted(TOOLBOX_MOUNTS):
        if _under(mine, ours) or _under(ours, mine):
            return ours
    return None


@lru_cache(maxsize=4096)
def mounts_over(path: str, paths: frozenset[str]) -> tuple[bool, tuple[str, ...]]:
    """Does one of a container's mount `paths` name the clean `path` once cleaned as the runtime
    cleans it, and which of them (as written, sorted) are the deepest strictly above it? The API
    server compares mountPaths as written, so /var/log/app/, //var/log/app and /var/log/../log/app
    all get through as other paths than /var/log/app, and the later mount hides the earlier on
    the node. The runtime mounts in order of the cleaned destination's depth (containerd sorts
    them so, runc follows), so `path`'s mount point is created inside the deepest mount above it
    alone; several spellings of that one path are returned together. One memoised call per
    container, by the set of mount paths (as _toolbox_taken); the usual container has none above."""
    cleaned = {written: clean(written) for written in paths}
    over = [mount for mount in cleaned.values() if mount != path and _under(path, mount)]
    deepest = max(over, key=len, default=None)  # the ancestors of one path: the longest is the deepest
    return path in cleaned.values(), tuple(sorted(written for written, mount in cleaned.items() if mount == deepest))


def inside(path: str, mount: str) -> bool:
    """Is `path` at or under `mount`, both as the runtime cleans them (the API server keeps a
    container's paths as written: /tmp/term/ and //tmp/term are /tmp/term; /tmp/terminal is
    beside it)?"""
    return _under(clean(path), clean(mount))


def _under(path: str, mount: str) -> bool:
    """Is the clean `path` at or under the clean `mount`, by path components?"""
    return path == mount or path.startswith(mount) and (mount == "/" or path[len(mount)] == "/")


def clean(path: str) -> str:
    """`path` as the container runtime resolves a mount destination: rooted in the container
    (a relative path, which the API server admits, is under /), repeated slashes collapsed (a
    leading // too, which posixpath.normpath keeps), `.` and `..` resolved lexically and never
    above / -- Go's filepath.Clean of a rooted path, which containerd and runc apply. The one
    place that says how two mount paths compare."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


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
_TOOLBOX_VOLUME = {"name": TOOLBOX_VOLUME, "emptyDir": {"sizeLimit": TOOLBOX_SIZE_LIMIT}}
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
    fit = init_resources.init_fit(ctx) if toolbox_users or log_users else None
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
