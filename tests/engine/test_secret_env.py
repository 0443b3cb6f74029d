"""Which variables the forensics collector is told come from Secrets (secret_env), and that the
flags reach both of its callers, the preStop hook and the wrapper, and go again with uninject."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests import pods
from tests.pods import container
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine import secret_env, uninject
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

CONFIG = configfile.load()
SECRET = {"valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}
CONFIG_MAP = {"valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}}
# Kubernetes 1.34+: a key of an env file in a volume, e.g. what an init container fetched from a vault
FILE = {"valueFrom": {"fileKeyRef": {"volumeName": "config", "path": "app.env", "key": "DB_PASSWORD"}}}


@pytest.mark.parametrize("spec, flags", [
    ({}, ()),
    ({"env": [{"name": "GREETING", "value": "hello"}, {"name": "G2", **CONFIG_MAP}]}, ()),
    ({"envFrom": [{"configMapRef": {"name": "cfg"}}]}, ()),
    ({"env": [{"name": "DATABASE_URL", **SECRET}, {"name": "GREETING", "value": "hello"}]},
     ("--redact-env=DATABASE_URL",)),
    # names may hold any printable character but "=" (Kubernetes 1.30): "=" joins them
    ({"env": [{"name": "DB PASS,2", **SECRET}, {"name": "DSN", **SECRET}]}, ("--redact-env=DB PASS,2=DSN",)),
    # an envFrom secretRef without prefix: every name (an empty prefix) but those env declares plainly
    ({"env": [{"name": "GREETING", "value": "hello"}, {"name": "DSN", **SECRET}],
      "envFrom": [{"secretRef": {"name": "app"}}, {"configMapRef": {"name": "cfg"}}]},
     ("--redact-env=DSN", "--redact-env-prefix=", "--plain-env=GREETING")),
    ({"envFrom": [{"prefix": "STRIPE_", "secretRef": {"name": "stripe"}}, {"secretRef": {"name": "app"}}]},
     ("--redact-env-prefix=STRIPE_=",)),
    # a file's key is unseen at admission: a Secret's, also where it overrides an envFrom secretRef
    ({"env": [{"name": "DB", **FILE}, {"name": "GREETING", "value": "hello"}]}, ("--redact-env=DB",)),
    ({"env": [{"name": "P_DB", **FILE}, {"name": "P_X", "value": "x"}], "envFrom": [{"prefix": "P_", "secretRef": {}}]},
     ("--redact-env=P_DB", "--redact-env-prefix=P_", "--plain-env=P_X")),
    # a name both a Secret's and declared plainly counts as a Secret's
    ({"env": [{"name": "X", **SECRET}, {"name": "X", "value": "v"}], "envFrom": [{"prefix": "P_", "secretRef": {}}]},
     ("--redact-env=X", "--redact-env-prefix=P_")),
])
def test_collector_flags(spec: dict[str, Any], flags: tuple[str, ...]) -> None:
    assert secret_env.collector_flags(spec) == flags


def test_the_prestop_and_the_wrapper_get_the_flags_and_uninject_removes_them() -> None:
    app = container(command=["/app"], args=["--dsn", "$(DATABASE_URL)"], ports=[{"containerPort": 80}],
                    env=[{"name": "DATABASE_URL", **SECRET}, {"name": "GREETING", "value": "hello"}],
                    envFrom=[{"secretRef": {"name": "app"}}])
    plain = container("plain", command=["/plain"], env=[{"name": "GREETING", "value": "hello"}])
    pod = pods.pod(app, plain, terminationGracePeriodSeconds=30)
    ns = Namespace("demo", {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled"}, {})
    outcome = engine.inject(copy.deepcopy(pod), StaticSource([ns]).get("demo"), CONFIG)
    injected = pods.apply_checked(pod, outcome.ops)
    flags = ["--redact-env=DATABASE_URL", "--redact-env-prefix=", "--plain-env=GREETING"]
    wrapped, other = injected["spec"]["containers"]
    command = wrapped["command"]
    app_starts = command.index("/app")  # after the wrapper's flags and its "--"
    assert command[app_starts - 4:app_starts - 1] == flags
    assert wrapped["lifecycle"]["preStop"]["exec"]["command"][-3:] == flags
    assert not any("redact" in arg for arg in other["command"] + other["lifecycle"]["preStop"]["exec"]["command"])
    assert uninject.template(injected, CONFIG) and injected == pod


def test_lists_too_long_for_one_argument_fall_back_to_every_name() -> None:
    # Linux refuses one argument over 128 KiB (MAX_ARG_STRLEN): the container could not start.
    # 3500 secretKeyRef names of 38 characters: every name instead; an oversized --plain-env goes
    many = [{"name": f"SECRET_{i:031d}", **SECRET} for i in range(3500)]
    plain = [{"name": f"PLAIN_{i:032d}", "value": "v"} for i in range(3500)]
    assert secret_env.collector_flags({"env": many}) == ("--redact-env-prefix=",)
    assert secret_env.collector_flags({"env": many + [{"name": "G", "value": "v"}]}) == \
        ("--redact-env-prefix=", "--plain-env=G")
    assert secret_env.collector_flags({"env": plain, "envFrom": [{"secretRef": {"name": "app"}}]}) == \
        ("--redact-env-prefix=",)
    prefixes = [{"prefix": f"P{i:037d}_", "secretRef": {"name": "s"}} for i in range(3500)]
    assert secret_env.collector_flags({"envFrom": prefixes}) == ("--redact-env-prefix=",)
    assert all(len(flag) <= secret_env.FLAG_MAX + len("--redact-env-prefix=")
               for flag in secret_env.collector_flags({"env": many + plain[:800]}))
