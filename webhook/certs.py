"""`podmedic certs`: the development PKI -- a CA and the webhook's serving certificate.

The API server only calls a webhook over TLS, and it trusts the webhook through the
`caBundle` of the webhook configuration, not through the system roots. So the PKI has two
levels with deliberately different lifetimes:

- the CA (`ca.crt`, `ca.key`, 10 years by default) is the trust anchor pinned in every
  `caBundle`. Replacing it means re-patching every webhook configuration, so `init` keeps a
  usable CA and never replaces it unless told (`--force` replaces only an unusable one);
- the serving certificate (`tls.crt`, `tls.key`, 1 year by default) is cheap: re-issuing it
  from the same CA touches nothing in the cluster, and the server picks it up without a
  restart (webhook/tls.py). `init` renews it once two thirds of its lifetime have passed (the
  kubelet and cert-manager rule), so a periodic `init` (or a later `certs install` in a
  CronJob) replaces it with a third of its life still left: a failed renewal has months to be
  noticed (the `podmedic_certificate_expiry_timestamp_seconds` gauge) before reviews fail.

File names follow the `kubernetes.io/tls` Secret keys (`tls.crt`, `tls.key`, `ca.crt`), so a
directory written here can be loaded into a Secret as is.

Keys are ECDSA P-256: a signature costs a fraction of an RSA-2048 one, which matters on a
webhook whose clients open a connection (one handshake) per burst of pod creations, the keys
are small, and every client that calls webhooks (Go's crypto/tls in kube-apiserver, OpenSSL,
Python) supports them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVICE = "podmedic"
DEFAULT_NAMESPACE = "podmedic-system"
CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_AFTER = 2 / 3  # fraction of the serving certificate's lifetime after which init renews it
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore is backdated so a slightly late clock accepts it

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
PrivateKey = CertificateIssuerPrivateKeyTypes


class CertError(Exception):
    """A file that cannot be used as it is; the message is one line, meant for the user."""


@dataclass(frozen=True)
class PkiPaths:
    """Where the four files of a PKI directory live (kubernetes.io/tls Secret key names)."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: str | os.PathLike[str]) -> PkiPaths:
        d = Path(directory)
        return cls(d / "ca.crt", d / "ca.key", d / "tls.crt", d / "tls.key")


# -- names ---------------------------------------------------------------------------------

def serving_names(service: str, namespace: str) -> list[str]:
    """Every name a client may use for the Service: the API server uses `NAME.NS.svc`."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local"]


def split_hosts(hosts: Iterable[str]) -> tuple[list[str], list[IP]]:
    """Sort `--host` values into DNS names and IP literals.

    IP literals must become IP SANs: Go clients (kube-apiserver) ignore the CN and never match
    an IP against a DNS SAN, so `https://127.0.0.1` needs `IP:127.0.0.1`.
    """
    dns: list[str] = []
    ips: list[IP] = []
    for host in hosts:
        try:
            ips.append(ipaddress.ip_address(host))
        except ValueError:
            if not host or not host.isascii() or any(c.isspace() for c in host):
                raise CertError(f"--host {host!r} is neither an IP address nor an ASCII DNS name") from None
            dns.append(host.lower())
    return dns, ips


def requested_names(service: str | None, namespace: str, hosts: Iterable[str]) -> tuple[list[str], list[IP]]:
    """The Service's names (when a service is given) followed by the extra hosts."""
    dns, ips = split_hosts(hosts)
    base = serving_names(service, namespace) if service else []
    return base + [d for d in dns if d not in base], ips


def describe_names(dns: Sequence[str], ips: Sequence[IP]) -> str:
    return ", ".join([f"DNS:{d}" for d in dns] + [f"IP:{ip}" for ip in ips])


# -- issuing ---------------------------------------------------------------------------------

def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _sign(subject: x509.Name, issuer: x509.Name, public_key: Any, signing_key: PrivateKey,
          not_before: dt.datetime, not_after: dt.datetime,
          extensions: Sequence[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: enabled.get(name, False) for name in names})


