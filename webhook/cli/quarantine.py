"""`podmedic quarantine`: the controller (docs/quarantine.md), and `quarantine list | release
POD | delete POD` for the people debugging (also `kubectl podmedic quarantine ...` through the
`kubectl-podmedic` console script, a kubectl plugin)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import time
from typing import Any

from webhook.cli.config import load
from webhook.cli.env import add_certificate_options, env, env_flag, env_kubeconfig, host_port, path, seconds, whole
from webhook.engine.config import ConfigError, GlobalConfig
from webhook.kube.client import kube_api_client
from webhook.quarantine.cluster import Cluster
from webhook.quarantine.decide import Marks, Owner, saved_state
from webhook.quarantine.patches import release_ops
from webhook.quarantine.reasons import RELEASED_EVENT
from webhook.server.tls import HANDSHAKE_TIMEOUT, CertificateReloader, configure_handshake_timeout

NAME = "podmedic quarantine"


def _common() -> argparse.ArgumentParser:
    """--config and --kubeconfig, accepted before or after the sub-command (SUPPRESS: a
    sub-command's default must not overwrite what was given before it)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=path("PODMEDIC_CONFIG"), default=argparse.SUPPRESS,
                        help="global configuration YAML (the annotation prefix, the defaults) [PODMEDIC_CONFIG]")
    common.add_argument("--kubeconfig", type=path(), default=argparse.SUPPRESS, help="kubeconfig; default $KUBECONFIG, else ~/.kube/config, else in-cluster")
    return common


def register(sub: Any) -> None:
    common = _common()
    p = sub.add_parser("quarantine", parents=[common], help="keep long-NotReady pods for debugging, replaced by their owner",
                       description="Without a sub-command: run the quarantine controller (leader-elected; every "
                       "flag has an environment equivalent in brackets). With one: list, release or delete "
                       "quarantined pods.")
    p.set_defaults(config=env("PODMEDIC_CONFIG"), kubeconfig=env_kubeconfig(), func=run)
    p.add_argument("--interval", type=seconds("PODMEDIC_QUARANTINE_INTERVAL"),
                   default=env("PODMEDIC_QUARANTINE_INTERVAL", "10"),
                   help="seconds between passes while leading [PODMEDIC_QUARANTINE_INTERVAL]")
    p.add_argument("--dry-run", action="store_true",
                   help="decide and log each patch, write nothing [PODMEDIC_QUARANTINE_DRY_RUN: true/false/1/0]")
    p.add_argument("--identity", default=env("POD_NAME", socket.gethostname()),
                   help="this replica's name in the Lease [POD_NAME]")
    p.add_argument("--lease-namespace", default=env("POD_NAMESPACE", "podmedic-system"),
                   help="namespace of the Lease [POD_NAMESPACE]")
    p.add_argument("--lease-name", default="podmedic-quarantine", help="name of the Lease")
    p.add_argument("--lease-duration", type=whole(1), default=15,
                   help="seconds a Lease holds without renewal; a stopped leader is replaced after this")
    p.add_argument("--renew-period", type=seconds(), default=2.0, help="seconds between renewals (and lease attempts)")
    p.add_argument("--metrics-bind", type=host_port("PODMEDIC_METRICS_BIND", empty=True),
                   default=env("PODMEDIC_METRICS_BIND", ""),
                   help="HOST:PORT of /metrics over TLS; empty: no metrics server [PODMEDIC_METRICS_BIND]")
    p.add_argument("--tls-cert-file", type=path("PODMEDIC_TLS_CERT_FILE"), default=env("PODMEDIC_TLS_CERT_FILE"),
                   help="certificate of the metrics server [PODMEDIC_TLS_CERT_FILE]")
    p.add_argument("--tls-private-key-file", type=path("PODMEDIC_TLS_PRIVATE_KEY_FILE"), default=env("PODMEDIC_TLS_PRIVATE_KEY_FILE"),
                   help="its private key [PODMEDIC_TLS_PRIVATE_KEY_FILE]")
    add_certificate_options(p, "a metrics connection gets to complete its TLS handshake and start its request",
                            HANDSHAKE_TIMEOUT)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help="the quarantined pods")
    ls.add_argument("-n", "--namespace", help="one namespace; default all")
    ls.add_argument("-o", "--output", choices=("table", "json"), default="table")
    ls.set_defaults(func=cmd_list)
    for name, func, text in (("release", cmd_release, "restore a quarantined pod's labels: its owner adopts it again"),
                             ("delete", cmd_delete, "delete a quarantined pod (and only such a pod)")):
        one = actions.add_parser(name, parents=[common], help=text)
        one.add_argument("pod", metavar="POD")
        one.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace, else default")
        one.set_defaults(func=func)


def _setup(args: argparse.Namespace) -> tuple[GlobalConfig, Cluster]:
    config = load(args.config)
    return config, Cluster(kube_api_client(args.kubeconfig))


def _fail(message: str) -> int:
    print(f"{NAME}: {message}", file=sys.stderr)
    return 1


def _api_error(exc: Exception, what: str) -> int:
    status = getattr(exc, "status", None)
    if status == 404:
        return _fail(f"{what}: not found")
    if status == 409:
        return _fail(f"{what}: the pod changed meanwhile; nothing was done, run the command again")
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return _fail(f"{what}: {f'HTTP {status} ' if status else ''}{reason}")


