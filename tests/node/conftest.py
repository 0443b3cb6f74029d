"""The node group's cluster: a real node (kubelet, containerd, controller-manager, scheduler), podmedic
deployed on it from deploy/ exactly as `make deploy` installs it, and the images its pods run.

Where it runs:
- by default on ../shared/kube-node, started for this group in a fresh state directory (root
  only; it skips with the reason where the folder is missing);
- on any cluster when PODMEDIC_E2E_KUBECONFIG names a kubeconfig (kind, a test cluster). The
  images are then handed to PODMEDIC_E2E_LOAD, a command with `{archive}` in it (for kind:
  `kind load image-archive {archive}`); without it they must already be on the nodes. Building
  the test images still uses ../shared/kube-node's `image` tool (it only writes archives).

Nothing here is a stand-in: the pods' logs, files and states are read back from the node.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.conftest import ROOT

KUBE_NODE = ROOT.parent / "shared" / "kube-node"
BUILD = ROOT / "build"
BUSYBOX = "localhost/e2e/busybox:1"
STATIC = "localhost/e2e/static:1"
PREFIX = "podmedic.io/"
T = TypeVar("T")


def log_root() -> str:
    """The admin's log root as deploy/ ships it (the node tests deploy that configuration)."""
    config = yaml.safe_load((ROOT / "deploy" / "base" / "config.yaml").read_text())
    return str(config["logs"]["hostRoot"])


def remove_log_dirs(root: Path, namespaces: Iterable[str], subdirs: Iterable[str]) -> list[str]:
    """Remove what the run left under the log root: the pod directories of the namespaces it made
    (`<namespace>_<pod>_<uid>`, the kubelet's naming that podmedic's log directory follows) and
    the subdirectories its tests made there (Cluster.log_subdirs); returns their names. Nothing
    else: the root also holds other runs' and other people's directories."""
    prefixes = tuple(f"{name}_" for name in namespaces)
    wanted = set(subdirs)
    removed = []
    for entry in sorted(root.iterdir()) if root.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink() and (entry.name.startswith(prefixes) or entry.name in wanted):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Poll until probe() returns something true; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Cluster:
    env: dict[str, str]
    load: Callable[[Path], None]
    readers: dict[str, str] = field(default_factory=dict)  # node name -> "namespace/pod"
    namespaces: list[str] = field(default_factory=list)    # made by the tests, deleted after them
    log_subdirs: list[str] = field(default_factory=list)   # made by the tests under log_root()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["kubectl", *args], input=input, text=True, capture_output=True, env=self.env,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {shlex.join(args)}: {done.stderr.strip()}")
        return done

    def apply(self, *objs: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = ["-n", namespace] if namespace else []
        return json.loads(self.kubectl(*ns, "get", kind, name, "-o", "json").stdout)

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json").stdout
        return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]

    def namespace(self, **annotations: str) -> str:
        name = "e2e-" + uuid.uuid4().hex[:8]
        self.apply({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "annotations": {PREFIX + k: v for k, v in annotations.items()}}})
        self.namespaces.append(name)
        wait_for(f"ServiceAccount default in {name}",
                 lambda: self.kubectl("-n", name, "get", "sa", "default", check=False).returncode == 0)
        return name

    def cleanup(self) -> None:
        for name in self.namespaces:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)

    def exec(self, namespace: str, pod: str, container: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("-n", namespace, "exec", pod, "-c", container, "--", *argv, check=False, timeout=60)

    def wrapped_app_started(self, namespace: str, pod: str) -> tuple[str, str]:
        """Wait until `pod` runs, its container `app` wrapped, and the app has printed "started";
        (its node, its `app.log` under the log root) for node_file once the pod is gone."""
        def running() -> dict[str, Any] | None:
            got = self.get("pod", pod, namespace)
            return got if got.get("status", {}).get("phase") == "Running" else None

        got = wait_for("the pod to run", running, timeout=90)
        assert got["spec"]["containers"][0]["command"][0] == "/podmedic/bin/tini"  # it does run wrapped
        meta = got["metadata"]
        wait_for("the app to start",
                 lambda: "started" in self.kubectl("-n", namespace, "logs", pod, check=False).stdout)
        return got["spec"]["nodeName"], f"{meta['namespace']}_{meta['name']}_{meta['uid']}/app/app.log"

    def node_file(self, node: str, path: str) -> str | None:
        """A file on a node's disk under the log root, read through a reader pod on that node
        (which works the same on this machine's node and on a remote cluster's)."""
        done = self._on_node(node, "cat", "/logs/" + path)
        return done.stdout if done.returncode == 0 else None

    def node_ls(self, node: str, path: str) -> list[str]:
        done = self._on_node(node, "ls", "-1", "/logs/" + path)
        return done.stdout.split() if done.returncode == 0 else []

    def node_mtimes(self, node: str, path: str) -> dict[str, float]:
        """When each file of a directory under the log root was last written (seconds since the
        epoch, to the nanosecond: busybox stat's %y has the fraction that %Y lacks)."""
        done = self._on_node(node, "sh", "-c", 'cd "$1" && stat -c "%Y %y %n" *', "sh", "/logs/" + path)
        times: dict[str, float] = {}
        for line in done.stdout.splitlines():
            seconds, _, clock, _, name = line.split(" ", 4)
            times[name] = int(seconds) + float("0." + clock.partition(".")[2])
        return times

    def _on_node(self, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
        if node not in self.readers:
            self.readers[node] = self._reader(node)
        namespace, pod = self.readers[node].split("/")
        return self.exec(namespace, pod, "reader", *argv)

    def _reader(self, node: str) -> str:
        """A pod on that node, in a namespace that is not opted in, with the log root mounted
        read-only: `namespace/pod`."""
        namespace = self.namespace()
        self.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader", "namespace": namespace},
                    "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [
                        {"name": "reader", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                         "command": ["sleep", "86400"],
                         "volumeMounts": [{"name": "logs", "mountPath": "/logs", "readOnly": True}]}],
                        "volumes": [{"name": "logs", "hostPath": {"path": log_root(), "type": "DirectoryOrCreate"}}]}})
        self.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/reader", "--timeout=60s")
        return f"{namespace}/reader"


