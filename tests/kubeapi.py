"""A real kube-apiserver + etcd for the tests, from whichever source this machine has.

1. `KUBEBUILDER_ASSETS`: the ecosystem's way (controller-runtime's envtest, `setup-envtest use
   1.36 -p path`): a directory holding `kube-apiserver` and `etcd` (and usually `kubectl`). This
   module starts both itself on free loopback ports, configured like ../shared/kube-apiserver/start
   so that the tests see the same API server whichever source runs it.
2. ../shared/kube-apiserver: this repository's CI, through its `start` and `stop` scripts.

Both give the same `KubeAPI` handle and the same STATE_DIR/env file (KUBECONFIG, APISERVER_URL,
APISERVER_CA, APISERVER_TOKEN_FILE), so a test never asks which source it got."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT, free_port
from webhook.pki import local
from webhook.pki import x509 as certs

ASSETS_VAR = "KUBEBUILDER_ASSETS"
SHARED = ROOT.parent / "shared" / "kube-apiserver"
SHARED_TOOLS = ("kubectl", "openssl", "xz", "curl")  # what the shared `start` script calls
READY_SECONDS = 60.0  # a cold kube-apiserver is ready in ~3 s; a loaded 2-core CI box needs more
STOP_SECONDS = 10.0


class StartError(RuntimeError):
    """The API server did not come up; the message carries the end of the failing log."""


@dataclass(frozen=True)
class KubeAPI:
    """A running API server. `processes` are the process groups this module started (envtest);
    empty when ../shared's scripts own the processes."""

    state: Path
    url: str
    ca: Path
    token_file: Path
    kubectl: str
    processes: tuple[subprocess.Popen[bytes], ...] = ()

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def env(self) -> dict[str, str]:
        """The variables ../shared's STATE_DIR/env defines, for subprocesses and the webhook."""
        return {"KUBECONFIG": str(self.kubeconfig), "APISERVER_URL": self.url,
                "APISERVER_CA": str(self.ca), "APISERVER_TOKEN_FILE": str(self.token_file)}


def missing() -> str | None:
    """Why no real API server can run here (a skip reason), or None."""
    assets = os.environ.get(ASSETS_VAR)
    if assets:
        return _assets_missing(Path(assets))
    if not (SHARED / "start").exists():
        return (f"no real kube-apiserver: set {ASSETS_VAR} to envtest's binaries (`setup-envtest use 1.36 "
                f"-p path`), or provide {SHARED} as this repository's CI does")
    absent = [tool for tool in SHARED_TOOLS if not shutil.which(tool)]
    return f"{SHARED}/start needs {', '.join(absent)}" if absent else None


def start(state: Path, port: int | None = None) -> KubeAPI:
    """Start an API server keeping its data in `state` (reused if it exists: a restart keeps
    etcd's contents), on `port` or a free one; return once it serves and `default/default` exists."""
    assets = os.environ.get(ASSETS_VAR)
    return _start_assets(Path(assets), state, port) if assets else _start_shared(state, port)


def stop(api: KubeAPI, *, wipe: bool = True) -> None:
    """Stop it; `wipe` also deletes its state (certificates, etcd data, logs)."""
    if api.processes:
        _end(api.processes)
    else:
        subprocess.run([str(SHARED / "stop"), str(api.state)], capture_output=True, timeout=60)
    if wipe:
        shutil.rmtree(api.state, ignore_errors=True)


# -- ../shared/kube-apiserver ----------------------------------------------------------------

def _start_shared(state: Path, port: int | None) -> KubeAPI:
    env = {**os.environ, "APISERVER_PORT": str(port)} if port else None
    done = subprocess.run([str(SHARED / "start"), str(state)], capture_output=True, text=True, timeout=300,
                          env=env)
    if done.returncode != 0:
        # its start leaves etcd running when kube-apiserver fails: stop what it recorded
        subprocess.run([str(SHARED / "stop"), str(state)], capture_output=True, timeout=60)
        raise StartError(f"{SHARED}/start failed: {done.stderr[-2000:]}")
    values = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line)
    return KubeAPI(state, values["APISERVER_URL"], Path(values["APISERVER_CA"]),
                   Path(values["APISERVER_TOKEN_FILE"]), shutil.which("kubectl") or "kubectl")


# -- KUBEBUILDER_ASSETS ----------------------------------------------------------------------

def _assets_missing(assets: Path) -> str | None:
    absent = [name for name in ("kube-apiserver", "etcd") if not os.access(assets / name, os.X_OK)]
    if absent:
        return f"{ASSETS_VAR}={assets} has no executable {' or '.join(absent)}"
    if not _assets_kubectl(assets):
        return f"kubectl is neither in {ASSETS_VAR}={assets} nor on PATH"
    return None


def _assets_kubectl(assets: Path) -> str | None:
    """envtest's kubectl matches its API server's version; the machine's is the fallback."""
    own = assets / "kubectl"
    return str(own) if os.access(own, os.X_OK) else shutil.which("kubectl")


