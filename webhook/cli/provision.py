"""`podmedic logs provision NAMESPACE --root PATH`: the PersistentVolume and the claim of one
namespace's log directory for the pvc log backend, printed for the admin to review and apply.

ceph-csi static provisioning (ceph-csi's docs/static-pvc.md): the PV points the CephFS CSI driver
at an existing directory of the file system (`staticVolume: "true"`, `rootPath`); nothing is
created or deleted by the driver, and `Retain` keeps the logs when the claim goes. One rootPath
per namespace, so a namespace's pods never see another's directories; the PV is pre-bound to the
claim (`claimRef`) and the claim to the PV (`volumeName`), so no other claim can take it.

The root directory must exist before a pod mounts it, with mode 1777 (sticky, world-writable like
/tmp): podmedic's non-root logdir init container creates each pod's directory there
(webhook/toolbox/logdir.py). The header says so; docs/operations.md ("Log claims") explains it,
and the fsGroup hazard of ceph-csi.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from typing import Any

import yaml

from webhook.cli.config import load
from webhook.cli.env import path
from webhook.engine.config import ConfigError, is_namespace_name, is_subdomain_name
from webhook.engine.quantity import quantity

ROOT_MODE = "1777"
DRIVER = "cephfs.csi.ceph.com"


class ProvisionError(ValueError):
    """An argument the PV or the claim cannot be made from; the message names it."""


def render(namespace: str, root: str, *, claim: str, size: str, cluster_id: str, fs_name: str,
           secret: str, secret_namespace: str, driver: str = DRIVER) -> list[dict[str, Any]]:
    """The PersistentVolume and the PersistentVolumeClaim for one namespace."""
    if not is_namespace_name(namespace):
        raise ProvisionError(f"NAMESPACE must be a namespace name (DNS-1123 label), got {namespace!r}")
    if not root.startswith("/") or posixpath.normpath(root) != root or root == "/" or not root.isprintable():
        raise ProvisionError(f"--root must be an absolute, normalised, printable path below the file system's root, "
                             f"got {root!r}")
    for flag, value in (("--cluster-id", cluster_id), ("--fs-name", fs_name), ("--secret", secret),
                        ("--secret-namespace", secret_namespace), ("--size", size), ("--driver", driver)):
        if not value:
            raise ProvisionError(f"{flag} must not be empty")
    if not _is_size(size):
        raise ProvisionError(f"--size must be a quantity such as 100Gi, got {size!r}")
    if not is_subdomain_name(secret):
        raise ProvisionError(f"--secret must be a Secret name (DNS-1123 subdomain), got {secret!r}")
    if not is_namespace_name(secret_namespace):
        raise ProvisionError(f"--secret-namespace must be a namespace name (DNS-1123 label), got {secret_namespace!r}")
    pv = f"podmedic-logs-{namespace}"
    labels = {"app.kubernetes.io/part-of": "podmedic", "podmedic.io/log-namespace": namespace}
    volume = {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv, "labels": labels},
        "spec": {
            "accessModes": ["ReadWriteMany"], "capacity": {"storage": size}, "volumeMode": "Filesystem",
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim},
            "csi": {
                "driver": driver, "volumeHandle": pv,  # unique per PV: ceph-csi keys its mounts on it
                "nodeStageSecretRef": {"name": secret, "namespace": secret_namespace},
                "volumeAttributes": {"clusterID": cluster_id, "fsName": fs_name, "staticVolume": "true",
                                     "rootPath": root},
            },
        },
    }
    claim_obj = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace, "labels": labels},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}},
                 "volumeMode": "Filesystem", "storageClassName": "", "volumeName": pv},
    }
    return [volume, claim_obj]


def _is_size(size: str) -> bool:
    """A capacity the API server takes: a positive quantity (it refuses `abc` in both objects)."""
    try:
        return quantity(size) > 0
    except ValueError:
        return False


def header(namespace: str, root: str) -> str:
    return (f"# podmedic log claim of namespace {namespace} (the pvc log backend; docs/operations.md, Log claims).\n"
            f"# Before applying, create its root on the CephFS, writable by any UID (sticky, like /tmp):\n"
            f"#   mkdir -p <CephFS mount>{root} && chmod {ROOT_MODE} <CephFS mount>{root}\n"
            "# and keep ceph-csi from re-owning it for pods with fsGroup (CSIDriver fsGroupPolicy: None).\n")


def register(commands: Any) -> None:
    p = commands.add_parser(
        "provision", help="print the PersistentVolume and claim of a namespace's log directory (pvc backend)",
        description="Print a ceph-csi static PersistentVolume (one rootPath per namespace, Retain) and the "
        "ReadWriteMany claim bound to it, for the admin to review and apply (kubectl apply -f -).")
    p.add_argument("namespace", metavar="NAMESPACE")
    p.add_argument("--root", required=True, help="the namespace's directory in the CephFS file system "
                   "(rootPath), e.g. /podmedic-logs/NAMESPACE; create it with mode 1777 first")
    p.add_argument("--cluster-id", required=True, help="ceph-csi clusterID (its config map's entry)")
    p.add_argument("--fs-name", required=True, help="the CephFS file system's name")
    p.add_argument("--secret", default="csi-cephfs-secret", help="ceph-csi node-stage secret (default: %(default)s)")
    p.add_argument("--secret-namespace", default="ceph-csi-cephfs", help="its namespace (default: %(default)s)")
    p.add_argument("--size", default="100Gi", help="capacity to record (CephFS enforces quotas itself; default: %(default)s)")
    p.add_argument("--driver", default=DRIVER, help="the CSI driver's name (default: %(default)s)")
    p.add_argument("--config", type=path(), help="global configuration, for logs.claimName (default: the embedded one)")
    p.set_defaults(func=provision)


def provision(args: argparse.Namespace) -> int:
    try:
        claim = load(args.config).logs.claim_name
        objs = render(args.namespace, args.root, claim=claim, size=args.size, cluster_id=args.cluster_id,
                      fs_name=args.fs_name, secret=args.secret, secret_namespace=args.secret_namespace,
                      driver=args.driver)
    except (ConfigError, ProvisionError) as exc:
        print(f"podmedic logs provision: {exc}", file=sys.stderr)
        return 1
    print(header(args.namespace, args.root) + yaml.safe_dump_all(objs, sort_keys=False), end="")
    return 0