def _local_node() -> Iterator[Cluster]:
    """../shared/kube-node, started in a fresh state directory (<= 70 characters: the kubelet
    puts unix sockets below it) and stopped with everything it started, including the log
    directories its pods left under log_root(): there deploy/'s hostPath root is this machine's
    own filesystem, which `stop --wipe` does not touch (hundreds of directories piled up)."""
    if not (KUBE_NODE / "start").exists():
        pytest.skip(f"no real node at {KUBE_NODE} (../shared is missing); "
                    "or set PODMEDIC_E2E_KUBECONFIG to run the node group against another cluster")
    if os.geteuid() != 0:
        pytest.skip("../shared/kube-node needs root (it runs a kubelet)")
    state = Path(tempfile.mkdtemp(prefix="pm-kn-", dir="/tmp"))
    cluster: Cluster | None = None
    # ContainerStopSignals (alpha in 1.36) on: otherwise the API server drops lifecycle.stopSignal
    # and test_stop_signal.py cannot show what the wrapper does with it. Only pods that set it differ.
    gates = "--feature-gates=ContainerStopSignals=true"
    started = subprocess.run([str(KUBE_NODE / "start"), str(state)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, **{name: f"{os.environ.get(name, '')} {gates}".strip()
                                                   for name in ("EXTRA_APISERVER_FLAGS", "EXTRA_KUBELET_FLAGS")}})
    try:
        if started.returncode != 0:
            pytest.fail("kube-node did not start: " + (started.stdout + started.stderr)[-3000:])
        env = dict(os.environ)
        for line in (state / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.replace("$PATH", os.environ["PATH"])

        def load(archive: Path) -> None:
            subprocess.run([str(KUBE_NODE / "image"), "archive", str(archive), "--state", str(state)],
                           check=True, capture_output=True, timeout=300)

        cluster = Cluster(env, load)
        yield cluster
    finally:
        subprocess.run([str(KUBE_NODE / "stop"), str(state), "--wipe"], capture_output=True, timeout=300)
        if cluster is not None:  # once the node is gone, nothing writes there any more
            remove_log_dirs(Path(log_root()), cluster.namespaces, cluster.log_subdirs)


def _given_cluster(kubeconfig: str) -> Iterator[Cluster]:
    command = os.environ.get("PODMEDIC_E2E_LOAD", "")

    def load(archive: Path) -> None:
        if command:
            subprocess.run(command.format(archive=shlex.quote(str(archive))), shell=True, check=True, timeout=600)

    cluster = Cluster({**os.environ, "KUBECONFIG": kubeconfig}, load)
    yield cluster
    cluster.cleanup()  # podmedic itself stays installed: `make undeploy` removes it


@pytest.fixture(scope="package")
def node() -> Iterator[Cluster]:
    given = os.environ.get("PODMEDIC_E2E_KUBECONFIG")
    yield from (_given_cluster(given) if given else _local_node())


def image_archive(*args: str) -> Path:
    """An image archive from ../shared/kube-node's `image` tool (it writes, imports nothing)."""
    if not (KUBE_NODE / "image").exists():
        pytest.skip(f"the node tests' images are built with {KUBE_NODE / 'image'} (../shared is missing)")
    out = BUILD / f"e2e-{args[1].rsplit('/', 1)[-1].replace(':', '-')}.tar"
    BUILD.mkdir(exist_ok=True)
    subprocess.run([str(KUBE_NODE / "image"), *args, "--out", str(out)], check=True, capture_output=True, timeout=300)
    return out


def _podmedic_archive() -> Path:
    """The real image, built from the Dockerfile by `make image-archive`."""
    done = subprocess.run(["make", "-s", "image-archive"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail("make image-archive failed:\n" + (done.stdout + done.stderr)[-3000:])
    return BUILD / "podmedic-image.tar"


@pytest.fixture(scope="package")
def images(node: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """podmedic's image, a busybox image (a shell, user 1000) and a shell-less one: a single
    static binary (tests/node/app.c) with no libc beside it."""
    rootfs = tmp_path_factory.mktemp("static-rootfs")
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(rootfs / "app"), str(Path(__file__).with_name("app.c"))],
                   check=True, capture_output=True, timeout=120)
    for archive in (_podmedic_archive(), image_archive("busybox", BUSYBOX),
                    image_archive("rootfs", str(rootfs), STATIC, "--entrypoint", '["/app"]')):
        node.load(archive)


@pytest.fixture(scope="package")
def deployed(node: Cluster, images: None) -> Cluster:
    """podmedic from deploy/ as `make deploy` installs it (kustomize overlay, then `podmedic
    certs install` for the serving certificate and caBundle, then the rollout)."""
    done = subprocess.run(["make", "-s", "deploy"], cwd=ROOT, env=node.env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    probe_ns = node.namespace(inject="enabled")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
           "spec": {"containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "1"]}]}}

    def injected() -> bool:  # the webhook answers once its Endpoints and the namespace cache are in
        out = node.kubectl("-n", probe_ns, "create", "--dry-run=server", "-f", "-", "-o", "json",
                              input=json.dumps(pod), check=False).stdout
        return bool(out) and PREFIX + "status" in json.loads(out)["metadata"].get("annotations", {})

    wait_for("the deployed webhook to inject", injected, timeout=120)
    return node
