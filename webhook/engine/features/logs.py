"""The per-pod log directory: `<root>/<namespace>_<pod name>_<pod uid>/<container>` on the
admin's CephFS -- a hostPath root mounted on every node, or the namespace's claim (logs.backend)
-- mounted at the container's log path.

Tenants never choose the host path: the root comes only from the global configuration; an
annotation can only switch the feature and pick the in-container mount path. The directory
follows the kubelet's /var/log/pods naming per pod incarnation and is resolved by the kubelet
(subPathExpr over downward-API env vars), since controller-made pods have no name or uid yet.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

from webhook.engine import init_resources, pod_level
from webhook.engine.context import PodContext, Target
from webhook.engine.decisions import INJECTED, Decision, Reason
from webhook.engine.keys import FeatureName
from webhook.engine.patch import PatchBuilder
from webhook.engine.settings import InvalidSetting


FEATURE = FeatureName.LOGS
BOUND = "Bound"
NAME_MAX = 255  # bytes of one directory entry (Linux filesystems: ext4, tmpfs, CephFS)
UID_LENGTH = 36  # a pod UID, e.g. 0b0c7a4e-1111-4222-8333-444455556666
# The same two env vars in every container: built once, not per container and review. Shared
# by the patch operations of every pod, which is safe as nothing changes an operation's value
# once added (the patch is encoded to bytes, and verification decodes its own copy).
_POD_ENV = tuple(pod_level.pod_env())
# Unset, or the API server's default /dev/termination-log, which no log path can be at or under
# (parse_mount_path refuses /dev): the usual container needs no path comparison.
_NO_TERMINATION_CONFLICT = (None, "", "/dev/termination-log")
# The kubelet makes the mount points of the pod's other volumes inside these (read-only) volumes
# itself (nested mount points), at their root; in an OCI image's read-only volume nobody can.
_NESTED_MOUNT_POINTS = frozenset(("configMap", "secret", "downwardAPI", "projected"))
_ALWAYS_READ_ONLY = "image"


def _unavailable(ctx: PodContext) -> tuple[Reason, str] | None:
    """Why the pod's log directory cannot be delivered, or None: the init container that
    prepares it (podmedic's image) cannot run in the pod (pod_level.image_unusable), or fits not
    in the namespace's LimitRange, or its volume cannot be used."""
    if ctx.image_unusable:
        return ctx.image_unusable
    unusable = _volume_unusable(ctx)
    if unusable is None and ctx.limit_range:
        conflict = init_resources.limitrange_conflict(ctx)
        return (Reason.LIMITRANGE_CONFLICT, conflict) if conflict else None
    return unusable


def _volume_unusable(ctx: PodContext) -> tuple[Reason, str] | None:
    """Why the pod's log volume cannot be used, or None: a pod directory name over NAME_MAX (no
    one can create it; the kubelet's own /var/log/pods entry has the same name, so such a pod
    fails at sandbox creation anyway, and the skip keeps podmedic from being a second cause; a
    generated name has at most 63 bytes and fits, so only a long explicit name can); hostPath
    where Pod Security forbids it (the pod would be refused); a claim that does not exist or is
    not Bound (the pod would wait in ContainerCreating for ever)."""
    name = (ctx.pod.get("metadata") or {}).get("name")
    length = len(ctx.namespace) + (len(name) if isinstance(name, str) else 0) + UID_LENGTH + 2
    if length > NAME_MAX:
        return Reason.LOG_DIR_NAME_TOO_LONG, f"{length} bytes"
    if pod_level.log_backend(ctx) == "hostPath":
        enforced = pod_level.enforced_level(ctx)
        return (Reason.PSA_FORBIDS_HOSTPATH, f"enforce={enforced}") if enforced in pod_level.HOSTPATH_FORBIDDEN else None
    claim = ctx.config.logs.claim_name
    if ctx.log_claim is None:
        return Reason.LOGS_PVC_MISSING, claim
    return (Reason.LOGS_PVC_UNBOUND, f"{claim}: {ctx.log_claim}") if ctx.log_claim != BOUND else None


def _read_only(ctx: PodContext, target: Target, deepest: tuple[str, ...]) -> str | None:
    """The container's read-only mount among the `deepest` above the log path (its spellings of
    one path), named with what makes it read-only, or None. The runtime creates the log
    directory's mount point inside it and cannot: the container fails at creation
    (RunContainerError, mkdir: read-only file system; measured on a real node with `readOnly:
    true` and with an image volume). Read-only: `readOnly: true` on the mount or on the volume's
    source (a claim, a CSI volume), an image volume, or a subPath (subPathExpr) of the kubelet's
    configMap, secret, downwardAPI and projected volumes: the kubelet makes the other mounts'
    mount points in those itself (measured), but at the volume's root, not in the subPath the
    container sees (kubelet volume/util/nested_volumes.go). A writable volume only gains an
    empty directory. The same path mounted twice (spelled twice, which the API server admits):
    the later in the runtime's order hides the earlier, and that order among equal paths is
    the runtime's sort, not a promise of the spec's order for every spelling (a relative one),
    so conservatively any read-only one among them blocks: a needless skip costs the log
    directory, a wrong injection the pod."""
    volumes = ctx.once("logs-volumes", lambda: {v.get("name"): v for v in ctx.pod["spec"].get("volumes") or ()
                                                if isinstance(v, dict)})  # once per pod, not per container
    for mount in target.spec.get("volumeMounts") or ():
        if isinstance(mount, dict) and mount.get("mountPath") in deepest:
            why = _why_read_only(mount, volumes.get(mount.get("name")) or {})
            if why:
                return f"{mount['mountPath']}: {why}"
    return None


def _why_read_only(mount: dict[str, Any], volume: dict[str, Any]) -> str | None:
    """What makes `mount` of `volume` read-only where the runtime would create a mount point, or
    None (_read_only)."""
    name = mount.get("name")
    nested = next((kind for kind in volume if kind in _NESTED_MOUNT_POINTS), None)
    if nested:  # read-only whatever the mount says
        if mount.get("subPath") or mount.get("subPathExpr"):
            return f"{nested} volume {name} by subPath (the kubelet makes the mount point at the volume's root)"
        # The kubelet compares the mountPath cleaned but not rooted (nested_volumes.go): written
        # relative, it never matches the log path, and no mount point is made
        relative = not str(mount.get("mountPath", "")).startswith("/")
        return f"{nested} volume {name} by a relative path (the kubelet makes no mount point in it)" if relative else None
    if mount.get("readOnly") is True:
        return f"readOnly on the mount (volume {name})"
    if _ALWAYS_READ_ONLY in volume:
        return f"{_ALWAYS_READ_ONLY} volume {name} (always read-only)"
    kind = next((kind for kind, source in volume.items() if isinstance(source, dict) and source.get("readOnly") is True),
                None)
    return f"readOnly on volume {name}'s {kind}" if kind else None


def mutate(ctx: PodContext, target: Target, patch: PatchBuilder) -> Decision:
    name = target.name
    level = ctx.settings.get(FEATURE, name).level
    unavailable = ctx.once("logs-unavailable", lambda: _unavailable(ctx))  # the pod's, asked per container
    if unavailable:
        return Decision(FEATURE, name, *unavailable, level=level)
    if ctx.toolbox_blocked:
        return Decision(FEATURE, name, Reason.NAME_CONFLICT, level=level)
    path = ctx.settings.value("log-path", name)
    inside = pod_level.toolbox_overlap(path)
    if inside:  # a mount point in the read-only toolbox fails at container creation (EROFS)
        setting = ctx.settings.get("log-path", name)
        raise InvalidSetting(setting.annotation, setting.raw, f"podmedic mounts its own volume at {inside}",
                             setting.level)
    at, deepest = pod_level.mounts_over(path, target.mount_paths())
    if at:
        return Decision(FEATURE, name, Reason.MOUNT_CONFLICT, path, level)
    read_only = deepest and _read_only(ctx, target, deepest)  # the usual container has none above
    if read_only:
        return Decision(FEATURE, name, Reason.READ_ONLY_MOUNT, read_only, level)
    term = target.spec.get("terminationMessagePath")  # the kubelet mounts a file there: "not a directory"
    if term not in _NO_TERMINATION_CONFLICT and isinstance(term, str) and pod_level.inside(path, term):
        return Decision(FEATURE, name, Reason.MOUNT_CONFLICT, f"terminationMessagePath {term}", level)
    # env is a list of maps (podshape): its names collected in C
    if not pod_level.POD_ENV_NAMES.isdisjoint(map(dict.get, target.spec.get("env") or (), repeat("name"))):
        return Decision(FEATURE, name, Reason.ENV_CONFLICT, f"{pod_level.POD_NAME_ENV}/{pod_level.POD_UID_ENV}", level)
    env = target.path + ("env",)
    for var in _POD_ENV:
        patch.append(env, var, target.spec)
    patch.append(target.path + ("volumeMounts",), {
        "name": pod_level.LOGS_VOLUME, "mountPath": path,
        "subPathExpr": f"{pod_level.pod_dir(ctx.namespace)}/{name}"}, target.spec)
    ctx.record(target, FEATURE, {"mountPath": path})
    return Decision(FEATURE, name, INJECTED, path, level)
