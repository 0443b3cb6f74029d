"""The container image as it is built (`make image`) and run: real podman containers.

The server answers a review over TLS as the Dockerfile's user with a read-only root filesystem
and no capabilities, as deploy/base/deployment.yaml runs it. The init containers are then run
exactly as that server's patch describes them (command, securityContext, volume mounts), into
host directories shaped like the kubelet's volumes, and an app of yet another UID uses what
they prepared. Networking: loopback only (`--network host` with a 127.0.0.1 bind) or none.

Needs root, podman, runc and mmdebstrap (.ci/run installs them); skipped with the reason
otherwise. The build is `make image` itself: cached layers make a warm run take seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, free_port
from tests.pods import apply_checked, patch_of
from tests.test_deploy import dockerfile_stages
from webhook.toolbox import argv as toolbox

pytestmark = pytest.mark.image

IMAGE = "ghcr.io/podmedic/podmedic:0.1.0"  # the Makefile's IMAGE, which webhook/defaults.yaml injects
MAX_SIZE_MB = 300  # today ~245 MB: the venv (kubernetes alone ~120 MB) on a ~50 MB distroless
APP_UID = 1000
POD = {"PODMEDIC_POD_NAME": "web-7d9f8b6c5d-x2x7q", "PODMEDIC_POD_UID": "0b5c7a1e-6f2d-4c1b-9a3e-2d8f4b6c1a07"}


class _Summary:
    """Lines printed at the end of the pytest run (a test module cannot hold hooks itself)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.section("podmedic image")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def summary(request: pytest.FixtureRequest) -> _Summary:
    plugin = _Summary()
    request.config.pluginmanager.register(plugin, "podmedic-image-summary")
    return plugin


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """podman's environment. `default_ulimits = []`: runc cannot raise rlimits on hosts that
    forbid it (this CI VM), and the image needs none of podman's defaults."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"image tests need {', '.join(missing)}: apt-get install podman runc mmdebstrap (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("image tests need root: rootful podman, and the stand-in base images are assembled as root")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], env=env, text=True, capture_output=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    return done


@pytest.fixture(scope="session")
def image(podman_env: dict[str, str], summary: _Summary) -> str:
    """`make image` as a user runs it (podman: the tests run its result), reused when cached."""
    started = time.monotonic()
    done = subprocess.run(["make", "image", f"IMAGE={IMAGE}"], cwd=ROOT, text=True, capture_output=True,
                          timeout=1800, env={**podman_env, "CONTAINER_ENGINE": "podman"})
    took = time.monotonic() - started
    assert done.returncode == 0, f"make image failed after {took:.0f} s:\n{(done.stdout + done.stderr)[-6000:]}"
    steps = [line.removeprefix("build-image: ") for line in done.stderr.splitlines()
             if line.startswith("build-image: ") and re.search(r" in \d+ s$", line)]
    summary.lines.append(f"`make image`: {took:.0f} s" + (f" ({'; '.join(steps)})" if steps else ""))
    return IMAGE


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A container removed when it exits. runc: podman's default crun refuses cgroup v1 hosts."""
    return podman(env, "run", "--rm", "--runtime", "runc", *args, check=False, timeout=timeout)


def read_only(*tmpfs: str) -> list[str]:
    """A read-only root filesystem, as readOnlyRootFilesystem gives it: podman would otherwise add
    writable /tmp, /run and /var/tmp; only the given tmpfs (the pod's emptyDirs) are writable."""
    return ["--read-only", "--read-only-tmpfs=false", *(f"--tmpfs={path}" for path in tmpfs)]


