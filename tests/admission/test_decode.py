"""The review decoder: what it builds is the body as sent without metadata.managedFields, and
every byte it does not build is still checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import orjson
import pytest

from tests import pods
from tests.bench.__main__ import bodies
from webhook.admission import decode as decoder
from webhook.admission import podshape
from webhook.admission.decode import BadReview, decode
from webhook.admission.handle import handle
from webhook.admission.memo import PlanMemo
from webhook.admission.plan import Plan
from webhook.cli.config import load
from webhook.engine.namespace import Lookup, Namespace

SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{pods.K8S_VERSION}-local-strict"


def _managed_pod() -> dict[str, Any]:
    pod = pods.controller_pod()
    pod["metadata"]["managedFields"] = [{"manager": "kube-controller-manager", "operation": "Update",
                                         "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]
    pod["metadata"]["deletionTimestamp"] = None  # a null member stays, an absent one stays absent
    return pod


def _expected(body: bytes) -> dict[str, Any]:
    request: dict[str, Any] = orjson.loads(body)["request"]
    request["object"]["metadata"].pop("managedFields", None)
    return request


@pytest.mark.parametrize("name", ["typical", "large", "controller pod"])
def test_decoded_request_is_the_body_without_managed_fields(name):
    body = json.dumps(pods.review(_managed_pod())).encode() if name == "controller pod" else bodies()[name]
    assert b'"managedFields"' in body
    request, shape_checked = decode(body, "application/json", 1 << 24)
    assert shape_checked
    assert request == _expected(body)
    assert "managedFields" not in request["object"]["metadata"]


@pytest.mark.parametrize("fields,schema", [
    (decoder._ObjectMeta.__struct_fields__, "objectmeta-meta-v1"), (decoder._Pod.__struct_fields__, "pod-v1"),
    (decoder._UserInfo.__struct_fields__, "userinfo-authentication-v1"), (decoder.POD_SPEC_FIELDS, "podspec-v1"),
    (decoder.CONTAINER_FIELDS, "container-v1"), (decoder.EPHEMERAL_CONTAINER_FIELDS, "ephemeralcontainer-v1")])
def test_decoded_fields_are_the_apis(fields, schema):
    """A field the decoder does not list is dropped: the lists must be the API's own."""
    properties = json.loads((SCHEMAS / f"{schema}.json").read_text())["properties"]
    assert sorted(fields) == sorted(properties)


# podshape's JSON types: values of each, and values of other types
_RIGHT = {str: ["x"], int: [30], dict: [{}], "[map]": [[{}], []], "[str]": [["x"], []]}
_WRONG = {str: [5, ["x"]], int: ["30", True, 30.5], dict: [[], "x"], "[map]": [{}, [1], [[]]], "[str]": ["x", [1], [None]]}


def _shape_cases() -> list[tuple[str, str, Any]]:
    """(where, field, value) for every field podshape checks, right and wrong, and null."""
    places = [("metadata", podshape.METADATA), ("spec", podshape.SPEC),
              *((f"spec.{kind}", podshape.CONTAINER) for kind in ("containers", "initContainers", "ephemeralContainers"))]
    return [(where, field, value) for where, table in places for field, expected in table.items()
            for value in [None, *_RIGHT[expected], *_WRONG[expected]]]


def _with(where: str, field: str, value: Any) -> dict[str, Any]:
    pod = pods.pod()
    if where.startswith("spec."):
        pod["spec"].setdefault(where[5:], [pods.container("other")])[0][field] = value
    else:
        pod[where][field] = value
    return pod


