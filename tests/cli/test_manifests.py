"""`podmedic inject | explain | uninject` as users run them: the real console scripts in
subprocesses (exit codes, stderr, no tracebacks), and equivalence with the webhook."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests import pods
from tests.conftest import DATA, ROOT
from tests.pods import apply_checked, container, patch_of, review

BIN = Path(sys.executable).parent


def cli(*args: str, stdin: str = "", script: str = "podmedic") -> subprocess.CompletedProcess[str]:
    exe = BIN / script
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "webhook.cli", *args]
    return subprocess.run(cmd, input=stdin, text=True, capture_output=True, timeout=60, cwd=ROOT)


def test_parse_error_names_file_document_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod: x\nmetadata: {}\n")
    done = cli("inject", "-f", str(bad))
    assert done.returncode == 1
    assert f"{bad}: document 1, line 5" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_missing_file_and_bad_flags_are_usage_errors(tmp_path):
    done = cli("inject", "-f", str(tmp_path / "nope.yaml"))
    assert done.returncode == 1 and "cannot read" in done.stderr and "Traceback" not in done.stderr
    done = cli("inject", "-f", "-", "--namespace-annotations", "novalue", stdin="kind: Pod\n")
    assert done.returncode == 1 and "expected KEY=VALUE" in done.stderr


def test_a_quantity_with_a_huge_exponent_is_answered_at_once():
    """`cpu: 1e1000000000` made `podmedic inject` compute the exact power for ever (killed after
    20 s, tried); now the value is out of range, read as unreadable, and the pod is injected."""
    pod = pods.pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1e1000000000"}}
    done = cli("inject", "-f", "-", stdin=json.dumps(pod))
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["metadata"]["annotations"]["podmedic.io/status"]


def test_unknown_kind_passes_through_with_a_note():
    text = "# keep me\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
    done = cli("inject", "-f", "-", stdin=text)
    assert done.returncode == 0
    assert done.stdout == text  # byte for byte, separators and comments included
    assert "kind 'Widget' has no pod template" in done.stderr and "Service" not in done.stderr


def test_directory_and_stdin_and_json(tmp_path):
    (tmp_path / "a.yaml").write_text(json.dumps(pods.pod()))
    (tmp_path / "b.json").write_text(json.dumps(pods.pod(name="other")))
    done = cli("inject", "-f", str(tmp_path))
    assert done.returncode == 0 and done.stdout.count("podmedic.io/status") == 2
    done = cli("inject", "-f", "-", stdin=json.dumps(pods.pod()))
    assert json.loads(done.stdout)["metadata"]["annotations"]["podmedic.io/status"]


@pytest.mark.parametrize("mode", ["inject", "explain", "uninject"])
def test_a_directory_without_manifests_is_an_input_error(tmp_path, mode):
    """`-f DIR` naming a directory with no .yaml, .yml or .json file (a typo'd path, manifests
    named .yaml.tpl) exited 0 with no output and no note, as if there was nothing to do. As
    kubectl's "error: no objects passed to apply", it is now an input error naming the directory,
    and nothing is written, even for the other -f."""
    (tmp_path / "README.txt").write_text("kind: Pod\n")
    (tmp_path / "deploy.yaml.tpl").write_text(json.dumps(pods.pod()))
    done = cli(mode, "-f", "-", "-f", str(tmp_path), stdin=json.dumps(pods.pod()))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"podmedic {mode}: {tmp_path}: no .yaml, .yml or .json file in this directory\n"


def test_document_that_cannot_be_injected_exits_2():
    broken = pods.pod(container("app", ports=[{"containerPort": 80}]), container("app"))  # duplicate names
    done = cli("inject", "-f", "-", stdin=json.dumps(broken))
    assert done.returncode == 2 and "could not be injected" in done.stderr
    assert json.loads(done.stdout) == broken  # passed through unchanged


def test_pod_not_shaped_like_a_pod_exits_2_without_traceback():
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: 5\n"
    done = cli("inject", "-f", "-", stdin=text)
    assert done.returncode == 2 and "could not be injected" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == text
    explained = cli("explain", "-f", "-", "-o", "json", stdin=text)
    assert json.loads(explained.stdout)[0]["reason"] == "malformed-pod"
    assert "spec.containers has the wrong type" in json.loads(explained.stdout)[0]["detail"]


def test_explain_formats():
    text = json.dumps(pods.pod(container(command=["/app"])))
    table = cli("explain", "-f", "-", stdin=text)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:4] == ["WORKLOAD", "CONTAINER", "FEATURE", "RESULT"]
    assert "no-probe-port" in table.stdout
    rows = json.loads(cli("explain", "-f", "-", "-o", "json", stdin=text).stdout)
    probes = next(r for r in rows if r["feature"] == "probes")
    assert probes == {"workload": "Pod/web", "namespace": "demo", "feature": "probes", "applied": False,
                      "reason": "no-probe-port", "container": "app", "level": "global",
                      "why": "no TCP containerPort and no probe-port annotation"}
    assert YAML(typ="safe").load(cli("explain", "-f", "-", "-o", "yaml", stdin=text).stdout) == rows


def test_namespace_settings_from_file_and_labels():
    pod = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]))
    del pod["metadata"]["namespace"]  # so -n decides
    text = json.dumps(pod)
    plain = cli("inject", "-f", "-", "--namespaces-file", str(DATA / "namespaces.yaml"), "-n", "plain", stdin=text)
    assert plain.returncode == 0 and "podmedic.io/status" not in plain.stdout
    restricted = cli("explain", "-f", "-", "-o", "json", "--namespace-labels",
                     "pod-security.kubernetes.io/enforce=restricted", "--namespace-annotations",
                     "podmedic.io/inject=enabled", stdin=text)
    logs = next(r for r in json.loads(restricted.stdout) if r["feature"] == "logs")
    assert logs["reason"] == "psa-forbids-hostpath"


def test_kubectl_plugin(tmp_path):
    plugin = BIN / "kubectl-podmedic"
    if not plugin.exists():
        pytest.skip("the package is not installed (make venv installs the kubectl-podmedic script)")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = subprocess.run(["kubectl", "podmedic", "explain", "-f", "-"], input=json.dumps(pods.pod()), text=True,
                          capture_output=True, env=env, timeout=60)
    assert done.returncode == 0 and "WORKLOAD" in done.stdout


MATRIX = {
    "bare": pods.pod(),
    "controller": pods.controller_pod(),
    "command-args": pods.pod(container(command=["/a"], args=["-x"], ports=[{"containerPort": 1}])),
    "args-only": pods.pod(container(args=["-x"])),
    "sidecars": pods.pod(container(command=["/a"]), initContainers=[container("mesh", restartPolicy="Always",
                                                                              ports=[{"containerPort": 2}])]),
    "exec-prestop": pods.pod(container(command=["/a"], lifecycle={"preStop": {"exec": {"command": ["/bye"]}}})),
    "non-root": pods.pod(container(command=["/a"]), securityContext={"runAsNonRoot": True, "runAsUser": 7}),
}


@pytest.mark.parametrize("namespace", ["demo", "supervised", "restricted", "tuned"])
@pytest.mark.parametrize("shape", sorted(MATRIX))
def test_cli_equals_webhook_for_pods(server, shape, namespace):
    original = copy.deepcopy(MATRIX[shape])
    original["metadata"]["namespace"] = namespace
    answer = server.post(review(original, namespace=namespace)).json()
    expected = apply_checked(original, patch_of(answer))
    done = cli("inject", "-f", "-", "--namespaces-file", str(DATA / "namespaces.yaml"), stdin=json.dumps(original))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


def test_cli_equals_webhook_for_workload_templates(server):
    template = {"metadata": {"labels": {"app": "w"}}, "spec": MATRIX["command-args"]["spec"]}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "supervised"},
                  "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template}}
    done = cli("inject", "-f", "-", "--namespaces-file", str(DATA / "namespaces.yaml"), stdin=json.dumps(deployment))
    injected = json.loads(done.stdout)["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(template)}
    expected = apply_checked(pod, patch_of(server.post(review(pod, namespace="supervised")).json()))
    assert injected == {"metadata": expected["metadata"], "spec": expected["spec"]}


def test_closed_stdin_is_an_input_error():
    """`-f -` with standard input closed (`<&-`: sys.stdin is None) was an AttributeError traceback."""
    exe = BIN / "podmedic"
    for mode in ("inject", "explain", "uninject"):
        done = subprocess.run(["sh", "-c", f'exec "{exe}" {mode} -f - <&-'], text=True, capture_output=True,
                              timeout=60, cwd=ROOT)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and "<stdin>: cannot read: standard input is closed" in done.stderr


@pytest.mark.parametrize("value", ["2024-01-01", "2024-01-01T10:00:00Z", "!!binary aGVsbG8=", "!custom x"])
def test_value_json_cannot_hold_fails_its_document_only(value):
    """A YAML date, binary or tagged value (an unquoted date annotation) has no JSON form, so no pod
    the API server would send: that document exits 2 unchanged, the others are still injected (was
    a TypeError traceback and no output at all)."""
    bad = f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations: {{deployed: {value}}}\n" \
          "spec:\n  containers: [{name: c, image: x}]\n"
    good = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: good}\nspec:\n  containers: [{name: c, image: x}]\n"
    done = cli("inject", "-f", "-", stdin=bad + good)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "document 0: Pod/bad could not be injected" in done.stderr
    assert done.stdout.startswith(bad) and done.stdout.count("podmedic.io/status") == 1
    explained = cli("explain", "-f", "-", "-o", "json", stdin=bad)
    assert explained.returncode == 2 and json.loads(explained.stdout)[0]["reason"] == "malformed-pod"


@pytest.mark.parametrize("argv", [["inject", "-f", "-", "--bogus"], ["inject"], ["explain", "-f", "-", "-o", "xml"],
                                  ["uninject", "-f"], ["uninject", "-f", "-", "-n", "x"]], ids=" ".join)
def test_usage_errors_exit_1(argv):
    """Exit 1 is "usage or input error" and 2 "a document could not be injected" (`--help`): argparse's
    own status 2 for a bad flag made a typo look like a document podmedic could not inject (the other
    commands keep argparse's 2, tests/cli/test_env.py)."""
    done = cli(*argv, stdin="kind: Service\n")
    assert done.returncode == 1 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_alias_bomb_fails_its_document_without_hanging():
    """Nine levels of ten aliases (a billion laughs) load as a small graph but expand to 10**9
    scalars in the pod the API server would get: the CLI hung (and grew without bound) turning it
    into JSON. Larger than maxRequestBytes once expanded, it fails its document only."""
    lines = ["apiVersion: v1", "kind: Pod", "metadata:", "  name: bomb", "  labels:", "    l0: &a0 [" + ", ".join("x" * 10) + "]"]
    lines += [f"    l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = "\n".join([*lines, "spec:", "  containers: [{name: c, image: x}]"]) + "\n"
    good = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: good}\nspec:\n  containers: [{name: c, image: x}]\n"
    done = cli("inject", "-f", "-", stdin=bomb + good)  # cli()'s timeout: 60 s
    assert done.returncode == 2 and "document 0: Pod/bomb could not be injected" in done.stderr
    assert done.stdout.startswith(bomb) and done.stdout.count("podmedic.io/status") == 1
    assert "once its YAML aliases are expanded" in done.stderr


def test_a_pod_over_max_request_bytes_is_blamed_on_its_size_not_on_aliases(tmp_path):
    """A pod simply larger than maxRequestBytes, with no alias in it, was refused for "too many
    YAML aliases". The refusal now gives its size and the limit, and names aliases only when
    they expanded it (test_alias_bomb_fails_its_document_without_hanging)."""
    config = tmp_path / "config.yaml"
    config.write_text("maxRequestBytes: 2000\n")
    pod = pods.pod()
    pod["metadata"]["annotations"] = {"note": "x" * 3000}
    done = cli("inject", "-f", "-", "--config", str(config), stdin=json.dumps(pod))
    assert done.returncode == 2 and done.stdout == json.dumps(pod)
    assert "could not be injected: the pod is about 3" in done.stderr
    assert "bytes of JSON, over maxRequestBytes (2000)\n" in done.stderr and "alias" not in done.stderr


@pytest.mark.parametrize("mode", ["inject", "uninject"])
def test_deep_nesting_is_an_input_error(mode):
    """1000 nested flow lists overflow ruamel's recursive parser: a RecursionError traceback before."""
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: " + "[" * 1000 + "]" * 1000 + "}}\n"
    done = cli(mode, "-f", "-", stdin=text)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-300:]
    assert "<stdin>: document 0: nested too deeply" in done.stderr and done.stdout == ""


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_yaml_directive_is_read_and_kept(version):
    """`%YAML 1.2` (or 1.1) before the first `---` made valid input fail ("expected '<document
    start>', but found '<stream end>'"): the stream was split at `---`, leaving the directive alone
    as document 0. The directive belongs to the document after it, also after a `...` end marker."""
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: x}\n"
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
    stream = f"%YAML {version}\n---\n{pod}...\n%YAML {version}\n---\n{pod}...\n%YAML {version}\n# a comment\n---\n{service}"
    done = cli("inject", "-f", "-", stdin=stream)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    plain = cli("inject", "-f", "-", stdin=pod).stdout
    assert plain != pod and done.stdout == (f"%YAML {version}\n---\n{plain}...\n%YAML {version}\n---\n{plain}"
                                            f"...\n%YAML {version}\n# a comment\n---\n{service}")
    assert cli("uninject", "-f", "-", stdin=stream).stdout == stream  # nothing to remove: byte for byte


