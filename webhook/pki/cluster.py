"""The self-managed PKI kept in the cluster and renewed there (`podmedic certs install`).

The state lives in the cluster, so every run -- an admin's laptop with a kubeconfig, or the
renewal CronJob with its service account -- sees and converges the same three things:

- Secret `NS/podmedic-ca` (Opaque: ca.crt, ca.key), in the namespace of `--secret`: the CA and
  its key. Only `install` reads it; the webhook pods do not mount it, so the key that can mint
  trusted certificates is not on every replica. `install` creates it (a new CA generated in
  memory, or the local one with `--from-dir`) and replaces it when the CA is rotated.
- Secret `--secret NS/NAME` (kubernetes.io/tls: tls.crt, tls.key, ca.crt = the issuing CA):
  what the pods mount and serve; the server re-reads it without a restart (webhook/server/tls.py).
- `clientConfig.caBundle` of every webhook of the `--webhook` MutatingWebhookConfiguration: what
  the API server trusts.

Idempotent: each object is read, the wanted content computed, and written only when it differs,
by a JSON patch that first tests the resourceVersion that was read (a concurrent writer makes the
run fail and ask for a re-run instead of being overwritten). A run that finds everything current
sends no write at all.

Renewal is the same command run daily by a CronJob. The serving certificate is re-issued from the
same CA once two thirds of its lifetime have passed (the `certs init` rule), which touches only
the serving Secret; the CA is replaced once two thirds of *its* lifetime have passed, or on
`--rotate-ca`. Why a CronJob and not the server: the server would need write access to its own
Secret and to a cluster-scoped webhook configuration from every replica, with N replicas racing
to renew; a CronJob is one writer (concurrencyPolicy Forbid) whose RBAC names three objects, and a
failed renewal is a failed Job -- while the server keeps exporting the expiry gauge.

A new CA without a failed request. The two readers see a change at different speeds: the API
server sees a caBundle patch within seconds, a pod sees its Secret change when the kubelet syncs
the volume (a minute or two) plus the reload interval. So the writes go in this order: the CA
Secret (the key is saved before anything depends on it), then the bundle with the new CA *and*
the CAs it replaces, then the serving Secret. While the pods move to the new certificate, the
API server trusts both. The retired CAs stay for CA_OVERLAP, recorded in the annotation
RETIRED_UNTIL on the configuration; the first run after that instant drops them. Expired CAs are
dropped at once (they validate nothing), and retired ones are kept, whatever the annotation says,
as long as the serving Secret still holds a certificate they signed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from webhook.engine.patch import pointer
from webhook.pki.local import PkiPaths, read_file
from webhook.pki.x509 import (CA_DAYS, IP, RENEW_AFTER, SERVING_DAYS, CertError, ca_problems, cert_pem, chain_problems, chains_to,
                              check_pair, describe_names, due_for_renewal, generate_ca, is_ca, iso,
                              issue_serving_cert, key_matches, key_pem, parse_chain, parse_key, renewal_time, unreadable,
                              validity_problems)

if TYPE_CHECKING:  # the client is slow to import; `podmedic --help` must not pay for it
    import kubernetes

CA_SECRET = "podmedic-ca"
CA_OVERLAP = dt.timedelta(hours=24)  # kubelet sync + reload take minutes; a day leaves room to notice
RETIRED_UNTIL = "podmedic.io/retired-ca-until"
TLS_TYPE, OPAQUE = "kubernetes.io/tls", "Opaque"
MANAGED_BY = {"app.kubernetes.io/managed-by": "podmedic"}
REQUEST_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds per API call: a CronJob must not hang


class InstallError(Exception):
    """The run cannot go on; the message is one line, meant for the user."""


class NotFound(InstallError):
    """The API answered 404: the object (or its namespace) does not exist."""


@dataclass(frozen=True)
class SecretRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Request:
    """What the user asked for (the command line, parsed)."""

    webhook: str
    secret: SecretRef
    ca_secret: str
    dns: list[str]
    ips: list[IP]
    days: int = SERVING_DAYS
    ca_days: int = CA_DAYS
    rotate_ca: bool = False
    from_dir: Path | None = None

    @property
    def ca_ref(self) -> SecretRef:
        return SecretRef(self.secret.namespace, self.ca_secret)


@dataclass(frozen=True)
class Pki:
    """The wanted content of the two Secrets, and why each one changes (None: it does not)."""

    ca: x509.Certificate
    ca_data: dict[str, bytes]
    serving_data: dict[str, bytes]
    ca_reason: str | None
    serving_reason: str | None


# -- the PKI ---------------------------------------------------------------------------------

def secret_data(secret: dict[str, Any] | None) -> dict[str, bytes]:
    """A Secret's decoded `data`; {} when there is no Secret. An undecodable value counts as absent."""
    decoded = {}
    for name, value in ((secret or {}).get("data") or {}).items():
        try:
            decoded[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            continue
    return decoded


def _required(data: dict[str, bytes], name: str, where: str) -> bytes:
    if name not in data:
        raise CertError(f"{where} has no {name}")
    return data[name]


def _stored_ca(data: dict[str, bytes], where: str) -> tuple[x509.Certificate, Any]:
    """The CA of the CA Secret; CertError when it cannot be what it claims (an expired CA is
    fine here: it is due for rotation, which replaces it)."""
    cert = parse_chain(_required(data, "ca.crt", where), f"{where} ca.crt")[0]
    key = parse_key(_required(data, "ca.key", where), f"{where} ca.key")
    broken = unreadable(cert, f"{where} ca.crt")
    if broken:
        raise CertError(broken[0])
    if not is_ca(cert):
        raise CertError(f"{where} ca.crt holds a certificate that is not a CA")
    if not key_matches(cert, key):
        raise CertError(f"{where} ca.key does not match its ca.crt")
    return cert, key


def _ca_reason(stored: dict[str, bytes], request: Request, now: dt.datetime) -> tuple[str | None, Any]:
    """(why a new CA is needed, or None and the stored (cert, key))."""
    if request.rotate_ca:
        return "--rotate-ca", None
    if not stored:
        return "new", None
    try:
        cert, key = _stored_ca(stored, f"Secret {request.ca_ref}")
    except CertError as exc:
        raise CertError(f"{exc} (--rotate-ca replaces it with a new CA)") from None
    if due_for_renewal(cert, now):
        return f"rotation: the CA is past {RENEW_AFTER:.0%} of its lifetime", None
    return None, (cert, key)


def _serving_reason(stored: dict[str, bytes], ca: x509.Certificate, request: Request,
                    now: dt.datetime) -> str | None:
    """Why the stored serving pair must be re-issued from `ca`, or None to keep it."""
    if "tls.crt" not in stored or "tls.key" not in stored:
        return "new"
    try:
        chain = parse_chain(stored["tls.crt"], "tls.crt")
        key = parse_key(stored["tls.key"], "tls.key")
    except CertError as exc:
        return f"replacing: {exc}"
    problems = validity_problems(chain[0], "it", now) + chain_problems(chain, key, ca, request.dns, request.ips)
    if problems:
        return f"replacing: {problems[0]}"
    if due_for_renewal(chain[0], now):
        return f"renewal: past {RENEW_AFTER:.0%} of its lifetime"
    return None


def pki_in_cluster(stored_ca: dict[str, bytes], stored_serving: dict[str, bytes], request: Request,
                   now: dt.datetime) -> Pki:
    """Keep what is stored while it is good; generate what is missing, unusable or due."""
    ca_reason, kept = _ca_reason(stored_ca, request, now)
    if kept is None:
        common_name = f"podmedic CA {now:%Y-%m-%dT%H:%M:%SZ}"  # tells the CAs of a bundle apart
        ca, ca_key = generate_ca(common_name, days=request.ca_days, now=now)
        ca_data = {"ca.crt": cert_pem(ca), "ca.key": key_pem(ca_key)}
    else:
        (ca, ca_key), ca_data = kept, {name: stored_ca[name] for name in ("ca.crt", "ca.key")}
    serving_reason = _serving_reason(stored_serving, ca, request, now)
    if serving_reason is None:
        serving = {name: stored_serving[name] for name in ("tls.crt", "tls.key")}
    else:
        cert, key = issue_serving_cert(ca, ca_key, request.dns, request.ips, days=request.days, now=now)
        serving = {"tls.crt": cert_pem(cert), "tls.key": key_pem(key)}
    return Pki(ca, ca_data, {**serving, "ca.crt": cert_pem(ca)}, ca_reason, serving_reason)


def pki_from_dir(directory: Path, request: Request, now: dt.datetime) -> Pki:
    """A local PKI (`podmedic certs init`), uploaded as it is once it passes `certs check`."""
    paths = PkiPaths.in_dir(directory)
    data = {name: read_file(path) for name, path in (("ca.crt", paths.ca_cert), ("ca.key", paths.ca_key),
                                                     ("tls.crt", paths.cert), ("tls.key", paths.key))}
    ca = parse_chain(data["ca.crt"], str(paths.ca_cert))[0]
    chain = parse_chain(data["tls.crt"], str(paths.cert))
    problems = ca_problems(ca, parse_key(data["ca.key"], str(paths.ca_key)), now) + \
        check_pair(chain, parse_key(data["tls.key"], str(paths.key)), ca, request.dns, request.ips, now)
    if problems:
        raise CertError(f"{directory}: {'; '.join(problems)} (see podmedic certs init / check)")
    return Pki(ca, {"ca.crt": data["ca.crt"], "ca.key": data["ca.key"]},
               {"tls.crt": data["tls.crt"], "tls.key": data["tls.key"], "ca.crt": data["ca.crt"]},
               f"from {directory}", f"from {directory}")


# -- the bundle ------------------------------------------------------------------------------

def bundle_cas(bundle_b64: str | None) -> list[x509.Certificate]:
    """The certificates of one caBundle; an empty or unreadable bundle trusts nothing."""
    try:
        return x509.load_pem_x509_certificates(base64.b64decode(bundle_b64 or "", validate=True))
    except (binascii.Error, ValueError):
        return []


def _bundles(configuration: dict[str, Any]) -> list[str | None]:
    return [(webhook.get("clientConfig") or {}).get("caBundle") for webhook in configuration["webhooks"]]


def published_cas(configuration: dict[str, Any]) -> list[x509.Certificate]:
    """Every CA some webhook of the configuration trusts, each once, in order of appearance."""
    seen: list[x509.Certificate] = []
    for bundle in _bundles(configuration):
        for ca in bundle_cas(bundle):
            if ca not in seen:
                seen.append(ca)
    return seen


def _annotation_time(configuration: dict[str, Any]) -> dt.datetime | None:
    """RETIRED_UNTIL; None when absent or not a time with a zone (then nothing is kept for it)."""
    text = (configuration["metadata"].get("annotations") or {}).get(RETIRED_UNTIL) or ""
    try:
        until = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return until if until.tzinfo is not None else None


def plan_bundle(published: Sequence[x509.Certificate], ca: x509.Certificate, rollout: bool,
                until: dt.datetime | None, now: dt.datetime) -> tuple[list[x509.Certificate], dt.datetime | None]:
    """The CAs to trust (the current one first) and until when the retired ones stay.

    `rollout`: a change of CA is reaching the cluster in this run or has not finished (some
    webhook lacks the current CA, or the serving Secret holds a certificate of another CA), so
    the retired CAs are kept for CA_OVERLAP from now. Otherwise they stay until `until`.
    """
    retired = [old for old in published if old != ca and old.not_valid_after_utc > now]
    if retired and rollout:
        until = max(until or now, now + CA_OVERLAP).replace(microsecond=0)
    if not retired or until is None or now >= until:
        return [ca], None
    return [ca, *retired], until


def bundle_b64(cas: Sequence[x509.Certificate]) -> str:
    return base64.b64encode(b"".join(cert_pem(ca) for ca in cas)).decode()


def _signed_by_other_ca(serving: dict[str, bytes], ca: x509.Certificate) -> bool:
    try:
        return "tls.crt" in serving and not chains_to(parse_chain(serving["tls.crt"], "tls.crt"), ca)
    except CertError:
        return False


# -- patches ---------------------------------------------------------------------------------

def guarded(obj: dict[str, Any], ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A JSON patch that applies only to the version that was read; [] when there is nothing to do."""
    if not ops:
        return []
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]}, *ops]


def secret_ops(secret: dict[str, Any], data: dict[str, bytes]) -> list[dict[str, Any]]:
    """Set the keys of `data` that differ; other keys of the Secret are left alone."""
    wanted = {name: base64.b64encode(value).decode() for name, value in data.items()}
    current = secret.get("data")
    if current is None:
        return [{"op": "add", "path": "/data", "value": wanted}]
    return [{"op": "add", "path": pointer(("data", name)), "value": value}
            for name, value in wanted.items() if current.get(name) != value]


def webhook_ops(configuration: dict[str, Any], bundle: str, until: dt.datetime | None) -> list[dict[str, Any]]:
    """Set caBundle on every webhook that differs (each guarded by its name: the indexes are those
    read) and the RETIRED_UNTIL annotation to `until` (removed when None)."""
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(configuration["webhooks"]):
        if (webhook.get("clientConfig") or {}).get("caBundle") != bundle:
            ops += [{"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]},
                    {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle}]
    annotations = configuration["metadata"].get("annotations")
    wanted = iso(until) if until else None
    path = pointer(("metadata", "annotations", RETIRED_UNTIL))
    if wanted == (annotations or {}).get(RETIRED_UNTIL):
        return ops
    if wanted is None:
        return [*ops, {"op": "remove", "path": path}]
    if annotations is None:
        return [*ops, {"op": "add", "path": "/metadata/annotations", "value": {RETIRED_UNTIL: wanted}}]
    return [*ops, {"op": "add", "path": path, "value": wanted}]


# -- the API ---------------------------------------------------------------------------------

def _status_message(exc: Any) -> str:
    """The message of the Status object an API error carries (or the HTTP reason)."""
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


def _raced(exc: Any) -> bool:
    """Whether a refused write found the object other than this run read it: created meanwhile
    (409), or a guarded patch that no longer applies (422 with no causes: the object itself is
    valid; an invalid one, such as a bad name, has its causes listed and is not a race)."""
    if exc.status == 409:
        return True
    if exc.status != 422:
        return False
    try:
        return not (json.loads(exc.body).get("details") or {}).get("causes")
    except (TypeError, ValueError, AttributeError):
        return False


class Cluster:
    """The objects `install` reads and writes, as the JSON the API server sends (plain dicts)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        from kubernetes.client import AdmissionregistrationV1Api, CoreV1Api

        self.host = api_client.configuration.host
        self._core = CoreV1Api(api_client)
        self._admission = AdmissionregistrationV1Api(api_client)

    @contextmanager
    def _calling(self, what: str, write: bool = False) -> Iterator[None]:
        """Every failure of an API call as an InstallError naming the object (NotFound for a 404).
        A write that lost a race (_raced) says so: a failed resourceVersion test reads only "the
        server rejected our request due to an error in our request"."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            yield
        except ApiException as exc:
            if exc.status == 0:  # the client's own errors (TLS) carry no HTTP status
                raise InstallError(f"cannot reach the API server {self.host}: {exc.reason}") from None
            if exc.status == 404:
                raise NotFound(f"{what}: {_status_message(exc)}") from None
            hint = " (RBAC: see the podmedic-certs Role)" if exc.status in (401, 403) else ""
            if write and _raced(exc):
                hint = ("; it changed since this run read it (another `podmedic certs install` at the same "
                        "time?): run it again")
            raise InstallError(f"{what}: {_status_message(exc)}{hint}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise InstallError(f"cannot reach the API server {self.host}: {getattr(exc, 'reason', exc)}") from None

    def secret(self, ref: SecretRef, kind: str) -> dict[str, Any] | None:
        """The Secret, None when it does not exist; InstallError when it is of another type (the
        type of a Secret cannot be changed)."""
        try:
            with self._calling(f"reading Secret {ref}"):
                response = self._core.read_namespaced_secret(ref.name, ref.namespace, _preload_content=False,
                                                             _request_timeout=REQUEST_TIMEOUT)
        except NotFound:
            return None
        # _preload_content=False returns the urllib3 response, not the model the client's annotations name
        secret: dict[str, Any] = json.loads(response.data)  # type: ignore[arg-type]
        if secret.get("type", OPAQUE) != kind:
            raise InstallError(f"Secret {ref} has type {secret.get('type', OPAQUE)}, not {kind}; "
                               "delete it or name another one")
        return secret

    def write_secret(self, ref: SecretRef, kind: str, data: dict[str, bytes],
                     current: dict[str, Any] | None) -> str | None:
        """Create the Secret or patch the keys that differ: "created", "updated" or None (no write)."""
        if current is None:
            body = {"apiVersion": "v1", "kind": "Secret", "type": kind,
                    "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": MANAGED_BY},
                    "data": {name: base64.b64encode(value).decode() for name, value in data.items()}}
            with self._calling(f"creating Secret {ref}", write=True):
                # a plain dict body is serialised as is (the client's annotations name only V1Secret)
                self._core.create_namespaced_secret(ref.namespace, body, _preload_content=False,  # type: ignore[arg-type]
                                                    _request_timeout=REQUEST_TIMEOUT)
            return "created"
        patch = guarded(current, secret_ops(current, data))
        if not patch:
            return None
        with self._calling(f"patching Secret {ref}", write=True):
            self._core.patch_namespaced_secret(ref.name, ref.namespace, patch, _preload_content=False,
                                               _content_type="application/json-patch+json",
                                               _request_timeout=REQUEST_TIMEOUT)
        return "updated"

    def webhook_configuration(self, name: str) -> dict[str, Any]:
        try:
            with self._calling(f"reading MutatingWebhookConfiguration {name}"):
                response = self._admission.read_mutating_webhook_configuration(
                    name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except NotFound:
            raise InstallError(f"MutatingWebhookConfiguration {name} not found: apply the webhook "
                               "configuration first, or check --webhook") from None
        # _preload_content=False returns the urllib3 response, not the model the client's annotations name
        configuration: dict[str, Any] = json.loads(response.data)  # type: ignore[attr-defined]
        if not configuration.get("webhooks"):
            raise InstallError(f"MutatingWebhookConfiguration {name} has no webhooks")
        return configuration

    def patch_webhook_configuration(self, name: str, patch: list[dict[str, Any]]) -> None:
        with self._calling(f"patching MutatingWebhookConfiguration {name}", write=True):
            self._admission.patch_mutating_webhook_configuration(
                name, patch, _preload_content=False, _content_type="application/json-patch+json",
                _request_timeout=REQUEST_TIMEOUT)


# -- the run -----------------------------------------------------------------------------------

def _describe_ca(ca: x509.Certificate) -> str:
    return f"{ca.subject.rfc4514_string()} (until {iso(ca.not_valid_after_utc)})"


def install(cluster: Cluster, request: Request, now: dt.datetime, say: Callable[[str], None]) -> None:
    """Converge the CA Secret, the caBundles and the serving Secret, telling `say` each write as
    it is done (a later failure must not hide what was already written).

    Everything is read (and checked) before the first write, so a missing configuration or a
    Secret of the wrong type fails the run without a partial install.
    """
    configuration = cluster.webhook_configuration(request.webhook)
    ca_secret = cluster.secret(request.ca_ref, OPAQUE)
    serving_secret = cluster.secret(request.secret, TLS_TYPE)
    stored_serving = secret_data(serving_secret)
    if request.from_dir is not None:
        pki = pki_from_dir(request.from_dir, request, now)
    else:
        pki = pki_in_cluster(secret_data(ca_secret), stored_serving, request, now)
    rollout = (any(pki.ca not in bundle_cas(bundle) for bundle in _bundles(configuration))
               or _signed_by_other_ca(stored_serving, pki.ca))
    cas, until = plan_bundle(published_cas(configuration), pki.ca, rollout, _annotation_time(configuration), now)

    writes = []
    done = cluster.write_secret(request.ca_ref, OPAQUE, pki.ca_data, ca_secret)
    if done:
        writes.append(f"{done} Secret {request.ca_ref}: CA {_describe_ca(pki.ca)} ({pki.ca_reason or 'repaired'})")
        say(writes[-1])
    patch = guarded(configuration, webhook_ops(configuration, bundle_b64(cas), until))
    if patch:
        cluster.patch_webhook_configuration(request.webhook, patch)
        retired = "".join(f"; retired CA {_describe_ca(ca)} kept until {iso(until)}" for ca in cas[1:] if until)
        writes.append(f"patched MutatingWebhookConfiguration {request.webhook}: {len(configuration['webhooks'])} "
                      f"webhook(s) trust {_describe_ca(pki.ca)}{retired}")
        say(writes[-1])
    done = cluster.write_secret(request.secret, TLS_TYPE, pki.serving_data, serving_secret)
    leaf = parse_chain(pki.serving_data["tls.crt"], "tls.crt")[0]
    if done:
        writes.append(f"{done} Secret {request.secret}: serving certificate for "
                      f"{describe_names(request.dns, request.ips)} until {iso(leaf.not_valid_after_utc)} "
                      f"({pki.serving_reason or 'repaired'})")
        say(writes[-1])
    if not writes:
        say(f"Secret {request.secret} holds a certificate valid until {iso(leaf.not_valid_after_utc)} (renewal "
              f"due {iso(renewal_time(leaf))}), and every webhook of {request.webhook} trusts its CA; nothing to do")
