"""The injection marker as untrusted input: one schema, a writer the engine
uses and a parser uninject and the gate use. A malformed marker is a per-document error of
`podmedic uninject` (exit 2, the document written unchanged, never a traceback), the gate never
injects over any marker, and uninject(inject(x)) gives x back exactly -- `annotations: null`,
`command: []` and the other null or empty members included."""

from __future__ import annotations

import copy
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from tests import pods
from tests.conftest import ROOT
from tests.pods import container
from webhook import cli, engine
from webhook.cli import config as configfile
from webhook.cli import manifests
from webhook.engine import marker, uninject
from webhook.engine.decisions import Reason
from webhook.engine.marker import MarkerError
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

CONFIG = configfile.load()
KEY = "podmedic.io/status"
GOLDEN = ROOT / "tests" / "golden"
ARGS_MARK = "# podmedic-test-args:"
VALID = ('{"containers":{"app":{"supervisor":{"command":["/app"]},"probes":["readinessProbe"],'
         '"logs":{"mountPath":"/var/log/podmedic"},"forensics":{"preStop":null}}},'
         '"pod":{"volumes":["podmedic-toolbox"],"initContainers":["podmedic-toolbox"]},"version":2,'
         '"created":["/spec/volumes"],"replaced":{"/metadata/annotations":null}}')


def _with(**changes: Any) -> str:
    """VALID with top-level keys replaced (a value of ... deletes the key)."""
    data = json.loads(VALID)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


def _container(**record: Any) -> str:
    return _with(containers={"app": record})


DEEP = 2000
MALFORMED: dict[str, tuple[object, str]] = {
    "empty list": ("[]", "the marker must be an object, not a list"),
    "empty object": ("{}", "the marker lacks containers, version, created"),
    "partial: version only": ('{"version":1}', "the marker lacks containers, created"),
    "partial: no created": (_with(created=...), "the marker lacks created"),
    "partial: no containers": (_with(containers=...), "the marker lacks containers"),
    "string": ('"podmedic"', "the marker must be an object, not a string"),
    "number": ("1", "the marker must be an object, not a number"),
    "null": ("null", "the marker must be an object, not null"),
    "not JSON": ("{", "not JSON"),
    "empty text": ("", "not JSON"),
    "NaN": ("NaN", "not JSON"),
    "YAML, not JSON": ("containers: {}", "not JSON"),
    "a YAML null": (None, "must be a JSON string, not null"),
    "a YAML number": (1, "must be a JSON string, not a number"),
    "a YAML map": ({"version": 1}, "must be a JSON string, not an object"),
    "version 4": (_with(version=4), "version 4 is not supported"),
    "version as string": (_with(version="1"), "version '1' is not supported"),
    "version true": (_with(version=True), "version True is not supported"),
    "version 1.0": (_with(version=1.0), "version 1.0 is not supported"),
    "unknown top-level key": (_with(extra=1), "the marker has unknown key(s) 'extra'"),
    "containers a list": (_with(containers=[]), "containers must be an object, not a list"),
    "container record a list": (_with(containers={"app": []}), "containers['app'] must be an object, not a list"),
    "unknown feature": (_container(sidecar={}), "containers['app'] has unknown key(s) 'sidecar'"),
    "supervisor without command": (_container(supervisor={}), "containers['app'].supervisor lacks command"),
    "supervisor command a string": (_container(supervisor={"command": "/app"}),
                                    "containers['app'].supervisor.command must be a list of strings, not a string"),
    "supervisor command of numbers": (_container(supervisor={"command": [1]}),
                                      "containers['app'].supervisor.command[0] must be a string, not a number"),
    "supervisor extra key": (_container(supervisor={"command": None, "args": []}), "unknown key(s) 'args'"),
    "probes an object": (_container(probes={}), "containers['app'].probes must be a list of strings"),
    "probe not a probe field": (_container(probes=["command"]), "'command' is not one of readinessProbe"),
    "logs without mountPath": (_container(logs={}), "containers['app'].logs lacks mountPath"),
    "logs mountPath a number": (_container(logs={"mountPath": 5}), "logs.mountPath must be a string, not a number"),
    "forensics without preStop": (_container(forensics={}), "containers['app'].forensics lacks preStop"),
    "forensics a list": (_container(forensics=[None]), "containers['app'].forensics must be an object"),
    "pod without initContainers": (_with(pod={"volumes": []}), "pod lacks initContainers"),
    "pod volumes a string": (_with(pod={"volumes": "x", "initContainers": []}), "pod.volumes must be a list"),
    "pod volume names not strings": (_with(pod={"volumes": [{}], "initContainers": []}),
                                     "pod.volumes[0] must be a string, not an object"),
    "pull secrets in version 2": (_with(pod={"volumes": [], "initContainers": [], "imagePullSecrets": ["r"]}),
                                  "pod has unknown key(s) 'imagePullSecrets'"),
    "pull secret names not strings": (_with(version=3, pod={"volumes": [], "initContainers": [],
                                                            "imagePullSecrets": [{"name": "r"}]}),
                                      "pod.imagePullSecrets[0] must be a string, not an object"),
    "created a string": (_with(created="/spec"), "created must be a list of strings, not a string"),
    "created not a pointer": (_with(created=["spec/volumes"]), "created: 'spec/volumes' is not a JSON pointer"),
    "created numbers": (_with(created=[0]), "created[0] must be a string, not a number"),
    "replaced a list": (_with(replaced=[]), "replaced must be an object, not a list"),
    "replaced not a pointer": (_with(replaced={"metadata": None}), "replaced: 'metadata' is not a JSON pointer"),
    "replaced non-empty value": (_with(replaced={"/metadata/annotations": {"a": "b"}}),
                                 "replaced['/metadata/annotations'] must be null or empty, not an object"),
    "huge": (_with(created=["/" + "x" * (300 * 1024)]), "too long"),
    "huge unknown key": (_with(**{"k" * 100_000: 1}), "the marker has unknown key(s) 'kkkk"),
    "huge string": ('"' + "x" * (marker.MAX_LENGTH + 1) + '"', "too long"),
    "deeply nested list": ("[" * DEEP + "]" * DEEP, "not JSON"),
    "deeply nested preStop": (VALID.replace('"preStop":null', '"preStop":' + '{"a":' * DEEP + "1" + "}" * DEEP),
                              "not JSON"),
}


