"""The per-pod log directory: `<root>/<namespace>_<pod name>_<pod uid>/<container>` on the
admin's CephFS mount, mounted at the container's log path.

Tenants never choose the host path: the root comes only from the global configuration; an
annotation can only switch the feature and pick the in-container mount path. The directory
follows the kubelet's /var/log/pods naming per pod incarnation and is resolved by the kubelet
(subPathExpr over downward-API env vars), since controller-made pods have no name or uid yet.
"""

from __future__ import annotations


from webhook.engine import pod_level
from webhook.engine.context import PodContext, Target
from webhook.engine.decisions import Decision, Reason
from webhook.engine.keys import FeatureName
from webhook.engine.patch import PatchBuilder


FEATURE = FeatureName.LOGS
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
HOSTPATH_FORBIDDEN = ("baseline", "restricted")


def mutate(ctx: PodContext, target: Target, patch: PatchBuilder) -> Decision:
    name = target.name
    level = ctx.settings.get(FEATURE, name).level
    enforced = ctx.namespace_labels.get(PSA_ENFORCE, "privileged")
    if enforced in HOSTPATH_FORBIDDEN:
        return Decision(FEATURE, name, Reason.PSA_FORBIDS_HOSTPATH, f"enforce={enforced}", level)
    if ctx.toolbox_blocked:
        return Decision(FEATURE, name, Reason.NAME_CONFLICT, level=level)
    path = ctx.settings.value("log-path", name)
    if path in pod_level.mount_paths(target):
        return Decision(FEATURE, name, Reason.MOUNT_CONFLICT, path, level)
    env = {e.get("name") for e in target.spec.get("env") or [] if isinstance(e, dict)}
    if env & {pod_level.POD_NAME_ENV, pod_level.POD_UID_ENV}:
        return Decision(FEATURE, name, Reason.ENV_CONFLICT, f"{pod_level.POD_NAME_ENV}/{pod_level.POD_UID_ENV}", level)
    for var in pod_level.pod_env():
        patch.append(target.path + ("env",), var)
    patch.append(target.path + ("volumeMounts",), {
        "name": pod_level.LOGS_VOLUME, "mountPath": path,
        "subPathExpr": f"{pod_level.pod_dir(ctx.namespace)}/{name}"})
    ctx.record(target, FEATURE, {"mountPath": path})
    return Decision(FEATURE, name, Reason.INJECTED, path, level)