def _pull_secrets_config(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text("toolbox:\n  imagePullSecrets: [regcred]\n")
    return str(path)


def _deployment(template_spec: dict) -> str:
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "demo"},
                       "spec": {"selector": {"matchLabels": {"app": "w"}},
                                "template": {"metadata": {"labels": {"app": "w"}}, "spec": template_spec}}})


def test_offline_inject_never_takes_the_service_accounts_pull_secrets_away(tmp_path):
    """At admission the ServiceAccount plugin copies the ServiceAccount's pull secrets into a pod
    that lists none. A template injected offline that gained toolbox.imagePullSecrets would list
    some, so its pods would lose the ServiceAccount's (and the app's image might no longer pull):
    offline, such a template gets no pull secrets and none of the features that need podmedic's
    image (pull-secrets-offline); its probes still go in."""
    config = _pull_secrets_config(tmp_path)
    text = _deployment(copy.deepcopy(MATRIX["command-args"]["spec"]))
    done = cli("inject", "-f", "-", "--config", config, "--namespace-annotations", "podmedic.io/inject=enabled",
               "podmedic.io/supervisor=enabled", stdin=text)
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in spec and "initContainers" not in spec
    assert "livenessProbe" in spec["containers"][0]
    explained = cli("explain", "-f", "-", "-o", "json", "--config", config, "--namespace-annotations",
                    "podmedic.io/inject=enabled", "podmedic.io/supervisor=enabled", stdin=text)
    reasons = {(r["feature"], r["reason"]) for r in json.loads(explained.stdout)}
    assert {("supervisor", "pull-secrets-offline"), ("logs", "pull-secrets-offline"),
            ("forensics", "pull-secrets-offline")} <= reasons
    why = next(r["why"] for r in json.loads(explained.stdout) if r["reason"] == "pull-secrets-offline")
    assert "webhook" in why and "imagePullSecrets" in why