# ------------------------------------------------------------------ marker.parse / marker.write

@pytest.mark.parametrize("text,message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_markers_raise_marker_error(text: object, message: str) -> None:
    with pytest.raises(MarkerError) as caught:
        marker.parse(text)
    assert message in str(caught.value)
    assert len(str(caught.value)) <= MarkerError.MAX_MESSAGE  # a huge marker is not echoed back


def test_a_valid_marker_parses_and_writes_back_byte_for_byte() -> None:
    parsed = marker.parse(VALID)
    assert parsed["containers"]["app"]["supervisor"]["command"] == ["/app"]
    assert marker.write(parsed) == VALID


def _golden_markers() -> list[str]:
    found = []
    for path in sorted(GOLDEN.glob("*.injected.*")):
        for doc in YAML(typ="safe").load_all(path.read_text()):
            found += [v for k, v in _walk(doc) if k == KEY]
    return found


def _walk(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in [(k, v), *_walk(v)]]
    if isinstance(node, list):
        return [item for v in node for item in _walk(v)]
    return []


def test_every_golden_marker_parses_and_the_writer_reproduces_it() -> None:
    markers = _golden_markers()
    assert len(markers) >= 7
    for text in markers:
        assert marker.write(marker.parse(text)) == text


def test_write_orders_keys_as_documented_whatever_the_build_order() -> None:
    built = marker.build({}, {"volumes": [], "initContainers": []}, ["/spec/volumes"], {"/metadata": None})
    reordered = dict(reversed(list(built.items())))
    assert list(json.loads(marker.write(reordered))) == ["containers", "pod", "version", "created", "replaced"]  # type: ignore[arg-type]
    assert marker.write(marker.build({}, None, [], {})) == '{"containers":{},"version":2,"created":[]}'


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)
FUZZ = settings(max_examples=int(os.environ.get("PODMEDIC_FUZZ_EXAMPLES", "300")), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _mutate(value: Any, path: list[int], replacement: Any) -> Any:
    """Replace the node `path` selects (each step an index into a map's or list's children)."""
    if not path or not isinstance(value, (dict, list)) or not value:
        return replacement
    if isinstance(value, dict):
        key = list(value)[path[0] % len(value)]
        return {**value, key: _mutate(value[key], path[1:], replacement)}
    i = path[0] % len(value)
    return [*value[:i], _mutate(value[i], path[1:], replacement), *value[i + 1:]]


@FUZZ
@given(text=st.text(max_size=64) | JSON.map(json.dumps))
def test_parse_raises_only_marker_error_on_any_text(text: str) -> None:
    try:
        marker.parse(text)
    except MarkerError:
        pass


@FUZZ
@given(path=st.lists(st.integers(min_value=0, max_value=20), max_size=6), replacement=JSON)
def test_a_damaged_marker_is_refused_or_uninjects_without_error(path: list[int], replacement: Any) -> None:
    """Any sub-value of a real marker replaced by any JSON value: parse refuses it with
    MarkerError, or uninject applies it to the injected pod without any other exception."""
    injected = _inject(pods.pod(container(command=["/app"], ports=[{"containerPort": 80}])))
    text = json.dumps(_mutate(json.loads(injected["metadata"]["annotations"][KEY]), path, replacement))
    injected["metadata"]["annotations"][KEY] = text
    before = copy.deepcopy(injected)
    try:
        marker.parse(text)
    except MarkerError:
        with pytest.raises(MarkerError):
            uninject.template(injected, CONFIG)
        assert injected == before  # validated before the template is touched
        return
    assert uninject.template(injected, CONFIG)


# ------------------------------------------------------------------ the gate

def _inject(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod with the engine's patch applied (and validated), every feature on."""
    ns = Namespace("demo", {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled"}, {})
    outcome = engine.inject(copy.deepcopy(pod), StaticSource([ns]).get("demo"), CONFIG)
    return pods.apply_checked(pod, outcome.ops)


def _gate(annotations: dict[str, str]) -> engine.Outcome:
    ns = Namespace("demo", {"podmedic.io/inject": "enabled"}, {})
    pod = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), annotations=annotations)
    return engine.inject(pod, StaticSource([ns]).get("demo"), CONFIG)


@pytest.mark.parametrize("text", ["[]", "{}", "garbage", '{"version":1}'])
def test_the_gate_never_injects_over_a_marker_even_a_malformed_one(text: str) -> None:
    outcome = _gate({KEY: text})
    assert outcome.ops == []
    [decision] = outcome.report.decisions
    assert decision.reason is Reason.ALREADY_INJECTED
    assert decision.detail.startswith("malformed marker: ")


def test_the_gate_records_no_detail_for_a_well_formed_marker() -> None:
    [decision] = _gate({KEY: VALID}).report.decisions
    assert decision.reason is Reason.ALREADY_INJECTED and decision.detail == ""


# ------------------------------------------------------------------ podmedic uninject, as users run it

def podmedic(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webhook.cli", *args], input=stdin, text=True,
                          capture_output=True, timeout=60, cwd=ROOT)


def _pod_yaml(name: str, status: str | None, extra: str = "") -> str:
    annotations = f"  annotations:\n    {KEY}: {status}\n" if status is not None else ""
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{annotations}{extra}"
            f"spec:\n  containers:\n  - name: app\n    image: nginx\n    command: [/app]\n"
            f"    ports: [{{containerPort: 80}}]\n")


def test_uninject_malformed_markers_are_per_document_errors() -> None:
    good = _pod_yaml("good", None)
    injected = podmedic("inject", "-f", "-", stdin=good)
    assert injected.returncode == 0 and KEY in injected.stdout
    docs = {
        "list": _pod_yaml("list", "'[]'"),
        "partial": _pod_yaml("partial", """'{"version":1}'"""),
        "notjson": _pod_yaml("notjson", "'{'"),
        "number": _pod_yaml("number", "5"),
        "wrongtype": _pod_yaml("wrongtype", """'{"containers":{"app":{"supervisor":{"command":"x"}}},"version":1,"created":[]}'"""),
    }
    stream = injected.stdout + "".join("---\n" + d for d in docs.values()) + "---\n" + injected.stdout
    done = podmedic("uninject", "-f", "-", stdin=stream)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for i, name in enumerate(docs, start=1):
        assert f"<stdin>: document {i}: Pod/{name} could not be uninjected: {KEY}: " in done.stderr
    assert done.stderr.count("could not be uninjected") == len(docs)
    out = done.stdout.split("---\n")
    assert out[1:-1] == list(docs.values())  # byte for byte
    assert YAML(typ="safe").load(out[0]) == YAML(typ="safe").load(out[-1]) == YAML(typ="safe").load(good)


def test_uninject_writes_a_list_unchanged_when_one_item_has_a_bad_marker() -> None:
    injected = json.loads(podmedic("inject", "-f", "-", stdin=json.dumps(pods.pod(container(command=["/a"])))).stdout)
    broken = copy.deepcopy(injected)
    broken["metadata"]["annotations"][KEY] = "[]"
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [injected, broken]}, indent=1)
    done = podmedic("uninject", "-f", "-", stdin=text)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "<stdin>: document 0: Pod/web could not be uninjected" in done.stderr
    assert done.stdout == text  # the first item is not half uninjected either