def generate_ca(common_name: str = "podmedic development CA", days: int = CA_DAYS,
                now: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that may sign end-entity certificates only (pathlen 0)."""
    now = now or _utcnow()
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = _sign(name, name, key.public_key(), key, now - CLOCK_SKEW, now + dt.timedelta(days=days), [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), True),
    ])
    return cert, key


def issue_serving_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, dns_names: Sequence[str],
                       ips: Sequence[IP] = (), days: int = SERVING_DAYS,
                       now: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A serverAuth certificate for `dns_names` and `ips`, signed by the CA.

    Its notAfter never passes the CA's: a chain is only as valid as its shortest link.
    `now` lets tests issue certificates that are already expired.
    """
    if not dns_names and not ips:
        raise CertError("a serving certificate needs at least one DNS name or IP address")
    now = now or _utcnow()
    key = new_key()
    common_name = dns_names[0] if dns_names else str(ips[0])  # informational: clients match SANs
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ip) for ip in ips]
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = _sign(subject, ca_cert.subject, key.public_key(), ca_key, now - CLOCK_SKEW, not_after, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName(sans), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ])
    return cert, key


# -- files -------------------------------------------------------------------------------------

def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file and rename: a reader (the server's reloader) sees the
    old file or the new one, never half of one. The temporary file is created 0600, so a key
    is never readable by others, not even for a moment."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pair(cert: x509.Certificate, key: PrivateKey, cert_path: Path, key_path: Path) -> None:
    """Write a certificate (0644) and its key (0600); the key first, so that a reader that
    sees the new certificate also finds its key."""
    try:
        _write_atomic(key_path, key_pem(key), 0o600)
        _write_atomic(cert_path, cert_pem(cert), 0o644)
    except OSError as exc:
        raise CertError(f"cannot write {exc.filename or cert_path}: {exc.strerror}") from None


def read_file(path: Path) -> bytes:
    """The file's bytes, or CertError naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertError(f"{path}: cannot read: {exc.strerror}") from None


def parse_chain(data: bytes, source: str) -> list[x509.Certificate]:
    """All certificates of a PEM file, leaf first; CertError when there is none."""
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise CertError(f"{source}: not a PEM certificate")
    return chain


def load_chain(path: Path) -> list[x509.Certificate]:
    return parse_chain(read_file(path), str(path))


def load_cert(path: Path) -> x509.Certificate:
    """The first (leaf) certificate of a PEM file."""
    return load_chain(path)[0]


def parse_key(data: bytes, source: str) -> PrivateKey:
    """An unencrypted PEM private key; `source` names the file or Secret key in errors."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertError(f"{source}: the key is encrypted; podmedic needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertError(f"{source}: not a PEM private key") from None
    return key  # type: ignore[return-value]


def load_key(path: Path) -> PrivateKey:
    return parse_key(read_file(path), str(path))


def not_after(path: Path) -> dt.datetime:
    """notAfter (UTC) of the leaf certificate in `path`."""
    return load_cert(path).not_valid_after_utc


# -- checking ----------------------------------------------------------------------------------

def days_left(cert: x509.Certificate, now: dt.datetime | None = None) -> float:
    return (cert.not_valid_after_utc - (now or _utcnow())).total_seconds() / 86400


def renewal_time(cert: x509.Certificate) -> dt.datetime:
    """When RENEW_AFTER of the certificate's lifetime will have passed (see the module doc)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * RENEW_AFTER


def due_for_renewal(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    return (now or _utcnow()) >= renewal_time(cert)


def validity_problems(cert: x509.Certificate, what: str, now: dt.datetime | None = None) -> list[str]:
    now = now or _utcnow()
    if now > cert.not_valid_after_utc:
        return [f"{what} expired on {iso(cert.not_valid_after_utc)}"]
    if now < cert.not_valid_before_utc:
        return [f"{what} is not valid before {iso(cert.not_valid_before_utc)}"]
    return []


def _public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    return _public_der(cert.public_key()) == _public_der(key.public_key())


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _sans(cert: x509.Certificate) -> tuple[list[str], list[IP]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return [d.lower() for d in san.get_values_for_type(x509.DNSName)], san.get_values_for_type(x509.IPAddress)


def _dns_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching as Go does it: exact, or a `*.` wildcard for exactly one label."""
    if pattern == name:
        return True
    return pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]


