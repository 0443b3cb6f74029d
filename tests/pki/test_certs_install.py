"""`podmedic certs install` against a real (fake) Kubernetes API server on 127.0.0.1
(tests/fakekube.py), through the official client: first install, a re-run that writes nothing,
renewal of the serving certificate, CA rotation with the overlap (proven on a real `podmedic
serve` swapping its certificate), and the failures a user meets first.

Most runs call the CLI's `main()` in-process (the client is slow to import; one import serves
the whole module); the error paths run the real console command to prove they print one line
and no traceback. One test (marked integration) runs a real kube-apiserver (tests/kubeapi.py) with the
CronJob's RBAC rules and proves that the API server keeps calling the webhook through a CA rotation."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from tests.conftest import ROOT, free_port, podmedic, start_server, stop_server
from tests.pki.test_certs import foreign_ca, init
from tests.fakekube import FakeKube
from tests.test_integration import Cluster, running_cluster
from tests.server.test_tls import SecretDir, wait_for
from webhook import cli
from webhook.kube.client import kube_api_client
from webhook.pki import cluster as certinstall
from webhook.pki import local as pki_local
from webhook.pki import x509 as certs

NS, TLS, CA = "podmedic-system", "podmedic-tls", "podmedic-ca"
WEBHOOK = "podmedic"
ARGS = ("--webhook", WEBHOOK, "--secret", f"{NS}/{TLS}", "--host", "127.0.0.1")
SERVICE_NAME = x509.DNSName("podmedic.podmedic-system.svc")
NOW = dt.datetime.now(dt.timezone.utc)
WRITES = ("POST", "PUT", "PATCH", "DELETE")
MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/podmedic"


def webhook(name: str, bundle: str | None = None) -> dict[str, Any]:
    client_config: dict[str, Any] = {"service": {"name": "podmedic", "namespace": NS, "path": "/mutate"}}
    if bundle is not None:
        client_config["caBundle"] = bundle
    return {"name": name, "clientConfig": client_config, "sideEffects": "None", "admissionReviewVersions": ["v1"]}


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeKube]:
    """The API server with the namespace and a configuration of two webhooks, one with a stale
    bundle; $KUBECONFIG points at it (and 127.0.0.1 bypasses any proxy)."""
    server = FakeKube().start()
    server.set_namespace(NS)
    server.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                  "metadata": {"name": WEBHOOK},
                  "webhooks": [webhook("pods.podmedic.io"), webhook("other.podmedic.io", "c3RhbGU=")]})
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1")
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig")))
    yield server
    server.stop()


def install(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """Run `podmedic certs install` in-process; its stdout (it must succeed)."""
    code = cli.main(["certs", "install", *ARGS, *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "PRIVATE KEY" not in out + err
    return out


def writes(kube: FakeKube, since: int) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in kube.requests[since:] if r.method in WRITES]


def secret_in(kube: FakeKube, namespace: str, name: str) -> dict[str, bytes]:
    obj = kube.get("Secret", name, namespace)
    assert obj is not None, name
    return certinstall.secret_data(obj)


def secret(kube: FakeKube, name: str) -> dict[str, bytes]:
    return secret_in(kube, NS, name)


def bundles(kube: FakeKube) -> list[list[x509.Certificate]]:
    """The CAs each webhook trusts."""
    configuration = kube.get("MutatingWebhookConfiguration", WEBHOOK)
    assert configuration is not None
    return [x509.load_pem_x509_certificates(base64.b64decode(w["clientConfig"]["caBundle"]))
            for w in configuration["webhooks"]]


def retired_until(kube: FakeKube) -> str | None:
    configuration = kube.get("MutatingWebhookConfiguration", WEBHOOK)
    assert configuration is not None
    return (configuration["metadata"].get("annotations") or {}).get(certinstall.RETIRED_UNTIL)


def verify(chain_pem: bytes, cas: list[x509.Certificate], name: Any = SERVICE_NAME) -> None:
    """RFC 5280 path validation, as the API server does it with the caBundle."""
    chain = x509.load_pem_x509_certificates(chain_pem)
    PolicyBuilder().store(Store(cas)).build_server_verifier(name).verify(chain[0], chain[1:])


def put_secret_data(kube: FakeKube, name: str, **data: bytes) -> None:
    """Change keys of a Secret as another writer would (kubectl, or time passing)."""
    obj = kube.get("Secret", name, NS)
    assert obj is not None
    obj["data"].update({key.replace("_", "."): base64.b64encode(value).decode() for key, value in data.items()})
    kube.apply(obj)


def ca_of(kube: FakeKube) -> tuple[x509.Certificate, Any]:
    data = secret(kube, CA)
    return certs.parse_chain(data["ca.crt"], "ca.crt")[0], certs.parse_key(data["ca.key"], "ca.key")


def old_pair(kube: FakeKube, issued_days_ago: float, days: int = 365) -> tuple[bytes, bytes]:
    """A serving pair from the cluster's CA, issued in the past."""
    ca, ca_key = ca_of(kube)
    names = certs.serving_names("podmedic", NS)
    cert, key = certs.issue_serving_cert(ca, ca_key, names, [ipaddress.ip_address("127.0.0.1")], days=days,
                                         now=NOW - dt.timedelta(days=issued_days_ago))
    return certs.cert_pem(cert), certs.key_pem(key)


