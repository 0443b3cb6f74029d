"""The admin's global configuration: merged over the embedded defaults, rejected loudly when bad
(a bad file stops `podmedic serve` with a message naming the key)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import podmedic
from webhook.cli import config
from webhook.toolbox.arch import goarch


def test_embedded_defaults():
    cfg = config.load()
    assert cfg.prefix == "podmedic.io/" and cfg.on_error == "allow" and cfg.max_request_bytes == 3 * 1024 * 1024
    assert cfg.defaults["probes"] == cfg.defaults["logs"] == cfg.defaults["forensics"] == "enabled"
    assert cfg.defaults["supervisor"] == "disabled" and cfg.defaults["inject"] == "disabled"


def test_file_is_merged_key_by_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("annotationPrefix: medic.example.com/\ndefaults: {probe-period-seconds: '20'}\n"
                    "logs: {namespaceRoots: {team-a: /mnt/cephfs/team-a}}\n")
    cfg = config.load(path)
    assert cfg.prefix == "medic.example.com/" and cfg.status_key == "medic.example.com/status"
    assert cfg.defaults["probe-period-seconds"] == "20" and cfg.defaults["probes"] == "enabled"
    assert cfg.logs.root_for("team-a") == "/mnt/cephfs/team-a" and cfg.logs.root_for("b") == "/mnt/cephfs/podmedic"


@pytest.mark.parametrize("text,message", [
    ("annotationPrefix: podmedic.io\n", "must end with '/'"),
    ("onError: maybe\n", "onError must be allow or deny"),
    ("defaults: {nonsense: x}\n", "unknown setting keys: nonsense"),
    ("defaults: {probe-period-seconds: often}\n", "defaults.probe-period-seconds: expected a whole number"),
    ("defaults: {log-path: ''}\n", "defaults need a value for: log-path"),
    ("logs: {hostRoot: relative/dir}\n", "logs.hostRoot: must be an absolute"),
    ("logs: {hostRoot: /}\n", "must not be the host's root"),
    ("logs: {namespaceRoots: {a: /x/../etc}}\n", "logs.namespaceRoots.a"),
    ("planMemoBytes: -1\n", "planMemoBytes: must be a whole number >= 0"),
    ("planMemoBytes: lots\n", "planMemoBytes: must be a whole number >= 0"),
    ("- a list\n", "top level must be a mapping"),
    ("logs: {janitor: {dryRun: 'no'}}\n", "logs.janitor.dryRun: must be true or false"),
    ("logs: {janitor: {minRetention: 7}}\n", "logs.janitor.minRetention: expected a duration"),
    ("logs: {janitor: {minRetention: 30d, maxRetention: 7d}}\n", "minRetention must not exceed maxRetention"),
    ("logs: {janitor: {runSeconds: 0}}\n", "logs.janitor.runSeconds: must be a whole number >= 1"),
    ("logs: {janitor: {roots: [relative]}}\n", "logs.janitor.roots.0: must be an absolute"),
    ("defaults: {log-retention: forever}\n", "defaults.log-retention: expected a duration"),
    ("key: [unclosed\n", "cannot read config"),
    ("onErorr: deny\n", "unknown key onErorr"),
    ("toolbox: {imagePullPolicy: Always, pullPolicy: Never}\n", "unknown key toolbox.pullPolicy"),
    ("logs: {hostroot: /mnt/x, janitor: {dryrun: false}}\n", "unknown keys logs.hostroot, logs.janitor.dryrun"),
    ("toolbox: {architectures: arm64}\n", "toolbox.architectures: must be a list"),
    ("toolbox: {architectures: []}\n", "toolbox.architectures: must list at least one"),
    ("toolbox: {architectures: [x86_64]}\n", "toolbox.architectures[0]: 'x86_64' is not a GOARCH name (amd64?)"),
    ("toolbox: {architectures: [amd64, aarch64]}\n", "toolbox.architectures[1]: 'aarch64' is not a GOARCH name (arm64?)"),
    ("toolbox: {architectures: [amd64, amd64]}\n", "toolbox.architectures[1]: 'amd64' is listed twice"),
])
def test_bad_configuration_is_rejected_with_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.load(path)


def test_toolbox_architectures_listed_by_the_admin(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("toolbox: {architectures: [amd64, arm64]}\n")
    assert config.load(path).toolbox.architectures == frozenset({"amd64", "arm64"})


def test_toolbox_architectures_default_to_the_toolbox_s_own(tmp_path, monkeypatch):
    """`podmedic toolbox build` records the toolbox's architecture; the embedded default is it (an
    image built for arm64 defaults to arm64)."""
    (tmp_path / "arch").write_text("arm64\n")
    monkeypatch.setenv("PODMEDIC_TOOLBOX_DIR", str(tmp_path))
    assert config.load().toolbox.architectures == frozenset({"arm64"})


def test_an_explicit_null_is_unset(tmp_path, monkeypatch):
    """defaults.yaml calls null "unset": the admin writing it gets the toolbox's own, as when
    leaving the key out (as `imagePullSecrets:` left empty is []). Before: refused (9aa80ab)."""
    (tmp_path / "arch").write_text("arm64\n")
    monkeypatch.setenv("PODMEDIC_TOOLBOX_DIR", str(tmp_path))
    path = tmp_path / "c.yaml"
    path.write_text("toolbox:\n  architectures: null\n")
    assert config.load(path).toolbox.architectures == frozenset({"arm64"})
    path.write_text("toolbox:\n  architectures:\n")
    assert config.load(path).toolbox.architectures == frozenset({"arm64"})


def test_without_a_recorded_architecture_none_is_checked(tmp_path, monkeypatch):
    """No built toolbox here (offline `podmedic inject` on a laptop, a checkout): the machine
    running the command says nothing of the image's architectures. Before: the machine's, so on
    an arm64 laptop an amd64-pinned pod lost its features."""
    monkeypatch.setenv("PODMEDIC_TOOLBOX_DIR", str(tmp_path / "none"))
    assert config.load().toolbox.architectures is None


@pytest.mark.parametrize("machine, arch", [("x86_64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"),
                                           ("armv7l", "arm"), ("ppc64le", "ppc64le"), ("s390x", "s390x")])
def test_machine_names_map_to_goarch(machine, arch):
    assert goarch(machine) == arch


def test_serve_refuses_to_start_with_a_bad_config(tmp_path, certs_dir):
    path = tmp_path / "c.yaml"
    path.write_text("onError: maybe\n")
    done = podmedic("serve", "--config", str(path), "--tls-cert-file", str(certs_dir / "tls.crt"),
                    "--tls-private-key-file", str(certs_dir / "tls.key"), "--namespaces-file", "examples/namespaces.yaml")
    assert done.returncode == 1 and "onError must be allow or deny" in done.stdout


@pytest.mark.parametrize("resources", ["5", "[cpu]"])
def test_toolbox_resources_must_be_a_mapping(tmp_path, resources):
    """Accepted before, the value broke every injection later: `podmedic inject --config` was a
    TypeError traceback in pod_level (and `serve` would have started and failed each review)."""
    path = tmp_path / "c.yaml"
    path.write_text(f"toolbox: {{resources: {resources}}}\n")
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x}]\n"
    done = podmedic("inject", "--config", str(path), "-f", "-", input=pod)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "toolbox.resources: must be a mapping" in done.stderr


def _check(tmp_path, text: str):
    """`podmedic inject --config` on a plain Service: only the configuration can fail."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return podmedic("inject", "--config", str(path), "-f", "-", input="kind: Service\n")