def test_offline_inject_adds_pull_secrets_to_a_template_that_lists_its_own(tmp_path):
    """A template listing pull secrets of its own gets no ServiceAccount's at admission anyway:
    adding podmedic's after them takes nothing away."""
    spec = copy.deepcopy(MATRIX["command-args"]["spec"])
    spec["imagePullSecrets"] = [{"name": "own"}]
    done = cli("inject", "-f", "-", "--config", _pull_secrets_config(tmp_path), "--namespace-annotations",
               "podmedic.io/inject=enabled", "podmedic.io/supervisor=enabled", stdin=_deployment(spec))
    assert done.returncode == 0, done.stderr
    injected = json.loads(done.stdout)["spec"]["template"]["spec"]
    assert injected["imagePullSecrets"] == [{"name": "own"}, {"name": "regcred"}]
    assert "podmedic-toolbox" in {c["name"] for c in injected["initContainers"]}


GOOD_POD = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: good}\nspec:\n  containers: [{name: c, image: x}]\n"


@pytest.mark.parametrize("mode", ["inject", "explain", "uninject"])
@pytest.mark.parametrize("kind", ["[Pod]", "{a: 1}"])
def test_a_kind_that_is_not_a_string_passes_its_document_through(mode, kind):
    """`kind: [Pod]` or `kind: {a: 1}` was a TypeError traceback (unhashable type) and no output at
    all: the document now passes through with a note, the others are still processed."""
    odd = f"apiVersion: v1\nkind: {kind}\nmetadata: {{name: odd}}\n"
    done = cli(mode, "-f", "-", stdin=odd + GOOD_POD)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-300:]
    assert f"<stdin>: document 0: kind is not a string; passed through" in done.stderr
    if mode == "inject":
        assert done.stdout.startswith(odd) and done.stdout.count("podmedic.io/status") == 1