def _start_assets(assets: Path, state: Path, port: int | None) -> KubeAPI:
    """etcd, then kube-apiserver; ready means what ../shared's `start` promises: /readyz answers
    200 and `default/default` exists."""
    pki = state / "pki"
    (state / "logs").mkdir(parents=True, exist_ok=True)
    _write_pki(pki)
    url = f"https://127.0.0.1:{port or free_port()}"
    api = KubeAPI(state, url, pki / "ca.crt", pki / "admin.token", _assets_kubectl(assets) or "kubectl")
    _write_kubeconfig(api)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        etcd_url = f"http://127.0.0.1:{free_port()}"
        processes.append(_spawn(state, "etcd", _etcd_argv(assets, state, etcd_url)))
        _wait(lambda: _etcd_healthy(etcd_url), processes[0], state / "logs" / "etcd.log")
        processes.append(_spawn(state, "kube-apiserver", _apiserver_argv(assets, api, etcd_url)))
        api = replace(api, processes=tuple(processes))
        with session(api) as http:
            log = state / "logs" / "kube-apiserver.log"
            _wait(lambda: _status(http, "GET", f"{url}/readyz") == 200, processes[1], log)
            _wait(lambda: _default_service_account(http, url), processes[1], log)
    except BaseException:
        _end(processes)  # never leak etcd or kube-apiserver, whatever went wrong
        raise
    _write_env(api)
    return api


def _write_pki(pki: Path) -> None:
    """A CA, kube-apiserver's serving certificate, the ServiceAccount token signing key and the
    admin's static token (group system:masters, as ../shared's token is); kept across restarts."""
    if (pki / "tokens.csv").exists():
        return
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)  # keys and the token: never readable by others
    ca, ca_key = certs.generate_ca("test-kube-ca")
    serving, serving_key = certs.issue_serving_cert(ca, ca_key, ["localhost", "kubernetes.default.svc"],
                                                    [ipaddress.ip_address("127.0.0.1")])
    local.write_pair(serving, serving_key, pki / "apiserver.crt", pki / "apiserver.key")
    sa_key = certs.new_key()
    (pki / "sa.key").write_bytes(certs.key_pem(sa_key))
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (pki / "ca.crt").write_bytes(certs.cert_pem(ca))
    token = secrets.token_hex(24)
    (pki / "admin.token").write_text(token + "\n")
    (pki / "tokens.csv").write_text(f'{token},test-admin,test-admin,"system:masters"\n')  # last: "done"


def _write_kubeconfig(api: KubeAPI) -> None:
    """JSON is YAML: kubectl and the webhook's client read it as they read any kubeconfig."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": api.url, "certificate-authority": str(api.ca)}}],
        "users": [{"name": "test-admin", "user": {"token": api.token_file.read_text().strip()}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test-admin"}}],
    }
    api.kubeconfig.write_text(json.dumps(config, indent=1))
    api.kubeconfig.chmod(0o600)


def _write_env(api: KubeAPI) -> None:
    (api.state / "env").write_text("".join(f"{name}={value}\n" for name, value in api.env.items()))


def _etcd_argv(assets: Path, state: Path, client_url: str) -> list[str]:
    peer_url = f"http://127.0.0.1:{free_port()}"
    data = state / "etcd-data"
    data.mkdir(mode=0o700, exist_ok=True)
    return [str(assets / "etcd"), "--name", "test", "--data-dir", str(data),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"test={peer_url}", "--unsafe-no-fsync"]


def _apiserver_argv(assets: Path, api: KubeAPI, etcd_url: str) -> list[str]:
    """../shared's flags: RBAC (plus Node, as real clusters run), token and ServiceAccount
    authentication, the stock admission chain, nothing listening beyond 127.0.0.1."""
    pki = api.ca.parent
    return [str(assets / "kube-apiserver"), "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(api.port),
            "--cert-dir", str(pki), "--tls-cert-file", str(pki / "apiserver.crt"),
            "--tls-private-key-file", str(pki / "apiserver.key"),
            "--token-auth-file", str(pki / "tokens.csv"), "--anonymous-auth=false",
            "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/24", "--endpoint-reconciler-type", "none",
            "--profiling=false", "--allow-privileged=true"]


def _spawn(state: Path, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """In its own process group, so that stopping it stops whatever it started too."""
    with (state / "logs" / f"{name}.log").open("ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            state = f"exited {process.returncode}" if process.returncode is not None else "not ready"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise StartError(f"{Path(str(process.args[0])).name} {state}; end of {log}:\n{tail}")
        time.sleep(0.2)


def session(api: KubeAPI) -> requests.Session:
    """The admin's HTTP session, for tests that send many requests (a kubectl each is too slow)."""
    session = requests.Session()
    session.trust_env = False  # no proxies for 127.0.0.1; REQUESTS_CA_BUNDLE would override `verify`
    session.verify = str(api.ca)
    session.headers["Authorization"] = "Bearer " + api.token_file.read_text().strip()
    return session


def _status(session: requests.Session, method: str, url: str, body: object = None) -> int:
    """The HTTP status, or 0 while nothing listens yet."""
    try:
        return session.request(method, url, json=body, timeout=5).status_code
    except requests.RequestException:
        return 0


def _etcd_healthy(url: str) -> bool:
    with requests.Session() as session:
        session.trust_env = False
        try:
            return session.get(f"{url}/health", timeout=5).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False


def _default_service_account(session: requests.Session, url: str) -> bool:
    """No controller-manager creates `default/default`, which ServiceAccount admission needs for
    Pods; 404 until the API server's bootstrap has created the `default` namespace."""
    status = _status(session, "POST", f"{url}/api/v1/namespaces/default/serviceaccounts",
                     {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    return status in (201, 409)


def _end(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """kube-apiserver before etcd (the reverse of starting), each group TERM, then KILL."""
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_SECONDS)
