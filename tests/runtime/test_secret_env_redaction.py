"""Secrets delivered through env (secretKeyRef) or envFrom (secretRef) stay out of the bundles,
with real processes: the engine's flags for a container spec (secret_env), the installed
collector, as the preStop hook and as the wrapper's exit bundle run it. Their names need not
look secret (DATABASE_URL, STRIPE_SK), and the kubelet expands $(DATABASE_URL) in args and in
other variables' values, so the value is on command lines and inside other values too."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.runtime.conftest import NOBODY, wait_for
from webhook.engine import secret_env
from webhook.toolbox import argv as toolbox

DSN = "postgres://u:hunter2@db"
STRIPE = "sk_live_" + os.urandom(6).hex()
SECRET_KEY_REF = {"valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}
# DATABASE_URL from a Secret, STRIPE_SK from a prefixed envFrom, LINK composed of a Secret's value
SPEC = {"env": [{"name": "DATABASE_URL", **SECRET_KEY_REF}, {"name": "GREETING", "value": "hello"},
                {"name": "LINK", "value": "see $(DATABASE_URL)"}],
        "envFrom": [{"prefix": "STRIPE_", "secretRef": {"name": "stripe"}}]}
# the container's environment as the kubelet makes it: the app's, the wrapper's, the preStop's
ENV = {"DATABASE_URL": DSN, "STRIPE_SK": STRIPE, "GREETING": "hello", "LINK": f"see {DSN}"}


def log_directory(tb) -> Path:
    logs = tb.work / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    return logs


def bundle_text(logs: Path) -> str:
    [bundle] = [p for p in (logs / "forensics").iterdir() if p.is_dir()]
    return "".join(f"=== {f.name}\n{f.read_text(errors='replace')}" for f in sorted(bundle.rglob("*")) if f.is_file())


def prestop_bundle(tb, spec: dict, env: dict[str, str]) -> str:
    """Run the supervised app with `--dsn $(DATABASE_URL)` and the preStop collector as the
    engine renders them for `spec`, both with the container's environment `env`."""
    logs = log_directory(tb)
    flags = secret_env.collector_flags(spec)
    proc = tb.supervise(tb.program("srv.sh", "while :; do sleep 0.1; done"), {"startsecs": "1"}, user=NOBODY,
                        args=("--dsn", DSN), redact=flags, **env)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    try:
        argv = toolbox.forensics_argv(str(tb.root), name="app", out_dir=str(logs), budget_seconds=10, redact=flags)
        done = subprocess.run(argv, env=tb.env(**env), capture_output=True, text=True, timeout=20,
                              user=NOBODY, group=NOBODY, extra_groups=[])
        assert done.returncode == 0, done.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=20)
    return bundle_text(logs)


def test_prestop_bundle_has_no_secret_sourced_value(tb):
    text = prestop_bundle(tb, SPEC, ENV)
    assert "hunter2" not in text and STRIPE not in text, text
    assert "DATABASE_URL=<redacted>" in text and "STRIPE_SK=<redacted>" in text
    assert "GREETING=hello" in text and "LINK=see <redacted>" in text
    assert "--dsn <redacted>" in text  # the app's, the wrapper's and tini's command lines


def test_unprefixed_envfrom_redacts_every_value_but_the_declared_ones(tb):
    spec = {"env": [{"name": "GREETING", "value": "hello"}], "envFrom": [{"secretRef": {"name": "app"}}]}
    text = prestop_bundle(tb, spec, {"DSN": DSN, "GREETING": "hello"})
    assert "hunter2" not in text and "DSN=<redacted>" in text and "GREETING=hello" in text, text
    assert "\nPODMEDIC_STATE_DIR=/" in text  # podmedic's own are no Secret's
    assert "--dsn <redacted>" in text


def test_exit_bundle_of_a_crash_has_no_secret_sourced_value(tb):
    logs = log_directory(tb)
    proc = tb.supervise(tb.program("crash.sh", "sleep 1.2; exit 3"), {"startsecs": "1", "autorestart": "false"},
                        user=NOBODY, exit_bundles=(str(logs), 5), args=("--dsn", DSN),
                        redact=secret_env.collector_flags(SPEC), **ENV)
    proc.communicate(timeout=30)
    text = bundle_text(logs)
    assert "exit code 3" in text and "--dsn <redacted>" in text  # tini's and the wrapper's command lines
    assert "hunter2" not in text and STRIPE not in text, text