@pytest.mark.parametrize("mode", ["inject", "explain", "uninject"])
@pytest.mark.parametrize("items", ["5", "abc", "{kind: Pod}"])
def test_list_items_that_are_not_a_list_pass_through(mode, items):
    """`kind: List` with `items: 5` was a TypeError traceback (int is not iterable) and no output;
    `items: abc` was read letter by letter, a note per letter. Now one note, the document
    unchanged, the others processed."""
    odd = f"apiVersion: v1\nkind: List\nitems: {items}\n"
    done = cli(mode, "-f", "-", stdin=odd + GOOD_POD)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-300:]
    assert done.stderr == "podmedic: <stdin>: document 0: List items is not a list; passed through\n"
    if mode == "inject":
        assert done.stdout.startswith(odd) and done.stdout.count("podmedic.io/status") == 1


@pytest.mark.parametrize("mode", ["inject", "uninject"])
def test_an_integer_too_long_to_read_names_its_document(mode):
    """An integer of more than 4300 digits (Python's limit for reading one) was reported as
    "Exceeds the limit (4300 digits) for integer string conversion ...; use
    sys.set_int_max_str_digits()", and an unquoted `2020-13-45` as "month must be in 1..12": no
    file, no document, no line."""
    huge = "1" + "0" * 5000
    text = GOOD_POD + f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  priority: {huge}\n"
    done = cli(mode, "-f", "-", stdin=text)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr == (f"podmedic {mode}: <stdin>: document 1, line 12: a number of 5001 digits, more than "
                           "the 4300 that can be read\n")
    done = cli(mode, "-f", "-", stdin=GOOD_POD + "---\nkind: ConfigMap\ndata: {day: 2020-13-45}\n")
    assert done.returncode == 1 and done.stdout == ""  # a date that is none ("month must be in 1..12") too
    assert done.stderr == f"podmedic {mode}: <stdin>: document 1: a value cannot be read: month must be in 1..12\n"