@pytest.mark.parametrize("text,message", [
    # Accepted before: every annotation key the webhook reads or writes would be one the API server
    # refuses (the marker, the quarantine label).
    ('annotationPrefix: "a b/"\n', "annotationPrefix: must be a DNS subdomain followed by '/' (e.g. podmedic.io/), got 'a b/'"),
    ("annotationPrefix: Podmedic.io/\n", "annotationPrefix: must be a DNS subdomain followed by '/' (e.g. podmedic.io/), got 'Podmedic.io/'"),
    ("annotationPrefix: /\n", "annotationPrefix: must be a DNS subdomain followed by '/' (e.g. podmedic.io/), got '/'"),
    # Accepted before: maxRequestBytes -1 made every review (and every `inject`) fail later; a
    # deadline of 0, below 0 or NaN answered every review late, unpatched.
    ("maxRequestBytes: -1\n", "maxRequestBytes: must be at least 1 (got -1)"),
    ("maxRequestBytes: 0\n", "maxRequestBytes: must be at least 1 (got 0)"),
    ("maxRequestBytes: true\n", "maxRequestBytes: expected a whole number (got True)"),
    ("maxRequestBytes: 1.5\n", "maxRequestBytes: expected a whole number (got 1.5)"),
    ("reviewDeadlineSeconds: 0\n", "reviewDeadlineSeconds: must be a finite number above 0 (got 0.0)"),
    ("reviewDeadlineSeconds: -1\n", "reviewDeadlineSeconds: must be a finite number above 0 (got -1.0)"),
    ("reviewDeadlineSeconds: .nan\n", "reviewDeadlineSeconds: must be a finite number above 0 (got nan)"),
    ("reviewDeadlineSeconds: .inf\n", "reviewDeadlineSeconds: must be a finite number above 0 (got inf)"),
    ("reviewDeadlineSeconds: true\n", "reviewDeadlineSeconds: expected a number (got True)"),
    # The message was only Python's ("could not convert string to float: 'soon'"), no key named.
    ("reviewDeadlineSeconds: soon\n", "reviewDeadlineSeconds: expected a number (got 'soon')"),
    ("maxRequestBytes: 3MiB\n", "maxRequestBytes: expected a whole number (got '3MiB')"),
    ("maxRequestBytes: [1]\n", "maxRequestBytes: expected a whole number (got [1])"),
    # Accepted before: the init container the webhook adds would carry `image: '[1]'` or an unknown
    # pull policy, and the API server would refuse every injected pod.
    ("toolbox: {image: [1]}\n", "toolbox.image: must be a container image name, a non-empty string without surrounding spaces (got [1])"),
    ("toolbox: {image: ''}\n", "toolbox.image: must be a container image name, a non-empty string without surrounding spaces (got '')"),
    ("toolbox: {image: null}\n", "toolbox.image: must be a container image name, a non-empty string without surrounding spaces (got None)"),
    ("toolbox: {image: ' x:1'}\n", "toolbox.image: must be a container image name, a non-empty string without surrounding spaces (got ' x:1')"),
    ("toolbox: {imagePullPolicy: Sometimes}\n", "toolbox.imagePullPolicy: must be one of Always, IfNotPresent, Never (got 'Sometimes')"),
    # The message was Python's ("'int' object has no attribute 'items'"), naming no key; a string
    # podOverridable was read letter by letter ("unknown setting keys: c, e, i, j, n, t").
    ("defaults: 5\n", "defaults: must be a mapping (got 5)"),
    ("defaults: null\n", "defaults: must be a mapping (got None)"),
    ("podOverridable: 5\n", "podOverridable: must be a list of setting keys (got 5)"),
    ("podOverridable: inject\n", "podOverridable: must be a list of setting keys (got 'inject')"),
    ("podOverridable: [[1]]\n", "podOverridable: must be a list of setting keys (got [[1]])"),
    ("toolbox: 5\n", "toolbox: must be a mapping (got 5)"),
    ("logs: 5\n", "logs: must be a mapping (got 5)"),
    ("logs: {namespaceRoots: 5}\n", "logs.namespaceRoots: must be a mapping (got 5)"),
    ("logs: {janitor: 5}\n", "logs.janitor: must be a mapping (got 5)"),
    # Accepted before and copied into the init containers of every injected pod, which the API
    # server refuses (a request that is no quantity, or above its limit).
    ("toolbox: {resources: {requests: 5}}\n", "toolbox.resources.requests: must be a mapping (got 5)"),
    ("toolbox: {resources: {requests: {cpu: lots}}}\n", "toolbox.resources.requests.cpu: expected a quantity such as 100m or 64Mi (got 'lots')"),
    ("toolbox: {resources: {limits: {memory: [1]}}}\n", "toolbox.resources.limits.memory: expected a quantity such as 100m or 64Mi (got [1])"),
    ("toolbox: {resources: {limits: {memory: -1Mi}}}\n", "toolbox.resources.limits.memory: expected a quantity such as 100m or 64Mi (got '-1Mi')"),
    ("toolbox: {resources: {request: {cpu: 1}}}\n", "toolbox.resources: unknown key 'request' (expected requests, limits)"),
    ("toolbox: {resources: {requests: {memory: 1Gi}}}\n", "toolbox.resources: requests.memory (1Gi) exceeds limits.memory (64Mi)"),
])
def test_a_value_the_server_cannot_use_is_refused_naming_its_key(tmp_path, text, message):
    """Each was accepted before (the comments say what it broke) or refused with Python's own
    message: now one line that names the key, exit 1, before anything is read or written."""
    done = _check(tmp_path, text)
    assert done.returncode == 1 and done.stderr == f"podmedic inject: {message}\n"


