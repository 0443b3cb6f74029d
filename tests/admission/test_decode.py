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
    request = decode(body, "application/json", 1 << 24)
    assert request == _expected(body)
    assert "managedFields" not in request["object"]["metadata"]


@pytest.mark.parametrize("struct,schema", [(decoder._ObjectMeta, "objectmeta-meta-v1"), (decoder._Pod, "pod-v1"),
                                           (decoder._UserInfo, "userinfo-authentication-v1")])
def test_decoded_fields_are_the_apis(struct, schema):
    """A field the decoder does not list is dropped: the lists must be the API's own."""
    properties = json.loads((SCHEMAS / f"{schema}.json").read_text())["properties"]
    assert sorted(struct.__struct_fields__) == sorted(properties)


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