def test_an_integer_beyond_64_bits_is_read_as_the_webhook_reads_it():
    """A containerPort of 10**29 reached the engine as a Python integer, its probe's port too, and
    encoding the patch raised "TypeError: Integer exceeds 64-bit range": a traceback and no output
    at all. The webhook's JSON decoder reads such a number as a float; so does the CLI now."""
    odd = pods.pod(container("app", ports=[{"containerPort": 10**29}]))
    text = json.dumps(odd) + "\n"
    done = cli("inject", "-f", "-", stdin=text)
    assert "Traceback" not in done.stderr and done.returncode in (0, 2), done.stderr[-300:]
    assert json.loads(done.stdout)["metadata"]["annotations"]["podmedic.io/status"]
    rows = json.loads(cli("explain", "-f", "-", "-o", "json", stdin=text).stdout)
    assert next(r for r in rows if r["feature"] == "probes")["reason"] == "no-probe-port"  # a float port: none


@pytest.mark.parametrize("value", [".inf", ".nan", "1e400"])
def test_a_number_json_cannot_hold_fails_its_document_only(value):
    """Reading the pod as the webhook does, `.inf` (which JSON cannot hold: kubectl refuses such a
    manifest) is no longer passed on as a float and the document silently injected. Its message
    said "quote it", which gives a string where a number belongs: it says to use a number now.
    `1e400` is read as infinity too, and was told about ".inf or .nan", which it did not write:
    the message now names numbers beyond JSON's range as well."""
    bad = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: bad}}\nspec:\n  containers: [{{name: c, image: x, " \
          f"resources: {{limits: {{cpu: {value}}}}}}}]\n"
    done = cli("inject", "-f", "-", stdin=bad + GOOD_POD)
    assert done.returncode == 2 and done.stderr == (
        "podmedic: <stdin>: document 0: Pod/bad could not be injected: a number JSON cannot hold (.inf, .nan, "
        "or beyond its range such as 1e400): replace it with a finite number\n")  # was "quote it": a string is no number either
    assert done.stdout.startswith(bad) and done.stdout.count("podmedic.io/status") == 1


@pytest.mark.parametrize("data,problem", [
    (b"kind: Namespace\nmetadata: {name: default, labels: " + b"[" * 10000 + b"\n", "nested too deeply to read"),
    (b"kind: Namespace\nmetadata: {name: default, uid: 1" + b"0" * 5000 + b"}\n",
     "a number of 5001 digits, more than the 4300 that can be read"),
], ids=["deep", "huge-number"])
def test_a_namespaces_file_that_cannot_be_read_is_named(tmp_path, data, problem):
    """Ten thousand `[` in `--namespaces-file` were a RecursionError traceback (from PyYAML), a
    huge number Python's "use sys.set_int_max_str_digits()" without the file's name."""
    path = tmp_path / "ns.yaml"
    path.write_bytes(data)
    done = cli("inject", "-f", "-", "--namespaces-file", str(path), stdin=GOOD_POD)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-300:]
    assert done.stderr == f"podmedic inject: namespaces file {path} cannot be read: {problem}\n"


def test_a_document_that_cannot_be_injected_says_why():
    """"document 0: Pod/x could not be injected" said where but not what was wrong: the reader had
    to run `podmedic explain` to learn that spec.containers was 5. The line now carries the reason."""
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: 5\n"
    done = cli("inject", "-f", "-", stdin=text)
    assert done.returncode == 2 and done.stdout == text
    detail = json.loads(cli("explain", "-f", "-", "-o", "json", stdin=text).stdout)[0]["detail"]
    assert done.stderr == f"podmedic: <stdin>: document 0: Pod/x could not be injected: {detail}\n"


