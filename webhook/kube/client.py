"""The Kubernetes API client every podmedic component uses: from --kubeconfig, $KUBECONFIG or
the pod's service account, with urllib3's retries off (each caller has its own retry policy).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:  # the client is slow to import: a namespaces file or the CLI must not pay for it
    import kubernetes

CONNECT_RETRIES = 0  # urllib3 retries: the namespace watch loop and `certs install` are the retry policy


def kube_api_client(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """An API client from --kubeconfig, else $KUBECONFIG (may list several files), else the pod's
    service account (in-cluster). Raises ValueError when none is usable."""
    from kubernetes import client, config

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path:
            config.load_kube_config(config_file=path, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    # ValueError: a non-base64 certificate-authority-data; TypeError, AttributeError: a file that
    # is YAML but not a mapping (a list, a string) -- the client indexes into it unchecked.
    except (config.ConfigException, yaml.YAMLError, OSError, ValueError, TypeError, AttributeError) as exc:
        where = f"kubeconfig {path}" if path else "in-cluster configuration (no --kubeconfig or KUBECONFIG given)"
        raise ValueError(f"cannot use the {where}: {exc}") from exc
    configuration.retries = CONNECT_RETRIES
    return client.ApiClient(configuration)
