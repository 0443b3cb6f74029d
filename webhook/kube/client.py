"""The Kubernetes API client every podmedic component uses: from --kubeconfig, $KUBECONFIG,
kubectl's default file or the pod's service account, with urllib3's retries off (each caller has
its own retry policy).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:  # the client is slow to import: a namespaces file or the CLI must not pay for it
    import kubernetes

CONNECT_RETRIES = 0  # urllib3 retries: the namespace watch loop and `certs install` are the retry policy
DEFAULT_KUBECONFIG = "~/.kube/config"  # kubectl's, read when neither --kubeconfig nor KUBECONFIG names one


def kube_api_client(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """An API client from --kubeconfig, else $KUBECONFIG (may list several files), else
    ~/.kube/config where it exists, else the pod's service account (in-cluster): kubectl's order,
    so that `make deploy` and the runbooks' commands work where kubectl does. Raises ValueError
    when none is usable."""
    from kubernetes import client, config

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or _default_file()
    try:
        if path:
            config.load_kube_config(config_file=path, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    # ValueError: a non-base64 certificate-authority-data; TypeError, AttributeError: a file that
    # is YAML but not a mapping (a list, a string) -- the client indexes into it unchecked.
    except (config.ConfigException, yaml.YAMLError, OSError, ValueError, TypeError, AttributeError) as exc:
        where = f"kubeconfig {path}" if path else f"in-cluster configuration (no --kubeconfig, KUBECONFIG or {DEFAULT_KUBECONFIG})"
        raise ValueError(f"cannot use the {where}: {exc}") from exc
    configuration.retries = CONNECT_RETRIES
    return client.ApiClient(configuration)


def _default_file() -> str | None:
    """kubectl's default kubeconfig, where it exists (a pod has none: in-cluster)."""
    path = os.path.expanduser(DEFAULT_KUBECONFIG)
    return path if os.path.isfile(path) else None