def test_a_yaml_alias_is_patched_once_per_place_it_is_used():
    """Two containers sharing one env list by a YAML alias (`env: &env` ... `env: *env`), and a
    top-level `x-env` the list is anchored at: the patch was applied to the one shared list once
    per container, so each got PODMEDIC_POD_NAME twice and x-env got them too. Each place now
    gets its own copy, patched once, and the pod is the one the webhook would make."""
    text = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nx-env: &env\n- {name: A, value: '1'}\n"
            "spec:\n  template:\n    spec:\n      containers:\n"
            "      - {name: a, image: x, env: *env, ports: [{containerPort: 80}]}\n"
            "      - {name: b, image: y, env: *env, ports: [{containerPort: 81}]}\n")
    done = cli("inject", "-f", "-", stdin=text)
    assert done.returncode == 0, done.stderr
    out = YAML(typ="safe").load(done.stdout)
    assert out["x-env"] == [{"name": "A", "value": "1"}]
    for c in out["spec"]["template"]["spec"]["containers"]:
        names = [e["name"] for e in c["env"]]
        assert names == ["A", "PODMEDIC_POD_NAME", "PODMEDIC_POD_UID"], (c["name"], names)
    expanded = json.dumps(YAML(typ="safe").load(text))  # the same manifest without aliases
    assert YAML(typ="safe").load(cli("inject", "-f", "-", stdin=expanded).stdout)["spec"] == out["spec"]


def _run_bytes(*args: str, stdin: bytes) -> bytes:
    """The CLI on bytes in and out: text mode would hide the line endings under test."""
    exe = [str(BIN / "podmedic")] if (BIN / "podmedic").exists() else [sys.executable, "-m", "webhook.cli"]
    done = subprocess.run([*exe, *args], input=stdin, capture_output=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_crlf_file_keeps_its_line_endings(tmp_path, how):
    """A manifest saved with CRLF line endings (Windows editors, git autocrlf): from a file the
    reader turned every line ending into LF, so the whole output changed; from stdin a `---\\r`
    was no separator and a two-document stream was refused ("but found another document"), and
    a changed document was written with LF among unchanged CRLF ones. The file's line endings
    are kept: unchanged documents byte for byte, changed ones written with CRLF too."""
    service = "apiVersion: v1\r\nkind: Service\r\nmetadata: {name: s}  # keep\r\n"
    pod = ("---\r\napiVersion: v1\r\nkind: Pod\r\nmetadata: {name: p}\r\nspec:\r\n  containers:\r\n"
           "  - {name: a, image: x, ports: [{containerPort: 80}]}\r\n")
    path = tmp_path / "crlf.yaml"
    path.write_bytes((service + pod).encode())
    args = ["-f", str(path)] if how == "file" else ["-f", "-"]
    for mode in ("inject", "uninject"):
        done = _run_bytes(mode, *args, stdin=path.read_bytes())
        out = done.decode()
        assert out.startswith(service) and out.count("\n") == out.count("\r\n"), out
        path.write_bytes(done)
    safe = YAML(typ="safe")
    assert list(safe.load_all(out)) == list(safe.load_all(service + pod))  # uninject(inject(x)) == x


def test_a_template_shared_by_two_workloads_is_patched_only_where_it_is_injected(tmp_path):
    """Deployment d1 (namespace a, opted in) and d2 (namespace b, not opted in) sharing one pod
    template by a YAML alias (`template: &t` / `template: *t`), or one whole `spec`: the copy
    made for a shared node started below the template, so the patch went into the one shared map
    and d2 was written injected with namespace a's settings while `explain` said it was skipped.
    Every shared node from the document's root down is now copied where the patch goes, so the
    output is the one the same manifest without aliases gives."""
    namespaces = _namespaces_a_and_b(tmp_path)
    pod = "metadata: {labels: {app: x}}\n      spec:\n        containers:\n" \
          "        - {name: c, image: x, ports: [{containerPort: 80}]}\n"
    shared_template = ("apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n"
                       "  metadata: {name: d1, namespace: a}\n  spec:\n    template: &t\n      " + pod +
                       "- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d2, namespace: b}\n"
                       "  spec:\n    template: *t\n")
    shared_spec = ("apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n"
                   "  metadata: {name: d1, namespace: b}\n  spec: &s\n    template:\n      " + pod +
                   "- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d2, namespace: a}\n  spec: *s\n")
    for text in (shared_template, shared_spec):
        done = cli("inject", "-f", "-", "--namespaces-file", namespaces, stdin=text)
        assert done.returncode == 0, done.stderr
        expanded = json.dumps(YAML(typ="safe").load(text))  # the same manifest without aliases
        plain = cli("inject", "-f", "-", "--namespaces-file", namespaces, stdin=expanded)
        out = YAML(typ="safe").load(done.stdout)
        assert out == json.loads(plain.stdout)
        assert [bool(item["spec"]["template"].get("metadata", {}).get("annotations")) for item in out["items"]] \
            == [item["metadata"]["namespace"] == "a" for item in out["items"]]


def test_an_integer_too_long_to_read_is_found_where_it_is_quickly():
    """The line of a number too long to read was the first run of 4301 digits anywhere: a quoted
    string or a comment before it was named instead (line 5, the number on line 8), and the
    unanchored search took 28 s on 2 MB of long quoted digit strings before it printed the error.
    The line is now that of the integer ruamel could not read, found within about a second."""
    digits = "1" * 5000
    text = (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n# {digits}\ndata:\n  quoted: \"{digits}\"\n"
            f"spec:\n  n: {digits}\n")
    done = cli("inject", "-f", "-", stdin=text)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == ("podmedic inject: <stdin>: document 0, line 8: a number of 5000 digits, more than the "
                           "4300 that can be read\n")
    slow = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n" + "".join(
        f"  k{i}: \"{'1' * 4300}\"\n" for i in range(480)) + f"  z: {'2' * 4301}\n"  # 2 MB
    started = time.monotonic()
    done = cli("inject", "-f", "-", stdin=slow)
    assert done.returncode == 1 and "line 485: a number of 4301 digits" in done.stderr, done.stderr
    assert time.monotonic() - started < 5