# -- install and re-run ----------------------------------------------------------------------

def test_first_install_creates_both_secrets_and_patches_every_webhook(kube: FakeKube,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    since = len(kube.requests)
    out = install(capsys)
    # The CA's key is saved first, the API server trusts the CA next, the pods get the pair last.
    base = "/api/v1/namespaces/podmedic-system/secrets"
    assert writes(kube, since) == [("POST", base),
                                   ("PATCH", MWC_PATH),
                                   ("POST", base)]
    assert "created Secret podmedic-system/podmedic-ca" in out and "created Secret podmedic-system/podmedic-tls" in out
    assert kube.get("Secret", CA, NS)["type"] == "Opaque"  # type: ignore[index]
    assert kube.get("Secret", TLS, NS)["type"] == "kubernetes.io/tls"  # type: ignore[index]
    ca, ca_key = ca_of(kube)
    assert certs.ca_problems(ca, ca_key) == []
    serving = secret(kube, TLS)
    assert serving["ca.crt"] == certs.cert_pem(ca)
    assert certs.key_matches(certs.parse_chain(serving["tls.crt"], "tls.crt")[0],
                             certs.parse_key(serving["tls.key"], "tls.key"))
    assert bundles(kube) == [[ca], [ca]]  # the stale bundle of the second webhook is replaced too
    for name in (SERVICE_NAME, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verify(serving["tls.crt"], bundles(kube)[0], name)
    configuration = kube.get("MutatingWebhookConfiguration", WEBHOOK)
    assert configuration["webhooks"][0]["clientConfig"]["service"]["path"] == "/mutate"  # type: ignore[index]
    assert retired_until(kube) is None  # nothing to retire: no overlap


def test_a_rerun_changes_nothing(kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    install(capsys)
    version = kube.resource_version
    since = len(kube.requests)
    out = install(capsys)
    assert writes(kube, since) == []
    assert kube.resource_version == version
    assert "nothing to do" in out and "renewal due" in out


def test_a_due_serving_certificate_is_renewed_without_touching_the_bundle(kube: FakeKube,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    install(capsys)
    ca_before, bundles_before = secret(kube, CA), bundles(kube)
    cert_pem, key_pem = old_pair(kube, issued_days_ago=250)  # past 2/3 of 365 days
    put_secret_data(kube, TLS, tls_crt=cert_pem, tls_key=key_pem)
    since = len(kube.requests)
    out = install(capsys)
    assert writes(kube, since) == [("PATCH", "/api/v1/namespaces/podmedic-system/secrets/podmedic-tls")]
    assert "renewal: past 67% of its lifetime" in out
    renewed = certs.parse_chain(secret(kube, TLS)["tls.crt"], "tls.crt")[0]
    assert abs(certs.days_left(renewed) - 365) < 1
    assert secret(kube, CA) == ca_before and bundles(kube) == bundles_before
    verify(secret(kube, TLS)["tls.crt"], bundles(kube)[0])
    since = len(kube.requests)
    install(capsys)
    assert writes(kube, since) == []


def test_a_serving_certificate_before_two_thirds_is_kept(kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    install(capsys)
    cert_pem, key_pem = old_pair(kube, issued_days_ago=200)
    put_secret_data(kube, TLS, tls_crt=cert_pem, tls_key=key_pem)
    since = len(kube.requests)
    install(capsys)
    assert writes(kube, since) == []
    assert secret(kube, TLS)["tls.crt"] == cert_pem


def test_names_missing_from_the_stored_certificate_get_a_new_one(kube: FakeKube,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    install(capsys)
    out = install(capsys, "--host", "webhook.example.org")
    assert "replacing: DNS:webhook.example.org is not among the certificate's SANs" in out
    verify(secret(kube, TLS)["tls.crt"], bundles(kube)[0], x509.DNSName("webhook.example.org"))


def test_a_stored_certificate_with_an_extension_that_cannot_be_read_is_replaced(
        kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    """`cryptography` raises ValueError reading it: every run died with a traceback, and only
    deleting the Secret by hand got the cluster out."""
    install(capsys)
    ca, ca_key = ca_of(kube)
    key = certs.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podmedic")])
    broken = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject).public_key(key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
              .not_valid_after(NOW + dt.timedelta(days=30))
              .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05"),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    put_secret_data(kube, TLS, tls_crt=certs.cert_pem(broken), tls_key=certs.key_pem(key))
    out = install(capsys)
    assert "replacing: the certificate has an extension that cannot be read" in out
    verify(secret(kube, TLS)["tls.crt"], bundles(kube)[0])


# -- CA rotation and the overlap -------------------------------------------------------------

def handshake(port: int, cafile: Path) -> bytes:
    """One TLS handshake with 127.0.0.1, verified against `cafile`; the served certificate (DER)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        served = tls.getpeercert(binary_form=True)
    assert served is not None
    return served


def der(pem: bytes) -> bytes:
    return certs.parse_chain(pem, "pem")[0].public_bytes(certs.serialization.Encoding.DER)


def test_ca_rotation_keeps_the_old_ca_while_the_server_moves_to_the_new_pair(
        kube: FakeKube, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    install(capsys)
    old_ca, _ = ca_of(kube)
    old = secret(kube, TLS)
    since = len(kube.requests)
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    out = install(capsys, "--rotate-ca")
    after = dt.datetime.now(dt.timezone.utc)
    new_ca, _ = ca_of(kube)
    new = secret(kube, TLS)
    assert new_ca != old_ca
    assert [method for method, _ in writes(kube, since)] == ["PATCH"] * 3
    assert [path.rsplit("/", 1)[1] for _, path in writes(kube, since)] == [CA, WEBHOOK, TLS]  # trust, then use
    assert bundles(kube) == [[new_ca, old_ca], [new_ca, old_ca]]
    until = dt.datetime.strptime(retired_until(kube) or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert before + certinstall.CA_OVERLAP <= until <= after + certinstall.CA_OVERLAP  # from the rotation's time
    assert "kept until" in out
    verify(new["tls.crt"], [new_ca])
    with pytest.raises(x509.verification.VerificationError):
        verify(new["tls.crt"], [old_ca])  # so the old CA alone would have failed the new pair

    # A real server, its Secret swapped as the kubelet does: every handshake verifies against
    # the bundle, before, during and after the move to the new pair.
    bundle_file = tmp_path / "bundle.pem"
    bundle_file.write_bytes(b"".join(certs.cert_pem(ca) for ca in bundles(kube)[0]))
    mounted = SecretDir(tmp_path / "secret")
    mounted.publish(old["tls.crt"], old["tls.key"])
    server = start_server(tmp_path, mounted.path, "--cert-reload-interval", "0.2", ca=bundle_file)
    try:
        port = int(server.url.rsplit(":", 1)[1])
        assert handshake(port, bundle_file) == der(old["tls.crt"])
        mounted.publish(new["tls.crt"], new["tls.key"])
        wait_for(lambda: handshake(port, bundle_file) == der(new["tls.crt"]), 10, "the new pair to be served")
    finally:
        stop_server(server)

    since = len(kube.requests)
    install(capsys)  # during the overlap, a re-run keeps everything as it is
    assert writes(kube, since) == []


def expire_overlap(kube: FakeKube) -> None:
    """Time passing: the overlap recorded on the configuration ended an hour ago."""
    configuration = kube.get("MutatingWebhookConfiguration", WEBHOOK)
    assert configuration is not None
    configuration["metadata"]["annotations"][certinstall.RETIRED_UNTIL] = certs.iso(NOW - dt.timedelta(hours=1))
    kube.apply(configuration)


def test_the_installed_pair_passes_certs_check_against_the_bundle(kube: FakeKube, capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    """The README's verification: the Secret's pair and the first webhook's caBundle, exported
    as `kubectl get -o jsonpath` would, pass `podmedic certs check` -- also mid-rotation."""
    install(capsys)
    install(capsys, "--rotate-ca")
    serving = secret(kube, TLS)
    (tmp_path / "tls.crt").write_bytes(serving["tls.crt"])
    (tmp_path / "tls.key").write_bytes(serving["tls.key"])
    (tmp_path / "bundle.crt").write_bytes(b"".join(certs.cert_pem(ca) for ca in bundles(kube)[0]))
    code = cli.main(["certs", "check", "--cert", str(tmp_path / "tls.crt"), "--key", str(tmp_path / "tls.key"),
                     "--ca", str(tmp_path / "bundle.crt"), "--service", "podmedic", "--host", "127.0.0.1"])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.rstrip().endswith("ok")


def test_after_the_overlap_a_run_drops_the_old_ca(kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    install(capsys)
    install(capsys, "--rotate-ca")
    expire_overlap(kube)
    new_ca, _ = ca_of(kube)
    since = len(kube.requests)
    install(capsys)
    assert writes(kube, since) == [("PATCH", MWC_PATH)]
    assert bundles(kube) == [[new_ca], [new_ca]]
    assert retired_until(kube) is None
    since = len(kube.requests)
    install(capsys)
    assert writes(kube, since) == []


def test_the_old_ca_stays_while_the_serving_secret_still_holds_its_certificate(
        kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever the annotation says: a pod may still serve that certificate."""
    install(capsys)
    old_ca, _ = ca_of(kube)
    old = secret(kube, TLS)
    install(capsys, "--rotate-ca")
    new_ca, _ = ca_of(kube)
    expire_overlap(kube)
    put_secret_data(kube, TLS, tls_crt=old["tls.crt"], tls_key=old["tls.key"])  # e.g. restored from a backup
    install(capsys)
    assert bundles(kube) == [[new_ca, old_ca], [new_ca, old_ca]]
    assert (retired_until(kube) or "") > certs.iso(NOW)
    verify(secret(kube, TLS)["tls.crt"], [new_ca])


def seed(kube: FakeKube, ca: x509.Certificate, ca_key: Any, pair_issued_days_ago: float = 1) -> None:
    """A cluster some earlier install left: this CA in its Secret and in every bundle, a pair from it."""
    names = certs.serving_names("podmedic", NS)
    cert, key = certs.issue_serving_cert(ca, ca_key, names, [ipaddress.ip_address("127.0.0.1")],
                                         now=NOW - dt.timedelta(days=pair_issued_days_ago))
    for name, kind, data in ((CA, "Opaque", {"ca.crt": certs.cert_pem(ca), "ca.key": certs.key_pem(ca_key)}),
                             (TLS, "kubernetes.io/tls", {"tls.crt": certs.cert_pem(cert), "tls.key": certs.key_pem(key),
                                                         "ca.crt": certs.cert_pem(ca)})):
        kube.apply({"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": {"name": name, "namespace": NS},
                    "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})
    configuration = kube.get("MutatingWebhookConfiguration", WEBHOOK)
    assert configuration is not None
    for webhook_ in configuration["webhooks"]:
        webhook_["clientConfig"]["caBundle"] = base64.b64encode(certs.cert_pem(ca)).decode()
    kube.apply(configuration)


def test_a_ca_past_two_thirds_of_its_life_is_rotated_with_the_overlap(kube: FakeKube,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    aging, aging_key = certs.generate_ca(days=30, now=NOW - dt.timedelta(days=21))  # 70% of its life
    seed(kube, aging, aging_key)
    out = install(capsys)
    assert "rotation: the CA is past 67% of its lifetime" in out
    new_ca, _ = ca_of(kube)
    assert new_ca != aging and abs(certs.days_left(new_ca) - certs.CA_DAYS) < 1
    assert bundles(kube) == [[new_ca, aging], [new_ca, aging]]
    verify(secret(kube, TLS)["tls.crt"], [new_ca])


def test_an_expired_retired_ca_is_dropped_at_once() -> None:
    current, _ = certs.generate_ca()
    expired, _ = certs.generate_ca(days=1, now=NOW - dt.timedelta(days=2))
    retired, _ = certs.generate_ca()
    cas, until = certinstall.plan_bundle([expired, retired, current], current, True, None, NOW)
    assert cas == [current, retired] and until == (NOW + certinstall.CA_OVERLAP).replace(microsecond=0)
    assert certinstall.plan_bundle([expired, current], current, True, None, NOW) == ([current], None)


def test_an_unusable_ca_secret_is_refused_until_rotate_ca(kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    install(capsys)
    put_secret_data(kube, CA, ca_key=certs.key_pem(certs.new_key()))
    since = len(kube.requests)
    assert cli.main(["certs", "install", *ARGS]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("podmedic certs install: Secret podmedic-system/podmedic-ca ca.key does not match its "
                           "ca.crt (--rotate-ca replaces it with a new CA)")
    assert writes(kube, since) == []
    install(capsys, "--rotate-ca")
    new_ca, new_key = ca_of(kube)
    assert certs.ca_problems(new_ca, new_key) == []
    verify(secret(kube, TLS)["tls.crt"], bundles(kube)[0])


# -- a local PKI -------------------------------------------------------------------------------

def test_from_dir_uploads_a_local_pki_and_the_cluster_keeps_it(kube: FakeKube, capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    local = tmp_path / "certs"
    assert cli.main(["certs", "init", "--out", str(local), "--host", "127.0.0.1"]) == 0
    install(capsys, "--from-dir", str(local))
    files = {name: (local / name).read_bytes() for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")}
    assert secret(kube, CA) == {"ca.crt": files["ca.crt"], "ca.key": files["ca.key"]}
    assert secret(kube, TLS) == {"tls.crt": files["tls.crt"], "tls.key": files["tls.key"], "ca.crt": files["ca.crt"]}
    assert bundles(kube) == [pki_local.load_chain(local / "ca.crt")] * 2
    for extra in (("--from-dir", str(local)), ()):  # the in-cluster renewal takes over from here
        since = len(kube.requests)
        install(capsys, *extra)
        assert writes(kube, since) == []


def test_from_dir_refuses_a_pair_that_fails_check(kube: FakeKube, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    local = tmp_path / "certs"
    assert cli.main(["certs", "init", "--out", str(local)]) == 0  # no IP SAN for 127.0.0.1
    since = len(kube.requests)
    assert cli.main(["certs", "install", *ARGS, "--from-dir", str(local)]) == 1
    assert "IP:127.0.0.1 is not among the certificate's SANs" in capsys.readouterr().err
    assert writes(kube, since) == []


# -- failures --------------------------------------------------------------------------------

def run_cli(*extra: str) -> tuple[int, str]:
    """The real console command; (exit code, stderr), which must be one line and no traceback."""
    done = podmedic("certs", "install", *ARGS, *extra, env={**os.environ})
    assert done.stderr.count("\n") <= 1 and "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def test_a_missing_webhook_configuration_is_a_clear_error(kube: FakeKube) -> None:
    kube.delete("MutatingWebhookConfiguration", WEBHOOK)
    since = len(kube.requests)
    code, err = run_cli()
    assert code == 1
    assert err.startswith("podmedic certs install: MutatingWebhookConfiguration podmedic not found")
    assert writes(kube, since) == []


def test_an_unreachable_api_server_is_a_clear_error(kube: FakeKube) -> None:
    kube.stop()
    code, err = run_cli()
    assert code == 1
    assert err.startswith(f"podmedic certs install: cannot reach the API server {kube.url}: ")
    assert "Connection refused" in err


def test_no_cluster_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, err = run_cli()
    assert code == 1 and err.startswith("podmedic certs install: cannot use the in-cluster configuration")


def test_a_secret_of_another_type_is_refused_before_any_write(kube: FakeKube) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": TLS, "namespace": NS},
                "data": {"tls.crt": ""}})
    since = len(kube.requests)
    code, err = run_cli()
    assert code == 1
    assert "Secret podmedic-system/podmedic-tls has type Opaque, not kubernetes.io/tls" in err
    assert writes(kube, since) == []


def test_a_concurrent_change_fails_the_patch_instead_of_being_overwritten(kube: FakeKube) -> None:
    cluster = certinstall.Cluster(kube.api_client())
    read = cluster.webhook_configuration(WEBHOOK)
    changed = kube.get("MutatingWebhookConfiguration", WEBHOOK)
    assert changed is not None
    changed["webhooks"].reverse()  # someone re-applied the configuration meanwhile
    kube.apply(changed)
    patch = certinstall.guarded(read, certinstall.webhook_ops(read, "YnVuZGxl", None))
    with pytest.raises(certinstall.InstallError, match="patching MutatingWebhookConfiguration podmedic: .*"
                                                       "changed since this run read it"):
        cluster.patch_webhook_configuration(WEBHOOK, patch)
    stored = kube.get("MutatingWebhookConfiguration", WEBHOOK)
    assert stored is not None and stored["webhooks"] == changed["webhooks"]


def test_the_service_namespace_defaults_to_the_secrets(kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    """A pod mounts Secrets of its own namespace, where its Service is too."""
    kube.set_namespace("team")
    assert cli.main(["certs", "install", "--webhook", WEBHOOK, "--secret", "team/webhook-tls"]) == 0, \
        capsys.readouterr().err
    verify(secret_in(kube, "team", "webhook-tls")["tls.crt"], bundles(kube)[0], x509.DNSName("podmedic.team.svc"))
    assert "ca.key" in secret_in(kube, "team", CA)


def test_a_missing_namespace_is_a_clear_error(kube: FakeKube, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["certs", "install", "--webhook", WEBHOOK, "--secret", "absent/webhook-tls"]) == 1
    assert capsys.readouterr().err.strip() == \
        'podmedic certs install: creating Secret absent/podmedic-ca: namespaces "absent" not found'


# -- the real API server ---------------------------------------------------------------------

RENEW_YAML = ROOT / "deploy" / "overlays" / "self-managed" / "renew.yaml"


def renewal_manifests() -> list[dict[str, Any]]:
    """The CronJob and its RBAC as deploy/ ships them."""
    return [doc for doc in yaml.safe_load_all(RENEW_YAML.read_text()) if doc]


def cronjob_args() -> list[str]:
    """The command line of deploy/'s renewal CronJob (its image's entrypoint is `podmedic`)."""
    cronjob = next(doc for doc in renewal_manifests() if doc["kind"] == "CronJob")
    args: list[str] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A kube-apiserver of this test's own (RBAC on), with the namespace and deploy/'s renewal
    manifests: the CronJob's service account and exactly its RBAC rules."""
    with running_cluster(tmp_path / "kube") as cluster:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        for obj in renewal_manifests():
            cluster.apply(obj)
        yield cluster


def service_account_kubeconfig(cluster: Cluster, path: Path) -> Path:
    """A kubeconfig that is the CronJob's service account (a TokenRequest token), nothing more."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    token = cluster.kubectl("-n", NS, "create", "token", "podmedic-certs").stdout.strip()
    admin["users"] = [{"name": "podmedic-certs", "user": {"token": token}}]
    admin["contexts"] = [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "podmedic-certs"}}]
    admin["current-context"] = "sa"
    path.write_text(json.dumps(admin))
    return path


@pytest.mark.integration
def test_the_api_server_calls_the_webhook_through_install_and_a_ca_rotation(real_cluster: Cluster,
                                                                           tmp_path: Path) -> None:
    """The real thing: the CronJob's RBAC is enough, the real API server accepts the patches, and
    it calls the webhook successfully with the caBundle install wrote -- before, during and after
    a CA rotation, while the server moves from the old pair to the new one."""
    cluster, port = real_cluster, free_port()
    cluster.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                   "metadata": {"name": WEBHOOK}, "webhooks": [{
                       "name": "inject.podmedic.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                       "failurePolicy": "Fail", "timeoutSeconds": 5,
                       "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate"},
                       "namespaceSelector": {"matchLabels": {"podmedic-test": "certs"}},
                       "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                  "resources": ["pods"]}]}]})
    app_ns = cluster.namespace({"podmedic.io/inject": "enabled"}, {"podmedic-test": "certs"})
    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "sa.kubeconfig")

    def install_as_cronjob(*extra: str) -> str:
        """The CronJob's command, as its service account, plus the IP SAN a local server needs."""
        done = podmedic(*cronjob_args(), "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", *extra,
                        env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
        assert done.returncode == 0, done.stderr
        return done.stdout

    def read_secret(name: str) -> dict[str, bytes]:
        secret = cluster.kubectl("-n", NS, "get", "secret", name, "-o", "json").stdout
        return certinstall.secret_data(json.loads(secret))

    def create_pod() -> subprocess.CompletedProcess[str]:
        """A pod creation (dry run) through the API server, which calls the webhook over TLS."""
        return cluster.create_pod(app_ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "w-"},
                                           "spec": {"containers": [{"name": "app", "image": "registry.example/a:1",
                                                                    "ports": [{"containerPort": 8080}]}]}},
                                  dry_run=True)

    def mutated_every_time(tries: int) -> None:
        for _ in range(tries):
            done = create_pod()
            assert done.returncode == 0 and "readinessProbe" in done.stdout, done.stderr

    def webhook_version() -> str:
        return cluster.kubectl("get", "mutatingwebhookconfiguration", WEBHOOK, "-o",
                               "jsonpath={.metadata.resourceVersion}").stdout

    install_as_cronjob()
    old = read_secret(TLS)
    mounted = SecretDir(tmp_path / "secret")
    mounted.publish(old["tls.crt"], old["tls.key"])
    (tmp_path / "old-ca.crt").write_bytes(old["ca.crt"])
    server = start_server(tmp_path, mounted.path, "--kubeconfig", str(cluster.kubeconfig),
                          "--cert-reload-interval", "0.2", port=port, ca=tmp_path / "old-ca.crt")
    try:
        wait_for(lambda: create_pod().returncode == 0, 30, "the webhook to take effect")
        mutated_every_time(3)
        install_as_cronjob("--rotate-ca")
        mutated_every_time(10)  # the API server picks up [new, old] while the old pair is still served
        new = read_secret(TLS)
        mounted.publish(new["tls.crt"], new["tls.key"])
        (tmp_path / "new-ca.crt").write_bytes(new["ca.crt"])
        wait_for(lambda: handshake(port, tmp_path / "new-ca.crt") == der(new["tls.crt"]), 10,
                 "the new pair to be served")
        mutated_every_time(10)
    finally:
        stop_server(server)
    version = webhook_version()
    assert "nothing to do" in install_as_cronjob()
    assert webhook_version() == version


@pytest.mark.integration
def test_the_api_server_calls_a_webhook_whose_ca_is_ed25519(real_cluster: Cluster, tmp_path: Path) -> None:
    """`certs init` and renewals issue from an Ed25519 CA (tests/pki/test_certs.py) because Go's
    crypto/x509 verifies what it signs: the real API server calls the webhook with it."""
    cluster, port = real_cluster, free_port()
    foreign_ca(tmp_path / "certs", ed25519.Ed25519PrivateKey.generate())
    assert init(tmp_path / "certs").returncode == 0
    bundle = base64.b64encode((tmp_path / "certs" / "ca.crt").read_bytes()).decode()
    cluster.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                   "metadata": {"name": WEBHOOK}, "webhooks": [{
                       "name": "inject.podmedic.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                       "failurePolicy": "Fail", "timeoutSeconds": 5,
                       "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate", "caBundle": bundle},
                       "namespaceSelector": {"matchLabels": {"podmedic-test": "ed25519"}},
                       "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                  "resources": ["pods"]}]}]})
    app_ns = cluster.namespace({"podmedic.io/inject": "enabled"}, {"podmedic-test": "ed25519"})
    server = start_server(tmp_path, tmp_path / "certs", "--kubeconfig", str(cluster.kubeconfig), port=port)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "w-"},
           "spec": {"containers": [{"name": "app", "image": "registry.example/a:1", "ports": [{"containerPort": 8080}]}]}}
    try:
        wait_for(lambda: "readinessProbe" in cluster.create_pod(app_ns, pod, dry_run=True).stdout, 30,
                 "the API server to call the webhook")
    finally:
        stop_server(server)


@pytest.mark.integration
def test_a_write_that_lost_a_race_on_the_real_api_server_says_so(real_cluster: Cluster) -> None:
    """The API server answers a failed resourceVersion test with its plain 422 text, "the server
    rejected our request due to an error in our request": the losing run of two at the same time
    must say that the object changed and to run it again."""
    cluster = certinstall.Cluster(kube_api_client(str(real_cluster.kubeconfig)))
    ref = certinstall.SecretRef(NS, "raced")
    cluster.write_secret(ref, "Opaque", {"a": b"1"}, None)
    read = cluster.secret(ref, "Opaque")
    assert cluster.write_secret(ref, "Opaque", {"a": b"2"}, read) == "updated"  # the other run
    with pytest.raises(certinstall.InstallError, match="changed since this run read it") as raised:
        cluster.write_secret(ref, "Opaque", {"a": b"3"}, read)
    assert str(raised.value).startswith("patching Secret podmedic-system/raced: ")
    with pytest.raises(certinstall.InstallError, match="already exists; it changed since this run read it"):
        cluster.write_secret(ref, "Opaque", {"a": b"4"}, None)  # both runs found no Secret
    with pytest.raises(certinstall.InstallError) as raised:  # invalid, not raced: running again cannot help
        cluster.write_secret(certinstall.SecretRef(NS, "Bad_Name"), "Opaque", {"a": b"1"}, None)
    assert "is invalid" in str(raised.value) and "run it again" not in str(raised.value)
