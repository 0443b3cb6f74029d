"""A container without `command`, wrapped because `podmedic.io/entrypoint` names its image's
ENTRYPOINT, on a real node: the app gets the argv the image gives it without podmedic. The
kubelet expands `$(VAR)` and turns `$$` into `$` in a container's command and args, never in the
image's ENTRYPOINT; the wrapped entrypoint is part of the command, so it once ran with `$$`
halved and `$(A)` replaced by A's value (a pid file written by `echo $$` named `$`)."""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import PREFIX, Cluster, image_archive, wait_for

pytestmark = pytest.mark.node

IMAGE = "localhost/e2e/dollar-entrypoint:1"
# single quotes: the shell prints the words as the runtime handed them to it
ENTRYPOINT = ["sh", "-c", "echo '$$ $(A) $$(A)' \"$@\"", "sh"]


def printed(cluster: Cluster, ns: str, name: str = "printer") -> list[str]:
    """The app's lines, without the wrapper's, once the pod has run to its end."""
    wait_for(f"{name} to finish", lambda: cluster.get("pod", name, ns)["status"].get("phase") == "Succeeded",
             timeout=90)
    lines = cluster.kubectl("-n", ns, "logs", name).stdout.splitlines()
    return [line for line in lines if not line.startswith("podmedic-supervise:")]


def test_a_wrapped_image_entrypoint_keeps_its_dollars_and_args_are_expanded_as_without_podmedic(
        deployed: Cluster) -> None:
    deployed.load(image_archive("busybox", IMAGE, "--entrypoint", json.dumps(ENTRYPOINT)))
    plain, wrapped = deployed.namespace(), deployed.namespace(inject="enabled", supervisor="enabled")
    for ns in (plain, wrapped):
        deployed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "printer", "namespace": ns, "annotations": {PREFIX + "entrypoint": json.dumps(ENTRYPOINT)}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "args": ["$(A)", "$$(A)"], "env": [{"name": "A", "value": "x"}]}]}})
    assert deployed.get("pod", "printer", wrapped)["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"
    unwrapped = printed(deployed, plain)
    assert unwrapped == ["$$ $(A) $$(A) x $(A)"]  # the image's words as written, the args expanded
    assert printed(deployed, wrapped) == unwrapped