def test_uninject_of_a_good_marker_still_exits_0() -> None:
    injected = podmedic("inject", "-f", "-", stdin=_pod_yaml("x", None))
    done = podmedic("uninject", "-f", "-", stdin=injected.stdout)
    assert done.returncode == 0 and done.stderr == ""
    assert YAML(typ="safe").load(done.stdout) == YAML(typ="safe").load(_pod_yaml("x", None))


ELSEWHERE = {  # a marker naming what podmedic never makes: uninject removed or added it
    "created the root": ({"created": ["/"]}, "created: '/' is not a path podmedic creates"),
    "created the spec": ({"created": ["/spec"]}, "created: '/spec' is not a path podmedic creates"),
    "created a user's list": ({"created": ["/spec/tolerations"]}, "created: '/spec/tolerations' is not"),
    "created a container's list": ({"created": ["/spec/containers/0/args"]}, "created: '/spec/containers/0/args' is not"),
    "replaced a user's field": ({"replaced": {"/spec/hostname": ""}}, "replaced: '/spec/hostname' is not a path"),
    "a user's volume": ({"pod": {"volumes": ["data"], "initContainers": []}},
                        "pod.volumes: 'data' is not a volume podmedic adds"),
    "a user's init container": ({"pod": {"volumes": [], "initContainers": ["migrate"]}},
                                "pod.initContainers: 'migrate' is not an init container podmedic adds"),
    "a user's annotation": ({"pod": {"volumes": [], "initContainers": [], "annotations": {"keep": None}}},
                            "pod.annotations: 'keep' is not an annotation podmedic sets"),
}
USER_POD = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations:\n    keep: 'yes'\n"
            "    {key}: '{status}'\nspec:\n  tolerations: []\n  initContainers:\n  - {{name: migrate, image: m}}\n"
            "  containers:\n  - {{name: app, image: x, args: []}}\n  volumes:\n  - {{name: data, emptyDir: {{}}}}\n")


