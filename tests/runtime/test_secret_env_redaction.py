"""Secrets delivered through env (secretKeyRef) or envFrom (secretRef) stay out of the bundles,
with real processes: the engine's flags for a container spec (secret_env), the installed
collector, as the preStop hook and as the wrapper's exit bundle run it. Their names need not
look secret (DATABASE_URL, STRIPE_SK), and the kubelet expands $(DATABASE_URL) in args and in
other variables' values, so the value is on command lines and inside other values too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.conftest import NOBODY, wait_for
from webhook.engine import secret_env
from webhook.engine.features import forensics
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


def prestop_bundle(tb, spec: dict, env: dict[str, str], chained: bool = False) -> str:
    """Run the supervised app with `--dsn $(DATABASE_URL)` and the preStop collector as the
    engine renders them for `spec`, both with the container's environment `env`; chained: as
    the engine chains it before a user's exec preStop (under busybox sh -c)."""
    logs = log_directory(tb)
    flags = secret_env.collector_flags(spec)
    proc = tb.supervise(tb.program("srv.sh", "while :; do sleep 0.1; done"), {"startsecs": "1"}, user=NOBODY,
                        args=("--dsn", DSN), redact=flags, **env)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)
    try:
        argv = toolbox.forensics_argv(str(tb.root), name="app", out_dir=str(logs), budget_seconds=10, redact=flags)
        if chained:
            argv = forensics.chained(argv, [tb.busybox, "true"], mount=str(tb.root))
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


