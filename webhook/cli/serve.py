"""`podmedic serve`: its flags (each with an environment equivalent), the checks that can fail
before gunicorn forks, then webhook.server.gunicorn runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import tempfile
from typing import Any

from webhook.cli.config import load
from webhook.cli.env import add_certificate_options, env, env_flag, env_kubeconfig, host_port, path, whole
from webhook.engine.config import ConfigError
from webhook.kube.namespaces import source_from_args
from webhook.server.gunicorn import Server
from webhook.server.tls import HANDSHAKE_TIMEOUT, server_context

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the admission webhook (gunicorn, TLS)",
                       description="Serve POST /mutate, /healthz, /readyz and /metrics over TLS. "
                       "Every flag has an environment equivalent (shown in brackets).")
    p.add_argument("--bind", type=host_port("PODMEDIC_BIND"), default=env("PODMEDIC_BIND", "0.0.0.0:8443"), help="HOST:PORT [PODMEDIC_BIND]")
    p.add_argument("--tls-cert-file", type=path("PODMEDIC_TLS_CERT_FILE"), default=env("PODMEDIC_TLS_CERT_FILE", "certs/tls.crt"),
                   help="serving certificate (PEM), re-read when its content changes [PODMEDIC_TLS_CERT_FILE]")
    p.add_argument("--tls-private-key-file", type=path("PODMEDIC_TLS_PRIVATE_KEY_FILE"), default=env("PODMEDIC_TLS_PRIVATE_KEY_FILE", "certs/tls.key"),
                   help="its private key (PEM) [PODMEDIC_TLS_PRIVATE_KEY_FILE]")
    p.add_argument("--config", type=path("PODMEDIC_CONFIG"), default=env("PODMEDIC_CONFIG"),
                   help="global configuration YAML merged over the embedded defaults [PODMEDIC_CONFIG]")
    p.add_argument("--namespaces-file", type=path("PODMEDIC_NAMESPACES_FILE"), default=env("PODMEDIC_NAMESPACES_FILE"),
                   help="standalone mode: Namespace objects as `kubectl get ns -o yaml` prints them, "
                   "instead of watching the API [PODMEDIC_NAMESPACES_FILE]")
    p.add_argument("--kubeconfig", type=path(), default=env_kubeconfig(),
                   help="kubeconfig for the namespace watch; default $KUBECONFIG, else ~/.kube/config, else in-cluster")
    p.add_argument("--workers", type=whole(1, var="PODMEDIC_WORKERS"), default=env("PODMEDIC_WORKERS", "2"),
                   help="gunicorn worker processes [PODMEDIC_WORKERS]")
    p.add_argument("--threads", type=whole(1, var="PODMEDIC_THREADS"), default=env("PODMEDIC_THREADS", "2"),
                   help="threads per worker [PODMEDIC_THREADS]")
    p.add_argument("--graceful-timeout", type=whole(0, var="PODMEDIC_GRACEFUL_TIMEOUT"),
                   default=env("PODMEDIC_GRACEFUL_TIMEOUT", "20"),
                   help="seconds to finish in-flight reviews after SIGTERM [PODMEDIC_GRACEFUL_TIMEOUT]")
    add_certificate_options(p, "a new connection gets to complete its TLS handshake and start its first request",
                            HANDSHAKE_TIMEOUT)
    p.add_argument("--reuse-port", action="store_true",
                   help="SO_REUSEPORT: several servers on one address, for rolling restarts [PODMEDIC_REUSE_PORT: true/false/1/0]")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Validate everything that can be validated before forking, then run gunicorn."""
    try:
        config = load(args.config)
        args.reuse_port = args.reuse_port or env_flag("PODMEDIC_REUSE_PORT")
    except (ConfigError, ValueError) as exc:
        print(f"podmedic serve: {exc}")
        return 1
    try:
        server_context(args.tls_cert_file, args.tls_private_key_file)
    except (OSError, ssl.SSLError) as exc:
        print(f"podmedic serve: cannot load {args.tls_cert_file} / {args.tls_private_key_file}: {exc} "
              "(make certs, or podmedic certs init)")
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    architectures = config.toolbox.architectures  # resolved from the toolbox's record: say which
    log.info("toolbox.architectures: %s", ", ".join(sorted(architectures)) if architectures is not None
             else "none checked (no toolbox architecture recorded)")
    try:
        source_from_args(args.namespaces_file, args.kubeconfig, config.logs.watched_claim)  # a bad file or kubeconfig stops start-up
    except (OSError, ValueError) as exc:
        print(f"podmedic serve: {exc}")
        return 1
    # Before anything imports prometheus_client: it picks its multiprocess value class at import.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="podmedic-metrics-")
    Server(args, config).run()
    return 0