def _namespaces_a_and_b(tmp_path: Path) -> str:
    """Namespace a opted in, b not: a shared template is injected in one and not the other."""
    namespaces = tmp_path / "ns.yaml"
    namespaces.write_text("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: "
                          "{name: a, annotations: {podmedic.io/inject: enabled}}}\n"
                          "- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n")
    return str(namespaces)


_D1 = "- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d1, namespace: a}\n"
_D2 = "- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d2, namespace: %s}\n"
_SHARED_TEMPLATE = "    template: &t\n      metadata: {labels: {app: x}}\n      spec:\n"


@pytest.mark.parametrize("text", [
    ("apiVersion: v1\nkind: List\nitems:\n" + _D1 + "  spec:\n" + _SHARED_TEMPLATE +
     "        containers:\n        - {name: app, image: x, command: [/app], env: &e [{name: A, value: '1'}]}\n"
     "        - {name: side, image: y, command: [/y], env: *e}\n" + _D2 % "b" + "  spec:\n    template: *t\n"),
    ("apiVersion: v1\nkind: List\nitems:\n" + _D1 + "  spec:\n" + _SHARED_TEMPLATE +
     "        volumes: [{name: data, emptyDir: {}}]\n        containers:\n"
     "        - {name: app, image: x, command: [/app], volumeMounts: &m [{name: data, mountPath: /data}]}\n"
     "        - {name: side, image: y, command: [/y], volumeMounts: *m}\n" + _D2 % "b" + "  spec:\n    template: *t\n"),
    ("apiVersion: v1\nkind: List\nitems:\n" + _D1 + "  spec: &s\n" + _SHARED_TEMPLATE +
     "        containers:\n        - &c {name: app, image: x, command: [/app], env: &e [{name: A, value: '1'}]}\n"
     "        - {name: side, image: y, command: [/y], env: *e}\n" + _D2 % "a" + "  spec: *s\n"
     "- apiVersion: apps/v1\n  kind: StatefulSet\n  metadata: {name: s3, namespace: b}\n"
     "  spec:\n    serviceName: s\n    template: *t\n"),
], ids=["env-in-shared-template", "mounts-in-shared-template", "shared-spec-and-template"])
def test_an_alias_inside_a_shared_template_is_patched_once_per_place(tmp_path, text):
    """A template shared by `template: *t` (or a `spec: *s`) whose containers share an `env: *e`
    or `volumeMounts: *m` inside it: the copy made of the shared template was not counted, so the
    aliases inside the copy looked used once and got podmedic's entries once per container --
    /var/log/podmedic, /podmedic and /podmedic-state mounted twice in each container, which the
    API server refuses. The output is now the one the same manifest without aliases gives."""
    namespaces = _namespaces_a_and_b(tmp_path)
    done = cli("inject", "-f", "-", "--namespaces-file", namespaces, stdin=text)
    assert done.returncode == 0, done.stderr
    out = YAML(typ="safe").load(done.stdout)
    for item in out["items"]:
        for c in item["spec"]["template"]["spec"]["containers"]:
            for key, name in (("env", "name"), ("volumeMounts", "mountPath")):
                values = [entry[name] for entry in c.get(key, [])]
                assert len(values) == len(set(values)), (item["metadata"]["name"], c["name"], values)
    expanded = json.dumps(YAML(typ="safe").load(text))  # the same manifest without aliases
    assert out == json.loads(cli("inject", "-f", "-", "--namespaces-file", namespaces, stdin=expanded).stdout)