def collector(tb, which: str, flags: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One collector (--collector), as the preStop's collect() runs it, with the container's env."""
    argv = [tb.busybox, "sh", str(tb.root / "forensics"), "--collector", which, "--name", "app", *flags]
    return subprocess.run(argv, env=tb.env(**env), capture_output=True, text=True, timeout=60)


def running(tb, args: tuple[str, ...], env: dict[str, str], flags: tuple[str, ...] = (), body: str = "") -> None:
    """The supervised app srv.sh ARGS (starting `body` first) with the container's env `env`."""
    prog = tb.program("srv.sh", body + "while :; do sleep 0.1; done")
    tb.supervise(prog, {"startsecs": "1"}, args=args, redact=flags, **env)
    wait_for(lambda: tb.pmctl("ready").returncode == 0)


# Since Kubernetes 1.30 a name may hold any printable character but "=", and envFrom passes a
# Secret's keys as they are: busybox sh drops such names from what it starts (the wrapper's
# children, the collector's own helpers), only the original environment block keeps them
ODD_NAMES = ["database-url", "db.url", "DB URL", "it's"]


@pytest.mark.parametrize("spec", [
    {"envFrom": [{"secretRef": {"name": "app"}}]},
    {"env": [{"name": name, **SECRET_KEY_REF} for name in ODD_NAMES]},
], ids=["envFrom", "secretKeyRef"])
def test_a_secret_whose_name_is_no_shell_identifier_stays_out_of_the_prestop_bundle(tb, spec):
    env = {name: DSN + "/" * i for i, name in enumerate(ODD_NAMES)}  # "--dsn" has the first one
    text = prestop_bundle(tb, spec, env)
    assert "hunter2" not in text, [line for line in text.splitlines() if "hunter2" in line]
    assert "--dsn <redacted>" in text


@pytest.mark.parametrize("chained", [False, True], ids=["alone", "chained"])
def test_a_secret_whose_name_is_no_shell_identifier_stays_out_of_a_chained_prestop_bundle(tb, chained):
    # the collector is then a child of busybox sh -c, whose block lacks database-url: the values
    # come from the block of that shell, which the kubelet exec'd
    spec = {"env": [{"name": "database-url", **SECRET_KEY_REF}, {"name": "LINK", "value": "see $(database-url)"}]}
    text = prestop_bundle(tb, spec, {"database-url": DSN, "LINK": f"see {DSN}"}, chained=chained)
    assert "hunter2" not in text, [line for line in text.splitlines() if "hunter2" in line]
    assert "--dsn <redacted>" in text and "LINK=see <redacted>" in text


def test_a_secret_whose_name_is_no_shell_identifier_stays_out_of_the_exit_bundle(tb):
    logs = log_directory(tb)
    proc = tb.supervise(tb.program("crash.sh", "sleep 1.2; exit 3"), {"startsecs": "1", "autorestart": "false"},
                        user=NOBODY, exit_bundles=(str(logs), 5), args=("--dsn", DSN),
                        redact=secret_env.collector_flags({"envFrom": [{"secretRef": {"name": "app"}}]}),
                        **{"database-url": DSN})
    proc.communicate(timeout=30)
    text = bundle_text(logs)
    assert "exit code 3" in text and "--dsn <redacted>" in text
    assert "hunter2" not in text, [line for line in text.splitlines() if "hunter2" in line]


def test_names_that_look_secret_hide_values_in_the_environment_listing_only(tb):
    # no Secret-sourced variable: the name rule hides AUTH_ENABLED's value in redacted_env, and
    # nothing else: "true", "redis" and a directory on command lines and in other values stay
    env = {"AUTH_ENABLED": "true", "SESSION_STORE": "redis", "SSL_CERT_DIR": "/etc/ssl/certs",
           "REDIS_HOST": "redis.svc"}
    running(tb, ("--tls=true", "--host", "redis.svc", "--ca", "/etc/ssl/certs/ca.pem"), env)
    processes = collector(tb, "processes", (), env).stdout
    assert "--tls=true --host redis.svc --ca /etc/ssl/certs/ca.pem" in processes, processes
    listing = collector(tb, "redacted_env", (), env).stdout
    assert "AUTH_ENABLED=<redacted>" in listing and "SSL_CERT_DIR=<redacted>" in listing
    assert "REDIS_HOST=redis.svc" in listing, listing


def test_every_name_leaves_the_runtimes_own_variables_unsearched(tb):
    flags = secret_env.collector_flags({"envFrom": [{"secretRef": {"name": "app"}}]})
    env = {"HOME": "/home/app", "HOSTNAME": "web-6f7c9", "DB_SERVICE_HOST": "10.96.0.7",
           "DB_PORT": "tcp://10.96.0.7:5432", "KUBERNETES_SERVICE_HOST": "10.96.0.1", "DSN": DSN}
    args = ("-jar", "/home/app/app.jar", "--node", "web-6f7c9", "--db", "10.96.0.7", "--dsn", DSN)
    running(tb, args, env, flags)
    processes = collector(tb, "processes", flags, env).stdout
    assert "-jar /home/app/app.jar --node web-6f7c9 --db 10.96.0.7 --dsn <redacted>" in processes, processes
    assert "hunter2" not in processes


# Every name is a Secret's: an unprefixed envFrom secretRef, or secretKeyRef names over 32 KiB
EVERY_NAME = [{"envFrom": [{"secretRef": {"name": "app"}}]},
              {"env": [{"name": f"SECRET_{i:030d}", **SECRET_KEY_REF} for i in range(900)]}]
# the kubelet's Service links of a Service "kubernetes" (port https) and an IPv6 Service "db"
LINKS = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
         "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
         "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
         "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
         "DB_SERVICE_HOST": "fd00::7", "DB_SERVICE_PORT": "5432", "DB_PORT": "tcp://[fd00::7]:5432",
         "DB_PORT_5432_TCP": "tcp://[fd00::7]:5432", "DB_PORT_5432_TCP_ADDR": "fd00::7"}


@pytest.mark.parametrize("spec", EVERY_NAME, ids=["envFrom", "over-32KiB"])
def test_every_name_searches_a_runtime_looking_name_whose_value_is_not_the_runtimes(tb, spec):
    # a Secret's keys may look like the runtime's (KUBERNETES_*, *_PORT): only a value of the
    # runtime's shape is left unsearched, the kubelet's links still hide nothing
    flags = secret_env.collector_flags(spec)
    assert flags == ("--redact-env-prefix=",)
    token, proxy = "eyJhbGciOi." + STRIPE, "tcp://u:pw@proxy:3128"
    env = {**LINKS, "KUBERNETES_BEARER_TOKEN": token, "UPSTREAM_PORT": proxy, "HOME": "/home/app"}
    args = ("--api", "tcp://10.96.0.1:443", "--db", "fd00::7", "--ports", "5432,443", "--jar", "/home/app/a.jar",
            "--header", token, "--proxy", proxy)
    running(tb, args, env, flags)
    processes = collector(tb, "processes", flags, env).stdout
    assert "--api tcp://10.96.0.1:443 --db fd00::7 --ports 5432,443 --jar /home/app/a.jar" in processes, processes
    assert "--header <redacted> --proxy <redacted>" in processes, processes
    assert STRIPE not in processes and "u:pw" not in processes