def _server_auth(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no EKU extension means any usage
    return ExtendedKeyUsageOID.SERVER_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def chains_to(chain: Sequence[x509.Certificate], ca: x509.Certificate) -> bool:
    """Each certificate is signed by the next, the last by the CA (a chain that ends with the
    CA itself is fine: the CA is self-signed)."""
    for child, parent in zip(chain, [*chain[1:], ca]):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return False
    return True


def ca_problems(ca: x509.Certificate, key: PrivateKey | None = None, now: dt.datetime | None = None) -> list[str]:
    """Why this CA cannot anchor (or, given its key, sign) a serving certificate."""
    problems = validity_problems(ca, "the CA", now)
    if not is_ca(ca):
        problems.append("the CA file holds a certificate that is not a CA")
    if key is not None and not key_matches(ca, key):
        problems.append("the CA key does not match the CA certificate")
    return problems


def chain_problems(chain: Sequence[x509.Certificate], key: PrivateKey | None, ca: x509.Certificate | None,
                   dns_names: Sequence[str] = (), ips: Sequence[IP] = ()) -> list[str]:
    """What makes a serving pair unusable for these names, whatever the date: wrong key,
    wrong issuer, missing SANs, no serverAuth usage."""
    leaf = chain[0]
    problems = []
    if key is not None and not key_matches(leaf, key):
        problems.append("the private key does not match the certificate")
    if ca is not None and not chains_to(chain, ca):
        problems.append(f"the certificate (issuer {leaf.issuer.rfc4514_string()}) is not signed by the CA "
                        f"({ca.subject.rfc4514_string()})")
    if not _server_auth(leaf):
        problems.append("the certificate lacks the serverAuth extended key usage")
    have_dns, have_ips = _sans(leaf)
    problems += [f"DNS:{d} is not among the certificate's SANs" for d in dns_names
                 if not any(_dns_matches(p, d.lower()) for p in have_dns)]
    problems += [f"IP:{ip} is not among the certificate's SANs" for ip in ips if ip not in have_ips]
    return problems


def check_pair(chain: Sequence[x509.Certificate], key: PrivateKey | None, ca: x509.Certificate | None,
               dns_names: Sequence[str] = (), ips: Sequence[IP] = (),
               now: dt.datetime | None = None) -> list[str]:
    """Every reason a client would reject this pair today; empty when it is good."""
    problems = validity_problems(chain[0], "the certificate", now)
    if ca is not None:
        problems += ca_problems(ca, None, now)
    return problems + chain_problems(chain, key, ca, dns_names, ips)


def iso(when: dt.datetime) -> str:
    """UTC time as the API server and kubectl print it."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- init ------------------------------------------------------------------------------------

def _exists(*paths: Path) -> list[Path]:
    return [p for p in paths if p.exists() or p.is_symlink()]


def _usable_ca(paths: PkiPaths) -> tuple[x509.Certificate, PrivateKey]:
    """The existing CA, or CertError saying why it cannot sign."""
    cert, key = load_cert(paths.ca_cert), load_key(paths.ca_key)
    problems = ca_problems(cert, key)
    if problems:
        raise CertError(f"{paths.ca_cert}: {'; '.join(problems)}")
    return cert, key


def _ensure_ca(paths: PkiPaths, days: int, force: bool) -> tuple[x509.Certificate, PrivateKey]:
    present = _exists(paths.ca_cert, paths.ca_key)
    if present:
        try:
            return _usable_ca(paths)
        except CertError as exc:
            if not force:
                raise CertError(f"{exc} (--force replaces the CA; every caBundle must then be updated)") from None
            print(f"replacing the unusable CA: {exc}")
    elif _exists(paths.cert, paths.key) and not force:
        raise CertError(f"{paths.cert.parent} holds a serving pair but no CA; not touching it without --force")
    cert, key = generate_ca(days=days)
    write_pair(cert, key, paths.ca_cert, paths.ca_key)
    print(f"created the CA {paths.ca_cert} ({cert.subject.rfc4514_string()}, valid until "
          f"{iso(cert.not_valid_after_utc)})")
    return cert, key


def _serving_action(paths: PkiPaths, ca: x509.Certificate, dns: Sequence[str], ips: Sequence[IP],
                    force: bool) -> str | None:
    """Why the serving pair must be (re-)issued, or None to keep it. CertError refuses to
    replace a pair that is usable but not for these names (or not ours) without --force."""
    if force:
        return "--force"
    if not _exists(paths.cert, paths.key):
        return "new"
    try:
        chain, key = load_chain(paths.cert), load_key(paths.key)
        problems = [f"{paths.cert}: {p}" for p in chain_problems(chain, key, ca, dns, ips)]
    except CertError as exc:
        problems = [str(exc)]
    if problems:
        raise CertError(f"{'; '.join(problems)} (--force re-issues the pair from the CA)")
    expired = validity_problems(chain[0], "it")
    if expired:
        return f"renewal: {expired[0]}"
    if due_for_renewal(chain[0]):
        return f"renewal: past {RENEW_AFTER:.0%} of its lifetime"
    print(f"{paths.cert} is valid for {describe_names(dns, ips)} until {iso(chain[0].not_valid_after_utc)} "
          f"({days_left(chain[0]):.0f} days left); nothing to do")
    return None


def cmd_init(args: argparse.Namespace) -> int:
    paths = PkiPaths.in_dir(args.out)
    try:
        dns, ips = requested_names(args.service, args.namespace, args.host)
        paths.cert.parent.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = _ensure_ca(paths, args.ca_days, args.force)
        reason = _serving_action(paths, ca_cert, dns, ips, args.force)
        if reason is not None:
            cert, key = issue_serving_cert(ca_cert, ca_key, dns, ips, days=args.days)
            write_pair(cert, key, paths.cert, paths.key)
            print(f"issued {paths.cert} ({reason}) for {describe_names(dns, ips)}, valid until "
                  f"{iso(cert.not_valid_after_utc)}")
    except CertError as exc:
        print(f"podmedic certs init: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"podmedic certs init: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


# -- check -----------------------------------------------------------------------------------

def _report(cert_path: Path, chain: Sequence[x509.Certificate], ca_path: Path, ca: x509.Certificate) -> None:
    leaf = chain[0]
    print(f"certificate {cert_path}")
    print(f"  subject:   {leaf.subject.rfc4514_string()}")
    print(f"  issuer:    {leaf.issuer.rfc4514_string()}")
    print(f"  SANs:      {describe_names(*_sans(leaf)) or '(none)'}")
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


# -- command line ----------------------------------------------------------------------------

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
    p.add_argument("--out", default="certs", help="directory (default certs)")
    add_name_flags(p, DEFAULT_SERVICE)
    p.add_argument("--days", type=int, default=SERVING_DAYS,
                   help=f"serving certificate validity (default {SERVING_DAYS})")
    p.add_argument("--ca-days", type=int, default=CA_DAYS, help=f"CA validity for a new CA (default {CA_DAYS})")
    p.add_argument("--force", action="store_true",
                   help="re-issue the serving pair even if it is valid, and replace an unusable CA")
    p.set_defaults(func=cmd_init)


def _add_check(commands: Any) -> None:
    p = commands.add_parser("check", help="show a serving certificate and fail if clients would reject it",
                            description="Print subject, SANs and expiry; exit 1 when the certificate is "
                            "expired, does not match its key, is not signed by the CA, or lacks a name.")
    p.add_argument("--dir", default="certs", help="directory holding tls.crt, tls.key, ca.crt (default certs)")
    p.add_argument("--cert", help="serving certificate (default DIR/tls.crt)")
    p.add_argument("--key", help="its private key (default DIR/tls.key)")
    p.add_argument("--ca", help="CA certificate (default DIR/ca.crt)")
    add_name_flags(p, None)
    p.set_defaults(func=cmd_check)


def register(sub: Any) -> None:
    from webhook import certinstall  # it imports this module: only once this one is complete

    p = sub.add_parser("certs", help="the webhook's PKI: a CA and its serving certificate, locally or in the cluster",
                       description="Create and check the CA and serving certificate the webhook needs, "
                       "and install (and renew) them in the cluster.")
    commands = p.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    for add in (_add_init, _add_check, certinstall.add_install):
        add(commands)