def test_a_crlf_document_with_comments_round_trips_byte_for_byte(tmp_path):
    """Comments inside a changed CRLF document came out ending in \\r\\r\\n: ruamel keeps a CRLF
    line's \\r in its comment tokens and every \\n was then written as \\r\\n, so
    uninject(inject(x)) was not x. Each line ending is now written once, as the file's."""
    text = ("apiVersion: v1\r\nkind: Pod\r\nmetadata:\r\n  name: a\r\n# full-line comment\r\nspec:\r\n"
            "  containers:\r\n  - name: app   # trailing\r\n    image: x\r\n    command: [/app]\r\n"
            "    args:\r\n    - |\r\n      line1\r\n      line2\r\n").encode()
    path = tmp_path / "crlf.yaml"
    path.write_bytes(text)
    injected = _run_bytes("inject", "-f", str(path), stdin=b"")
    assert b"\r\r" not in injected and injected.count(b"\n") == injected.count(b"\r\n"), injected
    path.write_bytes(injected)
    assert _run_bytes("uninject", "-f", str(path), stdin=b"") == text


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_file_with_cr_line_endings_is_read(tmp_path, how):
    """Classic Mac line endings (\\r only) were read as universal newlines until CRLF files kept
    theirs; then a two-document CR file was one line to ruamel and refused ("but found another
    document"). A text with \\r but no \\r\\n is read as \\n lines again, and written with them."""
    pod = ("apiVersion: v1\rkind: Pod\rmetadata:\r  name: %s  # comment\rspec:\r  containers:\r"
           "  - name: app\r    image: x\r    command: [/app]\r    ports: [{containerPort: 80}]\r")
    path = tmp_path / "cr.yaml"
    path.write_bytes((pod % "a" + "---\r" + pod % "b").encode())
    args = ["-f", str(path)] if how == "file" else ["-f", "-"]
    out = _run_bytes("inject", *args, stdin=path.read_bytes()).decode()
    assert "\r" not in out and "  name: a  # comment\n" in out
    docs = list(YAML(typ="safe").load_all(out))
    assert [d["metadata"]["name"] for d in docs] == ["a", "b"]
    assert all(d["metadata"]["annotations"]["podmedic.io/status"] for d in docs)


def test_a_changed_document_with_mixed_line_endings_keeps_its_most_common_one():
    """One CRLF line in a document (a line pasted from a Windows editor) turned the whole changed
    document into CRLF. A changed document is now written with the line ending most of its lines
    have, either way."""
    lines = ["apiVersion: v1", "kind: Pod", "metadata:", "  name: a  # comment", "spec:", "  containers:",
             "  - name: app", "    image: x", "    command: [/app]", "    ports: [{containerPort: 80}]"]
    mostly_lf = "".join(line + ("\r\n" if i < 3 else "\n") for i, line in enumerate(lines)).encode()
    out = _run_bytes("inject", "-f", "-", stdin=mostly_lf)
    assert b"\r" not in out and b"  name: a  # comment\n" in out, out
    mostly_crlf = "".join(line + ("\n" if i == 3 else "\r\n") for i, line in enumerate(lines)).encode()
    out = _run_bytes("inject", "-f", "-", stdin=mostly_crlf)
    assert out.count(b"\n") == out.count(b"\r\n") and b"\r\r" not in out, out


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_json_file_with_a_byte_order_mark_is_written_as_json(tmp_path, how):
    """A JSON manifest saved with a UTF-8 byte order mark (Windows PowerShell's Out-File, Notepad)
    was taken for YAML, since the mark is no whitespace before its `{`: inject wrote ruamel's flow
    YAML, JSON braces around unquoted keys, that no JSON reader takes. It is JSON out again."""
    path = tmp_path / "pod.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(pods.pod()).encode())
    args = ["-f", str(path)] if how == "file" else ["-f", "-"]
    out = _run_bytes("inject", *args, stdin=path.read_bytes()).decode()
    assert json.loads(out)["metadata"]["annotations"]["podmedic.io/status"], out


@pytest.mark.parametrize("mode", ["inject", "explain", "uninject"])
def test_an_empty_file_name_is_a_usage_error(tmp_path, mode):
    """`-f ''` (`-f "$MANIFEST"` with the variable unset) was Path(''), which is `.`: every manifest
    under the working directory was read and written out, with exit 0. It is refused as every
    other empty file name is (env.path, tests/cli/test_paths.py), with the documented exit 1."""
    (tmp_path / "pod.yaml").write_text(json.dumps(pods.pod()))
    exe = [str(BIN / "podmedic")] if (BIN / "podmedic").exists() else [sys.executable, "-m", "webhook.cli"]
    done = subprocess.run([*exe, mode, "-f", ""], text=True, capture_output=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == "", done.stdout
    assert done.stderr.splitlines()[-1].endswith("argument -f/--filename: an empty file name"), done.stderr
