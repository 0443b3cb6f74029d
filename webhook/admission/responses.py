"""The answers podmedic sends: an AdmissionReview v1 response (allowed, patched, warned or
denied) and the Status body of a 400.
"""

from __future__ import annotations

from typing import Any

import orjson
import pybase64

from webhook.admission.decode import API_VERSION
from webhook.admission.wire import AdmissionResponse, AdmissionReviewResponse, Status


def encode_patch(ops: list[dict[str, Any]]) -> bytes:
    """The JSON patch as sent (compact UTF-8); verified in this form, then base64-encoded."""
    return orjson.dumps(ops)


def response(uid: str, *, patch: bytes | None = None, warnings: list[str] | None = None,
             audit_annotations: dict[str, str] | None = None, denied: str | None = None) -> AdmissionReviewResponse:
    """The AdmissionReview answer: patchType only when something changes (`patch` is the
    encoded JSON patch)."""
    resp: AdmissionResponse = {"uid": uid, "allowed": denied is None}
    if denied is not None:
        resp["status"] = {"code": 403, "message": denied}
    if patch:
        resp["patchType"] = "JSONPatch"
        # pybase64 (SIMD): the same text as base64.b64encode, about 30 times faster; the large
        # pod's 47 KB patch cost 4 % of its review in the standard library's encoder
        resp["patch"] = pybase64.b64encode_as_string(patch)
    if warnings:
        resp["warnings"] = warnings
    if audit_annotations:
        resp["auditAnnotations"] = audit_annotations
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": resp}


def error_body(message: str) -> Status:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
            "reason": "BadRequest", "message": message}