@pytest.mark.parametrize("changes,message", ELSEWHERE.values(), ids=ELSEWHERE.keys())
def test_uninject_refuses_a_marker_that_points_at_the_users_own_parts(changes: dict[str, Any],
                                                                       message: str) -> None:
    """A hand-edited marker whose `created` named `/spec/tolerations` or whose pod record named
    the user's `data` volume made `podmedic uninject` delete the user's tolerations, volume, init
    container or annotation and exit 0. Such a marker is now refused like any malformed one: that
    document is written unchanged, the others are uninjected."""
    status = json.dumps({"containers": {}, "version": 2, "created": [], **changes})
    tampered = USER_POD.format(name="tampered", key=KEY, status=status)
    injected = podmedic("inject", "-f", "-", stdin=_pod_yaml("good", None)).stdout
    done = podmedic("uninject", "-f", "-", stdin=tampered + "---\n" + injected)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"<stdin>: document 0: Pod/tampered could not be uninjected: {KEY}: {message}" in done.stderr
    tampered_out, good_out = done.stdout.split("---\n")
    assert tampered_out == tampered  # byte for byte
    assert YAML(typ="safe").load(good_out) == YAML(typ="safe").load(_pod_yaml("good", None))


@pytest.mark.parametrize("command", [None, ["/old"]], ids=["null", "another command"])
def test_uninject_refuses_a_supervisor_record_for_a_command_podmedic_did_not_wrap(command: Any) -> None:
    """A marker saying `supervisor: {"command": null}` for a container whose command is the
    user's own (podmedic's wrapper starts with <toolbox mount>/bin/tini) made `podmedic uninject`
    delete the user's command, or put the marker's in its place, and exit 0. Such a document is
    now refused like any malformed marker: written unchanged, the others uninjected."""
    status = json.dumps({"containers": {"app": {"supervisor": {"command": command}}}, "version": 2, "created": []})
    tampered = _pod_yaml("tampered", f"'{status}'")
    injected = podmedic("inject", "-f", "-", stdin=_pod_yaml("good", None)).stdout
    done = podmedic("uninject", "-f", "-", stdin=tampered + "---\n" + injected)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (f"podmedic: <stdin>: document 0: Pod/tampered could not be uninjected: {KEY}: "
                           "containers['app'].supervisor: the container's command is not podmedic's wrapper "
                           "(/podmedic/bin/tini ...); document left unchanged\n")
    tampered_out, good_out = done.stdout.split("---\n")
    assert tampered_out == tampered  # byte for byte: the user's command: [/app] kept
    assert YAML(typ="safe").load(good_out) == YAML(typ="safe").load(_pod_yaml("good", None))


