"""The per-pod log directory: `<root>/<namespace>_<pod name>_<pod uid>/<container>` on the
admin's CephFS mount, mounted at the container's log path.

Tenants never choose the host path: the root comes only from the global configuration; an
annotation can only switch the feature and pick the in-container mount path. The directory
follows the kubelet's /var/log/pods naming per pod incarnation and is resolved by the kubelet
(subPathExpr over downward-API env vars), since controller-made pods have no name or uid yet.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook import delivery
from webhook.reasons import Reason
from webhook.report import Decision

if TYPE_CHECKING:
    from webhook.engine import PodContext, Target
    from webhook.patch import PatchBuilder

FEATURE = "logs"
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
HOSTPATH_FORBIDDEN = ("baseline", "restricted")


def mutate(ctx: "PodContext", target: "Target", patch: "PatchBuilder") -> Decision:
    name = target.name
    level = ctx.settings.get(FEATURE, name).level
    enforced = ctx.namespace_labels.get(PSA_ENFORCE, "privileged")
    if enforced in HOSTPATH_FORBIDDEN:
        return Decision(FEATURE, name, Reason.PSA_FORBIDS_HOSTPATH, f"enforce={enforced}", level)
    if ctx.toolbox_blocked:
        return Decision(FEATURE, name, Reason.NAME_CONFLICT, level=level)
    path = ctx.settings.value("log-path", name)
    if path in delivery.mount_paths(target):
        return Decision(FEATURE, name, Reason.MOUNT_CONFLICT, path, level)
    env = {e.get("name") for e in target.spec.get("env") or [] if isinstance(e, dict)}
    if env & {delivery.POD_NAME_ENV, delivery.POD_UID_ENV}:
        return Decision(FEATURE, name, Reason.ENV_CONFLICT, f"{delivery.POD_NAME_ENV}/{delivery.POD_UID_ENV}", level)
    for var in delivery.pod_env():
        patch.append(target.path + ("env",), var)
    patch.append(target.path + ("volumeMounts",), {
        "name": delivery.LOGS_VOLUME, "mountPath": path,
        "subPathExpr": f"{delivery.pod_dir(ctx.namespace)}/{name}"})
    ctx.record(target, FEATURE, {"mountPath": path})
    return Decision(FEATURE, name, Reason.INJECTED, path, level)


# ------------------------------------------------------------------ in the pod: `podmedic logdir`

def prepare(root: str | Path, pod_dir: str, containers: list[str]) -> list[Path]:
    """Create each container's directory and make it writable by any UID (sticky, like /tmp),
    so an app running as non-root can write its logs. Runs in the init container as root."""
    made = []
    base = Path(root) / pod_dir
    base.mkdir(mode=0o755, exist_ok=True)
    for container in containers:
        path = base / container
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o1777)
        made.append(path)
    return made


def register(sub: Any) -> None:
    p = sub.add_parser("logdir", help="(init container) prepare a pod's log directories",
                       description="Create <root>/<pod-dir>/<container> for each container, writable by any UID.")
    p.add_argument("--root", required=True, help="where the log volume's root is mounted")
    p.add_argument("--pod-dir", required=True, help="<namespace>_<pod name>_<pod uid>")
    p.add_argument("containers", nargs="+", help="container names")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    for name in [args.pod_dir, *args.containers]:
        if "/" in name or name in ("", ".", ".."):
            print(f"podmedic logdir: invalid directory name {name!r}")
            return 1
    for path in prepare(args.root, args.pod_dir, args.containers):
        print(f"podmedic logdir: {path} ready")
    return 0