# -- the server ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(image: str, podman_env: dict[str, str], certs_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """`podmedic serve` in the image as deploy/base/deployment.yaml runs it (the image's user,
    read-only root, a tmpfs /tmp, no capabilities), with `make run`'s examples; the response
    to examples/review.json, the server's process status and its log."""
    tls = tmp_path_factory.mktemp("tls")  # as a Secret volume presents the files: root's, 0644
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy(certs_dir / name, tls / name)
        (tls / name).chmod(0o644)
    tls.chmod(0o755)
    port, name = free_port(), f"podmedic-image-test-{uuid.uuid4().hex[:8]}"
    podman(podman_env, "run", "-d", "--name", name, "--runtime", "runc", "--network", "host", *read_only("/tmp"),
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "-v", f"{tls}:/etc/podmedic/tls:ro", "-v", f"{ROOT}/examples/namespaces.yaml:/etc/podmedic/namespaces.yaml:ro",
           image, "serve", "--bind", f"127.0.0.1:{port}", "--tls-cert-file", "/etc/podmedic/tls/tls.crt",
           "--tls-private-key-file", "/etc/podmedic/tls/tls.key", "--namespaces-file", "/etc/podmedic/namespaces.yaml")
    try:
        # verify on each call: a session's own is overridden by REQUESTS_CA_BUNDLE when set
        url, session, ca = f"https://127.0.0.1:{port}", requests.Session(), str(tls / "ca.crt")
        deadline = time.monotonic() + 60
        while True:
            try:
                if session.get(url + "/readyz", verify=ca, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, podman(podman_env, "logs", name, check=False).stderr[-4000:]
            time.sleep(0.2)
        pid = podman(podman_env, "inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        review = (ROOT / "examples" / "review.json").read_text()
        answer = session.post(url + "/mutate", data=review, headers={"Content-Type": "application/json"},
                              verify=ca, timeout=10)
        yield {"answer": answer, "review": json.loads(review), "status": status,
               "log": podman(podman_env, "logs", name, check=False)}
    finally:
        podman(podman_env, "rm", "-f", "-t", "5", name, check=False)


def init_containers(served: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The patched pod's init containers, by name (the patch applied and schema-checked)."""
    pod = apply_checked(served["review"]["request"]["object"], patch_of(served["answer"].json()))
    return {c["name"]: c for c in pod["spec"]["initContainers"]}


def test_serve_answers_a_review_over_tls_as_65532_read_only_without_capabilities(served):
    assert served["answer"].status_code == 200
    response = served["answer"].json()["response"]
    assert response["uid"] == served["review"]["request"]["uid"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert response["auditAnnotations"]["podmedic"].startswith("injected: ")
    pod = apply_checked(served["review"]["request"]["object"], patch_of(served["answer"].json()))
    assert pod["spec"]["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": 8080}
    inits = init_containers(served)
    assert set(inits) == {"podmedic-toolbox", "podmedic-logdir"}
    assert {c["image"] for c in inits.values()} == {IMAGE}  # the pods run the image built here
    # The kernel's view of the server process: the image's user, not root, no capabilities.
    assert served["status"]["Uid"].split() == ["65532"] * 4
    assert served["status"]["Gid"].split() == ["65532"] * 4
    assert int(served["status"]["CapEff"], 16) == int(served["status"]["CapPrm"], 16) == 0
    assert '"outcome":"patched"' in served["log"].stderr + served["log"].stdout


# -- the init containers, as the patch describes them ---------------------------------------------

def as_kubelet_runs(container: dict[str, Any], volumes: dict[str, Path], *tmpfs: str) -> list[str]:
    """`podman run` arguments for a pod container spec: its securityContext, its volume mounts
    (name -> host directory), its command with $(VAR) expanded as the kubelet does."""
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]} and security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True and security.get("privileged") is False
    uid = security["runAsUser"]
    args = ["--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *read_only(*tmpfs),
            "--user", f"{uid}:{security.get('runAsGroup', uid)}"]
    for mount in container.get("volumeMounts", []):
        args += ["-v", f"{volumes[mount['name']]}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
    command = [re.sub(r"\$\((\w+)\)", lambda m: POD[m.group(1)], word) for word in container["command"]]
    return [*args, "--entrypoint", json.dumps(command), container["image"]]


@pytest.fixture(scope="module")
def node_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What the kubelet gives the init containers: the toolbox emptyDir (root's, 0777) and the
    hostPath log root (root's, 0755)."""
    base = tmp_path_factory.mktemp("node")
    dirs = {"podmedic-toolbox": base / "toolbox", "podmedic-logs": base / "cephfs"}
    for path, mode in zip(dirs.values(), (0o777, 0o755)):
        path.mkdir()
        os.chown(path, 0, 0)
        path.chmod(mode)
    return dirs


def test_toolbox_install_into_the_kubelets_emptydir_as_65532_without_capabilities(served, podman_env, node_dirs):
    init = init_containers(served)["podmedic-toolbox"]
    assert init["securityContext"]["runAsUser"] == 65532
    done = run(podman_env, *as_kubelet_runs(init, node_dirs))
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"{toolbox.TOOLBOX_MOUNT} ready" in done.stdout + done.stderr
    mount = node_dirs["podmedic-toolbox"]
    st = mount.stat()  # left as the kubelet made it
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o777)
    for name in ("supervise", "pmctl", "forensics", "bin/busybox", "bin/tini", "bin/sigreset"):
        st = (mount / name).stat()
        assert (st.st_uid, st.st_mode & 0o777) == (65532, 0o755), name
    # Idempotent: the init container runs again when the pod's sandbox is recreated.
    again = run(podman_env, *as_kubelet_runs(init, node_dirs))
    assert again.returncode == 0, again.stderr + again.stdout


def test_logdir_prepares_the_containers_directories_as_root_without_capabilities(served, podman_env, node_dirs):
    init = init_containers(served)["podmedic-logdir"]
    assert init["securityContext"]["runAsUser"] == 0
    done = run(podman_env, *as_kubelet_runs(init, node_dirs))
    assert done.returncode == 0, done.stderr + done.stdout
    web = node_dirs["podmedic-logs"] / f"demo_{POD['PODMEDIC_POD_NAME']}_{POD['PODMEDIC_POD_UID']}" / "web"
    assert (web.stat().st_uid, web.stat().st_mode & 0o7777) == (0, 0o1777)


def test_the_init_containers_load_every_module_from_bytecode(served, podman_env, node_dirs):
    """Every injected pod runs both before its app, often at a small cpu limit: a module compiled
    at each start (read-only root: never cached) cost them 0.1 s of cpu, 2 s at 50m."""
    for name, container in init_containers(served).items():
        done = run(podman_env, "--env", "PYTHONVERBOSE=1", *as_kubelet_runs(container, node_dirs))
        assert done.returncode == 0, done.stderr + done.stdout
        assert "# code object from '/opt/podmedic/pycache/" in done.stderr  # what the prefix holds
        compiled = re.findall(r"^# code object from (/\S+\.py)$", done.stderr, re.MULTILINE)
        assert compiled == [], f"{name} compiled {len(compiled)} modules from source: {compiled[:5]}"


def test_an_app_of_another_uid_uses_the_toolbox_and_writes_its_log(served, podman_env, node_dirs, image):
    """After both init containers: the app (uid 1000, in this shell-less image) runs the
    installed toolbox's shell and writes into the log directory logdir prepared."""
    pod_dir = f"demo_{POD['PODMEDIC_POD_NAME']}_{POD['PODMEDIC_POD_UID']}"
    for name in ("podmedic-toolbox", "podmedic-logdir"):
        assert run(podman_env, *as_kubelet_runs(init_containers(served)[name], node_dirs)).returncode == 0
    done = run(podman_env, "--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               *read_only(), "--user", f"{APP_UID}:{APP_UID}",
               "-v", f"{node_dirs['podmedic-toolbox']}:{toolbox.TOOLBOX_MOUNT}:ro",
               "-v", f"{node_dirs['podmedic-logs'] / pod_dir / 'web'}:/var/log/podmedic",
               "--entrypoint", f"{toolbox.TOOLBOX_MOUNT}/bin/busybox", image,
               "sh", "-c", "id -u && echo 'a log line' > /var/log/podmedic/app.log")
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == str(APP_UID)
    log = node_dirs["podmedic-logs"] / pod_dir / "web" / "app.log"
    assert log.read_text() == "a log line\n" and log.stat().st_uid == APP_UID


# -- the image itself ------------------------------------------------------------------------------

def test_user_entrypoint_and_path_are_the_dockerfiles(image, podman_env):
    _, final = dockerfile_stages()
    config = json.loads(podman(podman_env, "image", "inspect", "--format", "{{json .Config}}", image).stdout)
    (user,) = [rest for instruction, rest in final if instruction == "USER"]
    (entrypoint,) = [json.loads(rest) for instruction, rest in final if instruction == "ENTRYPOINT"]
    (cmd,) = [json.loads(rest) for instruction, rest in final if instruction == "CMD"]
    (env,) = [rest for instruction, rest in final if instruction == "ENV"]
    path = re.search(r"PATH=(\S+)", env).group(1)
    assert config["User"] == user == "65532:65532"
    assert config["Entrypoint"] == entrypoint and config["Cmd"] == cmd == ["serve"]
    assert f"PATH={path}" in config["Env"] and path.startswith("/opt/podmedic/venv/bin:")


def test_no_shell_no_package_manager_and_the_venv_runs_the_images_python(image, podman_env):
    sh = run(podman_env, "--network", "none", "--entrypoint", "/bin/sh", image, "-c", "true")
    assert sh.returncode != 0 and "no such file or directory" in sh.stderr.lower()
    probe = ("import json, os; print(json.dumps({'present': [p for p in %r if os.path.lexists(p)], "
             "'python': os.path.realpath('/opt/podmedic/venv/bin/python3')}))")
    paths = ["/bin/sh", "/usr/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/dpkg", "/usr/bin/apt-get", "/usr/bin/gcc",
             "/opt/podmedic/venv/bin/pip"]
    done = run(podman_env, "--network", "none", "--entrypoint", "/usr/bin/python3", image, "-c", probe % paths)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["present"] == []
    assert found["python"] == "/usr/bin/python3.11"  # Debian 12's, as in the build stage


def test_image_size_is_reported_and_bounded(image, podman_env, summary):
    layers = json.loads(podman(podman_env, "image", "inspect", "--format", "{{json .RootFS.Layers}}", image).stdout)
    size_mb = int(podman(podman_env, "image", "inspect", "--format", "{{.Size}}", image).stdout) / 1e6
    summary.lines.append(f"{image}: {size_mb:.0f} MB in {len(layers)} layers (bound: {MAX_SIZE_MB} MB)")
    assert size_mb < MAX_SIZE_MB, f"{image} is {size_mb:.0f} MB"



def test_image_archive_is_an_oci_archive_of_this_image(image, podman_env, tmp_path):
    """`make image-archive`: what a node without a registry imports (kube-node's `image archive`)."""
    archive = tmp_path / "podmedic-image.tar"
    done = subprocess.run(["make", "image-archive", f"IMAGE={image}", f"IMAGE_ARCHIVE={archive}"], cwd=ROOT,
                          text=True, capture_output=True, timeout=600, env={**podman_env, "CONTAINER_ENGINE": "podman"})
    assert done.returncode == 0, done.stdout + done.stderr
    with tarfile.open(archive) as tar:
        (manifest,) = json.load(tar.extractfile("index.json"))["manifests"]
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['digest'].split(':')[1]}"))["config"]
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == image
    image_id = podman(podman_env, "image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    assert config["digest"] == f"sha256:{image_id}"
