"""`podmedic logs provision`: the ceph-csi static PersistentVolume and the claim bound to it, as
the admin applies them -- valid Kubernetes 1.36 objects (the API server accepts them too:
tests/test_log_claims.py creates them), one rootPath per namespace, Retain, ReadWriteMany, the
configured claim name, and the documented root mode in the header; bad input is a clear error."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT
from tests.pods import K8S_VERSION

REQUIRED = ["--cluster-id", "ceph-1", "--fs-name", "cephfs"]


def provision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webhook.cli", "logs", "provision", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def objects(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load_all(done.stdout))


def test_a_static_cephfs_volume_and_its_claim_bound_to_each_other():
    pv, pvc = objects(provision("team-a", "--root", "/podmedic-logs/team-a", *REQUIRED))
    for obj in (pv, pvc):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert (pv["kind"], pvc["kind"]) == ("PersistentVolume", "PersistentVolumeClaim")
    spec = pv["spec"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain" and spec["accessModes"] == ["ReadWriteMany"]
    assert spec["csi"]["driver"] == "cephfs.csi.ceph.com"
    assert spec["csi"]["volumeAttributes"] == {"clusterID": "ceph-1", "fsName": "cephfs", "staticVolume": "true",
                                               "rootPath": "/podmedic-logs/team-a"}
    assert spec["csi"]["volumeHandle"] == pv["metadata"]["name"] == "podmedic-logs-team-a"
    assert spec["csi"]["nodeStageSecretRef"] == {"name": "csi-cephfs-secret", "namespace": "ceph-csi-cephfs"}
    assert spec["storageClassName"] == pvc["spec"]["storageClassName"] == ""  # no dynamic provisioner
    assert spec["claimRef"]["namespace"] == pvc["metadata"]["namespace"] == "team-a"
    assert spec["claimRef"]["name"] == pvc["metadata"]["name"] == "podmedic-logs"
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_header_gives_the_root_mode_for_non_root_writers():
    done = provision("team-a", "--root", "/podmedic-logs/team-a", *REQUIRED)
    assert "chmod 1777 <CephFS mount>/podmedic-logs/team-a" in done.stdout
    assert "fsGroupPolicy: None" in done.stdout


def test_one_volume_per_namespace():
    a, _ = objects(provision("team-a", "--root", "/logs/team-a", *REQUIRED))
    b, _ = objects(provision("team-b", "--root", "/logs/team-b", *REQUIRED))
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert a["spec"]["csi"]["volumeHandle"] != b["spec"]["csi"]["volumeHandle"]


def test_the_claim_name_comes_from_the_configuration_and_options_are_honoured(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("logs:\n  claimName: team-logs\n")
    pv, pvc = objects(provision("team-a", "--root", "/l/a", *REQUIRED, "--config", str(config), "--size", "5Ti",
                                "--secret", "s", "--secret-namespace", "ceph", "--driver", "logs.cephfs.csi.ceph.com"))
    assert pvc["metadata"]["name"] == pv["spec"]["claimRef"]["name"] == "team-logs"
    assert pv["spec"]["capacity"] == {"storage": "5Ti"} and pvc["spec"]["resources"]["requests"] == {"storage": "5Ti"}
    assert pv["spec"]["csi"]["driver"] == "logs.cephfs.csi.ceph.com"
    assert pv["spec"]["csi"]["nodeStageSecretRef"] == {"name": "s", "namespace": "ceph"}


@pytest.mark.parametrize("args,message", [
    (["Team-A", "--root", "/l/a", *REQUIRED], "NAMESPACE must be a namespace name"),
    (["a", "--root", "relative", *REQUIRED], "--root must be an absolute, normalised, printable path"),
    (["a", "--root", "/", *REQUIRED], "--root must be"),
    (["a", "--root", "/l/../etc", *REQUIRED], "--root must be"),
    (["a", "--root", "/l/a\n# x", *REQUIRED], "--root must be"),  # printed in the header comment and the YAML
    (["a", "--root", "/l/a", "--cluster-id", "", "--fs-name", "f"], "--cluster-id must not be empty"),
    # Each printed before, exit 0, in objects the API server refuses ("quantities must match the
    # regular expression", "a lowercase RFC 1123 subdomain"): the admin learnt it at apply time.
    (["a", "--root", "/l/a", *REQUIRED, "--size", "abc"], "--size must be a quantity such as 100Gi, got 'abc'"),
    (["a", "--root", "/l/a", *REQUIRED, "--size", "0"], "--size must be a quantity such as 100Gi, got '0'"),
    (["a", "--root", "/l/a", *REQUIRED, "--size", "1e1000000000"], "--size must be a quantity such as 100Gi"),
    (["a", "--root", "/l/a", *REQUIRED, "--secret", "Bad Secret"], "--secret must be a Secret name (DNS-1123 "
                                                                     "subdomain), got 'Bad Secret'"),
    (["a", "--root", "/l/a", *REQUIRED, "--secret-namespace", "NS X"], "--secret-namespace must be a namespace name "
                                                                        "(DNS-1123 label), got 'NS X'"),
])
def test_bad_input_is_a_clear_error(args, message):
    done = provision(*args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_bad_configuration_is_a_clear_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("logs:\n  claimName: Not/A/Name\n")
    done = provision("a", "--root", "/l/a", *REQUIRED, "--config", str(config))
    assert done.returncode == 1 and "logs.claimName must be" in done.stderr and "Traceback" not in done.stderr