def run(args: argparse.Namespace) -> int:
    """The controller: until SIGTERM or SIGINT (then the Lease is handed over). Imported here:
    building the parser must not import prometheus_client (`serve` configures it first)."""
    from webhook.kube.namespaces import KubeSource
    from webhook.quarantine.controller import Controller, Options
    from webhook.quarantine.pods import PodCache

    try:
        dry_run = args.dry_run or env_flag("PODMEDIC_QUARANTINE_DRY_RUN")
        config, cluster = _setup(args)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    if args.metrics_bind and not (args.tls_cert_file and args.tls_private_key_file):
        return _fail("--metrics-bind serves TLS only: give --tls-cert-file and --tls-private-key-file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    if args.metrics_bind:
        # The webhook's reloader and TLS settings: a renewed Secret is served without a restart,
        # and each connection handshakes in its own thread, within the handshake timeout.
        from webhook.server.metrics_https import serve_metrics

        host, _, port = args.metrics_bind.rpartition(":")
        configure_handshake_timeout(args.handshake_timeout)
        reloader = CertificateReloader(args.tls_cert_file, args.tls_private_key_file,
                                       check_interval=args.cert_reload_interval)
        if not reloader.loaded:  # a missing, broken, encrypted or expired pair: as at start before
            return _fail(f"cannot serve /metrics on {args.metrics_bind}: {reloader.problem}")
        try:
            serve_metrics(host or "0.0.0.0", int(port), reloader)
        except OSError as exc:  # an address in use
            return _fail(f"cannot serve /metrics on {args.metrics_bind}: {exc}")
    options = Options(interval=args.interval, dry_run=dry_run, identity=args.identity,
                      lease_namespace=args.lease_namespace, lease_name=args.lease_name,
                      lease_seconds=args.lease_duration, renew_seconds=args.renew_period)
    if not 0 < options.renew_seconds < options.lease_seconds / 2:
        return _fail("--renew-period must be positive and under half of --lease-duration")
    namespaces = KubeSource(cluster.core.api_client, limit_ranges=False)  # annotations only
    controller = Controller(config, cluster, PodCache(cluster.core), namespaces, options)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: controller.stop())
    logging.getLogger("podmedic.quarantine").info("%s starting as %s%s", NAME, options.identity,
                                                  " (dry-run: nothing is written)" if options.dry_run else "")
    controller.run()
    return 0


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    try:
        from kubernetes import config as kubeconfig

        _, active = kubeconfig.list_kube_config_contexts(config_file=args.kubeconfig)
        return str(active["context"].get("namespace") or "default")
    except Exception:  # in-cluster or no context: the usual default
        return "default"


def cmd_list(args: argparse.Namespace) -> int:
    try:
        config, cluster = _setup(args)
        pods = cluster.quarantined_pods(Marks(config.prefix).label, args.namespace)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        return _api_error(exc, "list")
    marks = Marks(config.prefix)
    rows = []
    for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        annotations = pod["metadata"].get("annotations") or {}
        owner = Owner.parse(annotations.get(marks.owner))
        rows.append({"namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"],
                     "owner": f"{owner.kind}/{owner.name}" if owner else "-",
                     "since": annotations.get(marks.at, "-"), "expires": annotations.get(marks.expires, "never"),
                     "reason": annotations.get(marks.reason, "-"), "observed": annotations.get(marks.observed, "")})
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("namespace", "pod", "owner", "since", "expires", "reason")
    widths = [max([len(c)] + [len(r[c]) for r in rows]) for c in columns]
    for line in [dict(zip(columns, (c.upper() for c in columns))), *rows]:
        print("  ".join(str(line[c]).ljust(w) for c, w in zip(columns, widths)).rstrip())
    return 0


def _quarantined(args: argparse.Namespace) -> tuple[GlobalConfig, Cluster, dict[str, Any]]:
    config, cluster = _setup(args)
    pod = cluster.get_pod(_namespace(args), args.pod)
    marks = Marks(config.prefix)
    if (pod["metadata"].get("labels") or {}).get(marks.label) != "true":
        raise ValueError(f"pod {pod['metadata']['namespace']}/{args.pod} is not quarantined (no label {marks.label}=true)")
    return config, cluster, pod


def cmd_release(args: argparse.Namespace) -> int:
    what = f"release {args.pod}"
    try:
        config, cluster, pod = _quarantined(args)
        marks = Marks(config.prefix)
        saved = saved_state(pod, marks)["labels"]
        now = time.time()
        cluster.patch_pod(pod, release_ops(pod, marks, now))
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        return _api_error(exc, what)
    meta = pod["metadata"]
    owner = Owner.parse((meta.get("annotations") or {}).get(marks.owner))
    restored = ", ".join(f"{k}={v}" for k, v in sorted(saved.items())) or "none"
    message = f"labels restored ({restored}); {marks.released} set, so the controller leaves it alone"
    cluster.event(meta["namespace"], "Pod", meta["name"], meta["uid"], RELEASED_EVENT, message, False, now, NAME)
    if owner:
        cluster.event(meta["namespace"], owner.kind, owner.name, owner.uid, RELEASED_EVENT,
                      f"pod {meta['name']}: {message}", False, now, NAME)
    print(f"released {meta['namespace']}/{meta['name']}: {message}.")
    if owner and saved:
        print(f"Its owner ({owner.kind} {owner.name}) adopts it again and now has one pod more than it wants: "
              "it scales the surplus down, and a NotReady pod is the first it deletes -- possibly this one.")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    try:
        config, cluster, pod = _quarantined(args)
        cluster.delete_pod(pod)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        return _api_error(exc, f"delete {args.pod}")
    print(f"deleted {pod['metadata']['namespace']}/{pod['metadata']['name']} (quarantined since "
          f"{(pod['metadata'].get('annotations') or {}).get(Marks(config.prefix).at, '?')}).")
    return 0

