"""The golden cases (`tests/golden/`) through the webhook's path as well as the CLI's: every pod
template of every case is sent to `webhook.admission.handle.handle()` as the API server sends it
(the raw body of an AdmissionReview v1: CREATE of the template as a Pod, in the workload's
namespace), and
the returned patch, applied to that pod, must give exactly the template of the golden
`<case>.injected.<ext>` -- which the CLI still writes byte for byte. The pod so patched, reviewed
again, gets no patch.

The namespace is the one the case's `# podmedic-test-args:` line describes for the CLI
(`--namespace-annotations`, `--namespace-labels`, `-n`); the configuration is the embedded one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from tests.cli.test_golden import case_args, cases, run
from tests.pods import apply_checked, patch_of, review
from webhook import cli
from webhook.admission.handle import handle
from webhook.cli.config import load
from webhook.engine.config import GlobalConfig
from webhook.engine.namespace import Lookup, Namespace
from webhook.kube.namespaces import StaticSource

# Where the pod template sits in each kind that has one (the controllers' view, written out here
# rather than taken from the CLI, so the two paths share nothing but the golden files).
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "PodTemplate": ("template",),
}


def documents(path: Path, text: str) -> list[Any]:
    if path.suffix == ".json":
        return [json.loads(text)]
    return [d for d in YAML(typ="safe").load_all(text) if d is not None]


def templates(doc: Any, default_namespace: str, where: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, namespace, pod template) for every pod template in a document, Lists included."""
    if not isinstance(doc, dict):
        return
    if doc.get("kind") == "List":
        for i, item in enumerate(doc.get("items") or []):
            yield from templates(item, default_namespace, f"{where} item {i}")
        return
    if doc.get("kind") not in TEMPLATE_PATHS:
        return
    template = doc
    for key in TEMPLATE_PATHS[doc["kind"]]:
        template = template[key]
    metadata = doc.get("metadata") or {}
    yield (f"{where} {doc['kind']}/{metadata.get('name', '?')}", metadata.get("namespace") or default_namespace,
           template)


def as_pod(template: dict[str, Any]) -> dict[str, Any]:
    """The template as a Pod: its metadata and spec, nothing added. The review names the namespace
    (`request.namespace`); metadata is left as the template has it, even absent, because the
    injection marker records the parents the patch created (`/metadata` for a template without
    one) and the result is compared with the CLI's injected template, marker included."""
    return {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy({k: template[k] for k in ("metadata", "spec")
                                                                if k in template})}


def setup(case: Path) -> tuple[str, Callable[[str], Lookup], GlobalConfig]:
    """The default namespace, the namespaces and the configuration the case's CLI line means."""
    args = cli.build_parser().parse_args(["inject", "-f", str(case), *case_args(case)])
    assert not args.namespaces_file and not args.kubeconfig and not args.config, "extend setup() for these"
    config = load(None)

    def pairs(items: list[str]) -> dict[str, str]:
        return dict(item.split("=", 1) for item in items)

    annotations = pairs(args.namespace_annotations) or {config.prefix + "inject": "enabled"}
    labels = pairs(args.namespace_labels)

    def lookup(name: str) -> Lookup:
        return StaticSource([Namespace(name, annotations, labels)]).get(name)

    return args.namespace, lookup, config


def send(pod: dict[str, Any], namespace: str, lookup: Callable[[str], Lookup],
         config: GlobalConfig) -> list[dict[str, Any]]:
    """One review through the webhook's pure core, as the server hands it the body; the patch."""
    body = review(pod, namespace=namespace)
    answer = handle(orjson.dumps(body), "application/json", lookup, config)
    assert answer.status == 200, answer.body
    response = answer.body["response"]
    assert response["uid"] == body["request"]["uid"] and response["allowed"] is True, response
    return patch_of(answer.body)


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_golden_through_the_webhook(case: Path) -> None:
    default_namespace, lookup, config = setup(case)
    injected_file = case.with_name(f"{case.stem}.injected{case.suffix}")
    code, injected, err = run("inject", case, case_args(case))
    assert code == 0, err
    assert injected == injected_file.read_text(), f"{injected_file.name} is stale: run `make golden`"

    inputs = documents(case, case.read_text())
    outputs = documents(injected_file, injected)
    assert len(inputs) == len(outputs)
    sent = [t for i, doc in enumerate(inputs) for t in templates(doc, default_namespace, f"document {i}")]
    expected = [t for i, doc in enumerate(outputs) for t in templates(doc, default_namespace, f"document {i}")]
    assert [w for w, _, _ in sent] == [w for w, _, _ in expected]
    assert sent, f"{case.name} has no pod template"

    patched_any = False
    for (where, namespace, template), (_, _, golden_template) in zip(sent, expected):
        pod = as_pod(template)
        ops = send(pod, namespace, lookup, config)
        patched_any |= bool(ops)
        patched = apply_checked(pod, ops)
        assert patched == as_pod(golden_template), f"{case.name}: {where}: webhook != CLI"
        assert send(patched, namespace, lookup, config) == [], f"{case.name}: {where}: a second review patched"
    assert patched_any, f"{case.name}: the webhook patched nothing: the comparison proves nothing"