# ------------------------------------------------------------------ uninject(inject(x)) == x, exactly

def _run(mode: str, text: str, extra: list[str]) -> str:
    args = cli.build_parser().parse_args([mode, "-f", "-", *extra])
    out, err = io.StringIO(), io.StringIO()
    assert args.func(args, stdin=io.StringIO(text), out=out, err=err) == 0, err.getvalue()
    return out.getvalue()


NULLS = {  # where a template may say null (or empty) and podmedic writes something
    "annotations": ("metadata", "annotations", None),
    "metadata": (None, "metadata", None),
    "volumes": ("spec", "volumes", None),
    "initContainers": ("spec", "initContainers", None),
}
CONTAINER_NULLS = {"command": None, "env": None, "volumeMounts": None, "lifecycle": None,
                   "readinessProbe": None, "livenessProbe": None}
CONTAINER_EMPTIES = {"command": [], "env": [], "volumeMounts": [], "lifecycle": {}}


def _variant(text: str, suffix: str, how: str) -> str:
    """The golden input with null or empty members podmedic will write over."""
    y = YAML()
    y.preserve_quotes = True
    docs = list(y.load_all(text))
    for doc in docs:
        for w in manifests.workloads(doc, "default", io.StringIO(), "test"):
            t = w.template
            if how == "nulls":
                if not isinstance(t.get("metadata"), dict) or not t["metadata"].get("annotations"):
                    if isinstance(t.get("metadata"), dict) and t["metadata"]:
                        t["metadata"]["annotations"] = None
                    else:
                        t["metadata"] = None
                for key in ("volumes", "initContainers", "imagePullSecrets"):
                    t["spec"].setdefault(key, None)
            if how == "listed":
                t["spec"]["imagePullSecrets"] = [{"name": "sa-secret"}, {"name": "mirror.example"}]
                continue
            for c in t["spec"]["containers"]:
                for key, value in (CONTAINER_NULLS if how == "nulls" else CONTAINER_EMPTIES).items():
                    if key not in c:
                        c[key] = copy.deepcopy(value)
    out = io.StringIO()
    if suffix == ".json":
        return json.dumps(docs[0], indent=2) + "\n"
    y.dump_all(docs, out)
    return out.getvalue()


def _cases() -> list[Path]:
    return sorted(p for p in GOLDEN.iterdir() if p.suffix in (".yaml", ".json") and ".injected." not in p.name)


def _args(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    return shlex.split(first[len(ARGS_MARK):]) if first.startswith(ARGS_MARK) else []


@pytest.mark.parametrize("how", ["as-is", "nulls", "empties"])
@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_uninject_of_inject_is_the_identity_on_golden_inputs(case: Path, how: str) -> None:
    text = case.read_text() if how == "as-is" else _variant(case.read_text(), case.suffix, how)
    injected = _run("inject", text, _args(case))
    assert injected != text, "the case must inject something"
    back = _run("uninject", injected, [])
    for loader in (YAML(typ="safe"), YAML()):  # plain objects, and ruamel's round-trip maps
        assert list(loader.load_all(back)) == list(loader.load_all(text))


@pytest.mark.parametrize("how", ["as-is", "nulls", "listed"])
@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_uninject_of_inject_with_pull_secrets_is_the_identity_on_golden_inputs(case: Path, how: str,
                                                                                tmp_path: Path) -> None:
    """toolbox.imagePullSecrets: added after the template's own ("listed") and removed again; a
    template that lists none gets none offline (pull-secrets-offline), and still comes back."""
    config = tmp_path / "config.yaml"
    config.write_text("toolbox:\n  imagePullSecrets: [regcred, mirror.example]\n")
    text = case.read_text() if how == "as-is" else _variant(case.read_text(), case.suffix, how)
    injected = _run("inject", text, [*_args(case), "--config", str(config)])
    assert ("regcred" in injected) == (how == "listed")
    back = _run("uninject", injected, ["--config", str(config)])
    for loader in (YAML(typ="safe"), YAML()):
        assert list(loader.load_all(back)) == list(loader.load_all(text))


def test_annotations_null_comes_back_as_null_in_its_place() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  annotations: null\n  labels: {a: b}\nspec:\n  containers:\n  - {name: app, image: nginx, ports: [{containerPort: 80}]}\n"
    back = _run("uninject", _run("inject", text, []), [])
    loaded = YAML().load(back)
    assert list(loaded["metadata"].items()) == [("name", "x"), ("annotations", None), ("labels", {"a": "b"})]