@pytest.mark.parametrize("where,field,value", _shape_cases())
def test_the_pod_shape_checked_by_decoding_is_podshapes(where, field, value):
    """decode() says the shape is checked only for a pod podshape.problem() accepts, and review()
    skips podshape's walk for it; any other pod is answered with podshape's message as before."""
    pod = _with(where, field, value)
    body = json.dumps(pods.review(pod)).encode()
    if where == "metadata" and field in ("name", "generateName", "namespace") and value is not None \
            and not isinstance(value, str):  # the audit line copies these: typed for both decoders
        with pytest.raises(BadReview, match=rf"^request\.object\.metadata\.{field}: Expected `str \| null`"):
            decode(body, "application/json", 1 << 24)
        return
    request, shape_checked = decode(body, "application/json", 1 << 24)
    problem = podshape.problem(orjson.loads(body)["request"]["object"])
    assert shape_checked == (problem is None)
    answer = _handle(pods.review(pod))
    assert (answer.status, answer.body.get("message")) == ((400, problem) if problem else (200, None))


def test_annotation_values_are_strings_or_podshape_says_so():
    pod = pods.pod(annotations={"a": 5})
    assert not decode(json.dumps(pods.review(pod)).encode(), "application/json", 1 << 24).shape_checked
    assert _handle(pods.review(pod)).body["message"] == "request.object.metadata.annotations values must be strings"


def test_a_request_that_is_no_pod_creation_is_not_held_to_a_pods_shape():
    pod = _with("spec.containers", "name", 5)
    answer = _handle(pods.review(pod, operation="UPDATE"))
    assert answer.status == 200 and answer.audit["outcome"] == "ignored"


def _with_managed_fields(raw: bytes) -> bytes:
    body = json.dumps(pods.review(pods.pod())).encode()
    return body.replace(b'"metadata": {', b'"metadata": {"managedFields": ' + raw + b", ", 1)


@pytest.mark.parametrize("raw", [b"[1,,2]", b'["\xff"]', b'["\\ud800"]', b"[" * 5000 + b"]" * 5000, b"NaN"],
                         ids=["syntax", "invalid UTF-8", "lone surrogate", "nested too deeply", "NaN"])
def test_managed_fields_are_checked_though_not_built(raw):
    assert decode(_with_managed_fields(b"[]"), "application/json", 1 << 24)
    with pytest.raises(BadReview, match="not valid JSON"):
        decode(_with_managed_fields(raw), "application/json", 1 << 24)


def _handle(review: dict[str, Any], memo: bool = True) -> Any:
    config = load()
    namespace = Namespace("demo", {config.prefix + "inject": "enabled"}, {})
    return handle(json.dumps(review).encode(), "application/json", lambda _: Lookup(namespace, None), config,
                  plans=PlanMemo[Plan](config.plan_memo_bytes) if memo else None)


def test_an_integer_beyond_64_bits_is_a_bad_review():
    """JSON's integers are unbounded and decoded as such; orjson, which writes the memo key, the
    patch and the audit line, stops at 64 bits: a clear 400, never an internal error."""
    ok = pods.pod()
    assert _handle(pods.review(ok)).status == 200
    big = pods.pod()
    big["spec"]["terminationGracePeriodSeconds"] = 2 ** 64  # in the memo key
    answer = _handle(pods.review(big))
    assert answer.status == 400 and "integer beyond 64 bits" in answer.body["message"]
    big = pods.pod(pods.container(command=["/app"]))
    big["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["/stop"]}, "sleep": {"seconds": 2 ** 64}}}
    assert _handle(pods.review(big), memo=True).status == 400
    answer = _handle(pods.review(big), memo=False)  # no memo key: the marker copies the hook
    assert answer.status == 400 and "integer beyond 64 bits" in answer.body["message"]
    review = pods.review(ok)
    review["request"]["namespace"] = 2 ** 64
    answer = _handle(review)
    assert answer.status == 400 and answer.body["message"].startswith("request.namespace: Expected `str | null`")


def test_a_field_of_the_wrong_shape_is_named():
    review = pods.review(pods.pod())
    review["request"]["object"]["metadata"] = "web"
    with pytest.raises(BadReview, match=r"^request\.object\.metadata: Expected `object \| null`, got `str`$"):
        decode(json.dumps(review).encode(), "application/json", 1 << 24)