def test_a_secret_longer_than_the_kept_command_line_is_never_cut_through(tb):
    big = "BEGINSECRET" + "x" * 9000 + "ENDSECRET"
    flags = secret_env.collector_flags({"env": [{"name": "DATABASE_URL", **SECRET_KEY_REF}]})
    running(tb, ("--dsn", big), {"DATABASE_URL": big}, flags)
    processes = collector(tb, "processes", flags, {"DATABASE_URL": big}).stdout
    assert "SECRET" not in processes and "--dsn <redacted>" in processes, processes[:500]


def test_a_secret_past_the_kept_command_line_never_shows_its_first_bytes(tb):
    """Twenty copies of Secret A, each hidden as `<redacted>` (10 bytes for 28), pull what follows
    into the kept 4096 bytes: a Secret B that started just before the end of what was searched
    (4096 bytes and the longest value's length more), cut there and so never found, showed its
    first 15 bytes. The whole command line is searched now."""
    a, b = "AAAA-first-secret-value-AAAA", "B-second-secret-0123456789"
    argv = ["python3", "-c", "import time; time.sleep(60)", *[a] * 20]
    searched = 4096 + len(a)  # what the collector searched before
    argv += ["f" * (searched - sum(len(arg) + 1 for arg in argv) - 1 - 15), b]  # b starts 15 bytes before its end
    app = subprocess.Popen(argv, executable=sys.executable)
    try:
        wait_for(lambda: Path(f"/proc/{app.pid}/cmdline").read_bytes().count(b"\0") == len(argv))
        processes = collector(tb, "processes", ("--redact-env=A=B",), {"A": a, "B": b}).stdout
    finally:
        app.kill()
        app.wait()
    [line] = [ln for ln in processes.splitlines() if ln.startswith(f"=== pid {app.pid}: ")]
    assert "second-secret" not in line and line.endswith(" <redacted> "), line[-80:]


def test_every_process_is_listed_with_hundreds_of_service_links_under_every_name(tb):
    # an unprefixed envFrom secretRef in a namespace of 100 Services (7 variables each): the
    # processes collector keeps within its 3 s slice with 115 processes
    env = {"DSN": DSN}
    for i in range(100):
        ip = f"10.96.{i}.{i + 10}"
        env.update({f"S{i}_SERVICE_HOST": ip, f"S{i}_SERVICE_PORT": "8080", f"S{i}_PORT": f"tcp://{ip}:8080",
                    f"S{i}_PORT_8080_TCP": f"tcp://{ip}:8080", f"S{i}_PORT_8080_TCP_PROTO": "tcp",
                    f"S{i}_PORT_8080_TCP_PORT": "8080", f"S{i}_PORT_8080_TCP_ADDR": ip})
    flags = secret_env.collector_flags({"envFrom": [{"secretRef": {"name": "app"}}]})
    running(tb, ("--dsn", DSN), env, flags, body="i=0; while [ $i -lt 110 ]; do sleep 100 & i=$((i+1)); done; ")
    wait_for(lambda: collector(tb, "processes", (), {}).stdout.count("=== pid") >= 115)
    argv = [tb.busybox, "timeout", "3", tb.busybox, "sh", str(tb.root / "forensics"), "--collector", "processes", "--name", "app", *flags]
    done = subprocess.run(argv, env=tb.env(**env), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.count("=== pid") >= 115, (done.returncode, done.stdout.count("=== pid"))
    assert "hunter2" not in done.stdout and "--dsn <redacted>" in done.stdout
