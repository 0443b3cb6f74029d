"""`podmedic certs init | check | install`: the webhook's PKI from the command line. The work is
in webhook.pki (a directory: pki.local; the cluster: pki.cluster); this module parses flags and
prints what was done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from webhook.cli.env import path, whole
from webhook.kube.client import kube_api_client
from webhook.pki.cluster import CA_SECRET, Cluster, InstallError, Request, SecretRef, install
from webhook.pki.local import PkiPaths, init, load_cert, load_chain, load_key
from webhook.pki.x509 import (CA_DAYS, DEFAULT_NAMESPACE, DEFAULT_SERVICE, RENEW_AFTER, SERVING_DAYS, CertError,
                              check_pair, days_left, describe_names, due_for_renewal, iso, requested_names, sans)

# Days of validity a flag may ask for: 0 would issue an already-expired certificate, and a date
# beyond year 9999 cannot be written in a certificate (nor computed).
MAX_DAYS = 100 * 366


def cmd_init(args: argparse.Namespace) -> int:
    try:
        dns, ips = requested_names(args.service, args.namespace, args.host)
        notes = init(PkiPaths.in_dir(args.out), dns, ips, days=args.days, ca_days=args.ca_days, force=args.force)
    except CertError as exc:
        print(f"podmedic certs init: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"podmedic certs init: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    print("\n".join(notes))
    return 0


def _report(cert_path: Path, chain: Sequence[x509.Certificate], ca_path: Path, ca: x509.Certificate) -> None:
    leaf = chain[0]
    print(f"certificate {cert_path}")
    print(f"  subject:   {leaf.subject.rfc4514_string()}")
    print(f"  issuer:    {leaf.issuer.rfc4514_string()}")
    print(f"  SANs:      {describe_names(*sans(leaf)) or '(none)'}")
    print(f"  not after: {iso(leaf.not_valid_after_utc)} ({days_left(leaf):.1f} days left)")
    print(f"CA          {ca_path}")
    print(f"  subject:   {ca.subject.rfc4514_string()}")
    print(f"  not after: {iso(ca.not_valid_after_utc)} ({days_left(ca):.1f} days left)")


def cmd_check(args: argparse.Namespace) -> int:
    base = PkiPaths.in_dir(args.dir)
    cert_path, key_path = Path(args.cert or base.cert), Path(args.key or base.key)
    ca_path = Path(args.ca or base.ca_cert)
    try:
        dns, ips = requested_names(args.service, args.namespace, args.host)
        chain, key, ca = load_chain(cert_path), load_key(key_path), load_cert(ca_path)
    except CertError as exc:
        print(f"podmedic certs check: {exc}", file=sys.stderr)
        return 1
    _report(cert_path, chain, ca_path, ca)
    problems = check_pair(chain, key, ca, dns, ips)
    for problem in problems:
        print(f"podmedic certs check: {cert_path}: {problem}", file=sys.stderr)
    if problems:
        return 1
    if due_for_renewal(chain[0]):
        print(f"note: past {RENEW_AFTER:.0%} of its lifetime; renew it (podmedic certs init)")
    print("ok")
    return 0


def add_name_flags(parser: argparse.ArgumentParser, service: str | None, namespace: str | None = DEFAULT_NAMESPACE,
                   namespace_default: str = DEFAULT_NAMESPACE) -> None:
    """--service, --namespace and --host; `namespace_default` says what a None `namespace` becomes."""
    parser.add_argument("--service", default=service,
                        help="Service name: adds DNS SANs NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local"
                        + (f" (default {service})" if service else " (checked only when given)"))
    parser.add_argument("--namespace", default=namespace, help=f"the Service's namespace (default {namespace_default})")
    parser.add_argument("--host", action="append", default=[], metavar="DNS-OR-IP",
                        help="extra name; IP literals become IP SANs (repeatable)")


def _add_init(commands: Any) -> None:
    p = commands.add_parser("init", help="write a CA and a serving certificate",
                            description="Write ca.crt, ca.key, tls.crt and tls.key. Idempotent: a usable "
                            "CA is kept, a serving pair valid for the requested names is kept until two "
                            "thirds of its lifetime have passed, then renewed from the same CA.")
    p.add_argument("--out", type=path(), default="certs", help="directory (default certs)")
    add_name_flags(p, DEFAULT_SERVICE)
    p.add_argument("--days", type=whole(1, MAX_DAYS), default=SERVING_DAYS,
                   help=f"serving certificate validity (default {SERVING_DAYS})")
    p.add_argument("--ca-days", type=whole(1, MAX_DAYS), default=CA_DAYS, help=f"CA validity for a new CA (default {CA_DAYS})")
    p.add_argument("--force", action="store_true",
                   help="re-issue the serving pair even if it is valid, and replace an unusable CA")
    p.set_defaults(func=cmd_init)


def _add_check(commands: Any) -> None:
    p = commands.add_parser("check", help="show a serving certificate and fail if clients would reject it",
                            description="Print subject, SANs and expiry; exit 1 when the certificate is "
                            "expired, does not match its key, is not signed by the CA, or lacks a name.")
    p.add_argument("--dir", type=path(), default="certs", help="directory holding tls.crt, tls.key, ca.crt (default certs)")
    p.add_argument("--cert", type=path(), help="serving certificate (default DIR/tls.crt)")
    p.add_argument("--key", type=path(), help="its private key (default DIR/tls.key)")
    p.add_argument("--ca", type=path(), help="CA certificate (default DIR/ca.crt)")
    add_name_flags(p, None)
    p.set_defaults(func=cmd_check)


def register(sub: Any) -> None:
    p = sub.add_parser("certs", help="the webhook's PKI: a CA and its serving certificate, locally or in the cluster",
                       description="Create and check the CA and serving certificate the webhook needs, "
                       "and install (and renew) them in the cluster.")
    commands = p.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    for add in (_add_init, _add_check, _add_install):
        add(commands)


def secret_ref(text: str) -> SecretRef:
    """`NS/NAME` (argparse type)."""
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAMESPACE/NAME")
    return SecretRef(namespace, name)


def cmd_install(args: argparse.Namespace) -> int:
    try:
        dns, ips = requested_names(args.service, args.namespace or args.secret.namespace, args.host)
        request = Request(args.webhook, args.secret, args.ca_secret, dns, ips, args.days, args.ca_days,
                          args.rotate_ca, Path(args.from_dir) if args.from_dir else None)
        try:
            api_client = kube_api_client(args.kubeconfig)
        except ValueError as exc:
            raise InstallError(str(exc)) from None
        install(Cluster(api_client), request, dt.datetime.now(dt.timezone.utc), print)
    except (InstallError, CertError) as exc:
        print(f"podmedic certs install: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_install(commands: Any) -> None:
    p = commands.add_parser(
        "install", help="put the CA and serving certificate into the cluster, and renew them",
        description="Keep the CA in Secret NS/--ca-secret, the serving pair in the kubernetes.io/tls Secret "
        "--secret, and the CA in the caBundle of every webhook of --webhook. Idempotent: writes only what "
        "differs. Run it daily (CronJob) to renew: the serving certificate after two thirds of its lifetime, "
        "the CA after two thirds of its own, keeping the old CA in the bundle for a day meanwhile.")
    p.add_argument("--webhook", required=True, metavar="NAME", help="the MutatingWebhookConfiguration")
    p.add_argument("--secret", required=True, type=secret_ref, metavar="NS/NAME",
                   help="the kubernetes.io/tls Secret the webhook pods mount")
    p.add_argument("--ca-secret", default=CA_SECRET, metavar="NAME",
                   help=f"the Secret holding the CA and its key, in the namespace of --secret (default {CA_SECRET})")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-dir", type=path(), metavar="DIR", help="upload this local PKI (podmedic certs init --out DIR) "
                        "instead of keeping or generating one in the cluster")
    source.add_argument("--rotate-ca", action="store_true",
                        help="replace the CA now (the old one stays in the bundle for the overlap)")
    # A pod mounts Secrets of its own namespace only, and its Service lives there too.
    add_name_flags(p, DEFAULT_SERVICE, None, "the namespace of --secret")
    p.add_argument("--days", type=whole(1, MAX_DAYS), default=SERVING_DAYS,
                   help=f"serving certificate validity (default {SERVING_DAYS})")
    p.add_argument("--ca-days", type=whole(1, MAX_DAYS), default=CA_DAYS, help=f"validity of a new CA (default {CA_DAYS})")
    p.add_argument("--kubeconfig", type=path(), help="kubeconfig file (default $KUBECONFIG, else ~/.kube/config, else the in-cluster service account)")
    p.set_defaults(func=cmd_install)
