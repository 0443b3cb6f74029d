"""File-name options (webhook/cli/env.py `path`): an empty one, `--config "$CONFIG"` with the
variable unset, is a usage error, never "none given"; an empty variable is unset, as kubectl reads
KUBECONFIG=''. The real CLI, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# Each command that takes the option, with what else it needs to get that far.
SERVE = ["serve", "--tls-cert-file", "/nonexistent/tls.crt"]  # before the fix: "cannot load", not a run
JANITOR = ["logs", "janitor"]
PROVISION = ["logs", "provision", "ns", "--root", "/r", "--cluster-id", "c", "--fs-name", "f"]
CERTS = ["certs", "install", "--webhook", "w", "--secret", "ns/s"]
CASES = [
    *[(SERVE, option, 2) for option in ("--config", "--namespaces-file", "--kubeconfig")],
    *[([mode, "-f", "-"], option, 1) for mode in ("inject", "explain")
      for option in ("--config", "--namespaces-file", "--kubeconfig")],
    (["uninject", "-f", "-"], "--config", 1),
    *[(JANITOR, option, 2) for option in ("--config", "--kubeconfig", "--metrics-file")],
    (PROVISION, "--config", 2),
    *[(words, option, 2) for words in (["quarantine"], ["quarantine", "list"])
      for option in ("--config", "--kubeconfig")],
    (CERTS, "--kubeconfig", 2),
    # Every other file-name option: the same type, so the same refusal (`certs init --out ''` wrote
    # into the working directory, `certs install --from-dir ''` generated a PKI instead of uploading).
    *[(SERVE[:1], option, 2) for option in ("--tls-cert-file", "--tls-private-key-file")],
    *[(["quarantine"], option, 2) for option in ("--tls-cert-file", "--tls-private-key-file")],
    (["certs", "init"], "--out", 2),
    *[(["certs", "check"], option, 2) for option in ("--dir", "--cert", "--key", "--ca")],
    (CERTS, "--from-dir", 2),
    (["toolbox", "install", "dest"], "--from", 2),
    (["logdir", "--pod-dir", "ns_p_u", "c"], "--root", 2),
]


def _env() -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("PODMEDIC_")}
    return {**kept, "PYTHONPATH": str(ROOT)}


def podmedic(*args: str, cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The real CLI, in a scratch directory: an empty name read as `.` writes nothing of ours."""
    return subprocess.run([sys.executable, "-m", "webhook.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, **kwargs)


@pytest.mark.parametrize("words, option, code", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_an_empty_file_name_is_a_usage_error(tmp_path, words, option, code):
    """Before: `--config ''` ran on the embedded defaults (serve too: without the admin's hostRoot),
    `--namespaces-file ''` offline with every namespace opted in, `--kubeconfig ''` in-cluster."""
    done = podmedic(*words, option, "", cwd=tmp_path, input="", env=_env())
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert f"argument {option}: an empty file name" in done.stderr.splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())


# Each command that reads a PODMEDIC_* file-name variable (type path(var)), with what else it needs to get that far.
# The janitor always runs on a scratch config here, but for PODMEDIC_CONFIG itself: never on the
# default root, which the machine may hold.
VARIABLE_CASES = [
    *[(SERVE, var) for var in ("PODMEDIC_CONFIG", "PODMEDIC_NAMESPACES_FILE", "PODMEDIC_TLS_PRIVATE_KEY_FILE")],
    (SERVE[:1], "PODMEDIC_TLS_CERT_FILE"),
    (JANITOR, "PODMEDIC_CONFIG"),
    ([*JANITOR, "--config", "{config}"], "PODMEDIC_METRICS_FILE"),
    *[(["quarantine"], var) for var in ("PODMEDIC_CONFIG", "PODMEDIC_TLS_CERT_FILE", "PODMEDIC_TLS_PRIVATE_KEY_FILE")],
    (["quarantine", "list"], "PODMEDIC_CONFIG"),
]


@pytest.mark.parametrize("words, var", VARIABLE_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_an_empty_variable_is_a_usage_error_naming_it(tmp_path, words, var):
    """The shipped manifests pass the config only as PODMEDIC_CONFIG: an overlay rendering it empty
    ran on the embedded defaults (serve injected hostPaths under the default root, the janitor swept
    it, exit 0), PODMEDIC_TLS_CERT_FILE='' was certs/tls.crt. Now refused as `--config ''` is."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"logs: {{hostRoot: {tmp_path / 'root'}}}\n")
    args = [word.format(config=config) for word in words]
    done = podmedic(*args, cwd=scratch, input="", env={**_env(), var: ""})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.splitlines()[-1].endswith(f"an empty file name (from the flag or {var})"), done.stderr
    assert "Traceback" not in done.stderr and not list(scratch.iterdir())


def test_an_empty_kubeconfig_variable_is_unset(tmp_path):
    """KUBECONFIG is kubectl's, not podmedic's: empty is unset (kubectl's convention), in-cluster."""
    config = tmp_path / "config.yaml"
    config.write_text(f"logs: {{hostRoot: {tmp_path / 'root'}}}\n")
    done = podmedic(*JANITOR, "--config", str(config), cwd=tmp_path,
                    env={**_env(), "KUBECONFIG": "", "HOME": str(tmp_path)})  # no ~/.kube/config either
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "in-cluster configuration (no --kubeconfig, KUBECONFIG or ~/.kube/config)" in done.stdout, done.stdout


@pytest.mark.parametrize("size", ["0", "-1", "x"])
def test_a_page_size_below_1_is_a_usage_error(tmp_path, size):
    """The API server reads limit=0 or -1 as "no limit" (one unpaged LIST of every pod): before
    01cdf03 the run went on with exit 0. (Restored: df911cf's rewrite of this file dropped it.)"""
    config = tmp_path / "config.yaml"
    config.write_text(f"logs: {{hostRoot: {tmp_path / 'root'}}}\n")
    done = podmedic(*JANITOR, "--config", str(config), "--page-size", size, "--kubeconfig", "/nonexistent",
                    cwd=tmp_path, env=_env())
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"argument --page-size: '{size}': expected a whole number of 1 or more" in done.stderr, done.stderr
