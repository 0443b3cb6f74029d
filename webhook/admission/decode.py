"""Decoding an AdmissionReview v1: the `request` of a valid review, or BadReview naming the
problem (the HTTP shell answers it with a 400 the API server logs; never a 500).
"""

from __future__ import annotations

from typing import cast

import orjson

from webhook.admission.wire import AdmissionRequest, ApiVersion

API_VERSION: ApiVersion = "admission.k8s.io/v1"


class BadReview(ValueError):
    """The body is not a usable AdmissionReview; the message names the problem."""


def decode(body: bytes, content_type: str | None, max_bytes: int) -> AdmissionRequest:
    """The `request` of a valid AdmissionReview v1, or BadReview. Only the uid is checked here:
    the other fields are checked where they are read (see wire.py)."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise BadReview(f"content type must be application/json, got {content_type or 'none'!r}")
    if len(body) > max_bytes:
        raise BadReview(f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
    if not body:
        raise BadReview("empty body")
    try:
        review = orjson.loads(body)
    except ValueError as exc:  # orjson.JSONDecodeError, also for nesting beyond 1024 levels
        raise BadReview(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(review, dict):
        raise BadReview("body must be a JSON object (an AdmissionReview)")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise BadReview(f"expected apiVersion {API_VERSION} kind AdmissionReview, got "
                        f"{str(review.get('apiVersion'))[:64]!r} {str(review.get('kind'))[:64]!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid is missing or not a string")
    return cast(AdmissionRequest, request)


def is_pod_create(request: AdmissionRequest) -> bool:
    kind = request.get("kind")
    return (isinstance(kind, dict) and kind.get("kind") == "Pod" and kind.get("group", "") == ""
            and request.get("operation") == "CREATE" and not request.get("subResource"))
