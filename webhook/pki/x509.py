"""The webhook's PKI in memory: a CA and the webhook's serving certificate, their names, PEM
encoding and every check a client would make. No files, no cluster: `pki.local` keeps a PKI in a
directory, `pki.cluster` in Secrets and the caBundle.

The API server only calls a webhook over TLS, and it trusts the webhook through the
`caBundle` of the webhook configuration, not through the system roots. So the PKI has two
levels with deliberately different lifetimes:

- the CA (`ca.crt`, `ca.key`, 10 years by default) is the trust anchor pinned in every
  `caBundle`. Replacing it means re-patching every webhook configuration, so `init` keeps a
  usable CA and never replaces it unless told (`--force` replaces only an unusable one);
- the serving certificate (`tls.crt`, `tls.key`, 1 year by default) is cheap: re-issuing it
  from the same CA touches nothing in the cluster, and the server picks it up without a
  restart (webhook/server/tls.py). `init` renews it once two thirds of its lifetime have passed (the
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

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVICE = "podmedic"
DEFAULT_NAMESPACE = "podmedic-system"
CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_AFTER = 2 / 3  # fraction of the serving certificate's lifetime after which init renews it
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore is backdated so a slightly late clock accepts it

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Extension = TypeVar("_Extension", bound=x509.ExtensionType)
PrivateKey = CertificateIssuerPrivateKeyTypes
_SIGNING_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey,
                 dsa.DSAPrivateKey)  # PrivateKey's members, for isinstance
# The curves whose ECDSA keys both the API server's TLS (Go) and the server's (OpenSSL, TLS 1.3
# signature schemes) use: P-224 passed every check and then served no handshake. Go refuses DSA
# and Ed448 keys, other curves, and RSA keys under 1024 bits.
_GO_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_GO_MIN_RSA_BITS = 1024


class CertError(Exception):
    """A file that cannot be used as it is; the message is one line, meant for the user."""


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
    # Ed25519 signs the message itself: it takes no separate hash
    return builder.sign(signing_key, None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256())


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


# -- PEM ---------------------------------------------------------------------------------------

def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def parse_chain(data: bytes, source: str) -> list[x509.Certificate]:
    """All certificates of a PEM file, leaf first; CertError when there is none."""
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise CertError(f"{source}: not a PEM certificate")
    return chain


def parse_key(data: bytes, source: str) -> PrivateKey:
    """An unencrypted PEM private key; `source` names the file or Secret key in errors."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertError(f"{source}: the key is encrypted; podmedic needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertError(f"{source}: not a PEM private key") from None
    if not isinstance(key, _SIGNING_KEYS):  # X25519, X448, DH, ML-KEM keys cannot sign a certificate
        raise CertError(f"{source}: the key ({type(key).__name__}) cannot sign a certificate")
    unusable = unverifiable(key.public_key())
    if unusable:
        raise CertError(f"{source}: {unusable}")
    return key


def unverifiable(public_key: PublicKeyTypes) -> str | None:
    """Why the API server could not use a certificate of this key or one signed with it, or None.
    OpenSSL and `cryptography` accept DSA, Ed448 and other curves, so a pair that passes every
    local check would fail each call the API server makes (a handshake failure) or, as a CA, its
    first renewal."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return None
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size >= _GO_MIN_RSA_BITS:
            return None
        return f"the RSA key has {public_key.key_size} bits; the API server needs at least {_GO_MIN_RSA_BITS}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, _GO_CURVES):
            return None
        return f"the ECDSA key is on {public_key.curve.name}; the API server needs P-256, P-384 or P-521"
    return f"the key ({type(public_key).__name__}) is of a type the API server does not read"


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


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    return _public_der(cert.public_key()) == _public_der(key.public_key())


def _extension(cert: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    """The certificate's extension of this kind; None where it has none or it cannot be read
    (`cryptography` raises ValueError for a malformed one: unreadable(), which the checks report,
    says so)."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def unreadable(cert: x509.Certificate, what: str) -> list[str]:
    """A malformed extension: no client can use the certificate, and the rest of the checks
    would only see the extension missing."""
    try:
        cert.extensions  # noqa: B018 (parses every extension)
    except ValueError as exc:
        return [f"{what} has an extension that cannot be read ({exc})"]
    return []


def is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca


def sans(cert: x509.Certificate) -> tuple[list[str], list[IP]]:
    san = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return [], []
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, IP)]  # never a network in a SAN
    return [d.lower() for d in san.get_values_for_type(x509.DNSName)], ips


def _dns_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching as Go does it: exact, or a `*.` wildcard for exactly one label."""
    if pattern == name:
        return True
    return pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]


def _server_auth(cert: x509.Certificate) -> bool:
    usages = _extension(cert, x509.ExtendedKeyUsage)
    if usages is None:
        return True  # no EKU extension means any usage (an unreadable one: unreadable())
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
    broken = unreadable(ca, "the CA")
    problems = validity_problems(ca, "the CA", now) + broken
    if not broken and not is_ca(ca):
        problems.append("the CA file holds a certificate that is not a CA")
    unusable = unverifiable(ca.public_key())
    if unusable:
        problems.append(f"the CA: {unusable}")
    if key is not None and not key_matches(ca, key):
        problems.append("the CA key does not match the CA certificate")
    return problems


def chain_problems(chain: Sequence[x509.Certificate], key: PrivateKey | None, ca: x509.Certificate | None,
                   dns_names: Sequence[str] = (), ips: Sequence[IP] = ()) -> list[str]:
    """What makes a serving pair unusable for these names, whatever the date: wrong key,
    wrong issuer, missing SANs, no serverAuth usage."""
    leaf = chain[0]
    problems = unreadable(leaf, "the certificate")
    unusable = unverifiable(leaf.public_key())
    if unusable:
        problems.append(f"the certificate: {unusable}")
    if key is not None and not key_matches(leaf, key):
        problems.append("the private key does not match the certificate")
    if ca is not None and not chains_to(chain, ca):
        problems.append(f"the certificate (issuer {leaf.issuer.rfc4514_string()}) is not signed by the CA "
                        f"({ca.subject.rfc4514_string()})")
    if not _server_auth(leaf):
        problems.append("the certificate lacks the serverAuth extended key usage")
    have_dns, have_ips = sans(leaf)
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