@pytest.mark.parametrize("name", ["Team A", "", "team_a", "a" * 64])
def test_namespace_roots_are_keyed_by_namespace_names(tmp_path, name):
    """Accepted before: a key no namespace can have (Kubernetes names them as DNS-1123 labels) left
    that root unused, the namespace's logs silently under hostRoot."""
    done = _check(tmp_path, f"logs: {{namespaceRoots: {{'{name}': /mnt/x}}}}\n")
    assert done.returncode == 1
    assert done.stderr == f"podmedic inject: logs.namespaceRoots: {name!r} is not a namespace name (DNS-1123 label)\n"


@pytest.mark.parametrize("data,problem", [
    (b"onError: allow\n# caf\xe9\n", "not UTF-8 (byte 0xe9 at offset 20)"),
    (b"maxRequestBytes: 1" + b"0" * 5000 + b"\n", "a number of 5001 digits, more than the 4300 that can be read"),
    (b"defaults: " + b"[" * 10000 + b"\n", "nested too deeply to read"),
], ids=["latin-1", "huge-number", "deep"])
def test_a_file_that_cannot_be_read_is_named(tmp_path, data, problem):
    """A Latin-1 byte was "'utf-8' codec can't decode byte 0xe9 in position 20: invalid
    continuation byte", a huge number Python's "use sys.set_int_max_str_digits()": neither named
    the file. Ten thousand `[` were a RecursionError traceback."""
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    done = podmedic("inject", "--config", str(path), "-f", "-", input="kind: Service\n")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-300:]
    assert done.stderr == f"podmedic inject: cannot read config {path}: {problem}\n"
