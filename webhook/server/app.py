"""The HTTP shell: Flask routes around the pure admission core.

It moves bytes and records metrics and audit lines; every decision is made in webhook.admission
and webhook.engine, which know nothing of HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any, Callable, Protocol

import orjson
from flask import Flask, Response, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length

from webhook.admission.handle import Answer, handle
from webhook.admission.memo import PlanMemo
from webhook.admission.plan import Plan
from webhook.admission.responses import error_body
from webhook.engine.config import GlobalConfig
from webhook.kube.namespaces import ARRIVAL_WAIT_SECONDS, NamespaceSource
from webhook.server import audit, deadline, metrics


class CertificateState(Protocol):
    @property
    def valid(self) -> bool: ...

    def refresh(self) -> None: ...


DRAIN_LIMIT = 16 * 1024 * 1024  # read and drop at most this much of an oversized body


def _drain(stream: Any, limit: int) -> None:
    while limit > 0:
        chunk = stream.read(min(65536, limit))
        if not chunk:
            return
        limit -= len(chunk)


def _bad(message: str) -> Answer:
    return Answer(400, error_body(message), {"outcome": "bad-request", "error": message})


def _json(status: int, body: Mapping[str, object]) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def create_app(config: GlobalConfig, namespaces: NamespaceSource, certificate: CertificateState,
               draining: Callable[[], bool] = lambda: False) -> Flask:
    app = Flask("podmedic")
    plans: PlanMemo[Plan] = PlanMemo(config.plan_memo_bytes)
    metrics.follow_namespaces(namespaces)

    @app.post("/mutate")
    def mutate() -> Response:
        started = time.perf_counter()
        # Both values read from the environ, as werkzeug reads them: request.content_length and
        # request.content_type would go through two proxy look-ups, a headers view, and a KeyError
        # raised and caught for the absent Transfer-Encoding (about 1.5 % of the app's work on a
        # typical review).
        environ = request.environ
        length = get_content_length(environ)
        try:
            if length is not None and length > config.max_request_bytes:
                _drain(request.stream, DRAIN_LIMIT)  # so the client reads our 400, not a reset
                answer = _bad(f"body of {length} bytes exceeds the limit of {config.max_request_bytes}")
            else:
                body = request.stream.read(config.max_request_bytes + 1)
                left = config.review_deadline_seconds - deadline.waited()
                # a namespace the watch has not delivered yet is waited for, never past the deadline
                lookup = partial(namespaces.get, wait=min(left, ARRIVAL_WAIT_SECONDS))
                answer = handle(body, environ.get("CONTENT_TYPE"), lookup, config, late=left < 0, plans=plans)
        except OSError as exc:  # the client stalled past the socket timeout, or went away
            answer = _bad(f"request body not received: {exc}")
        except ParseException as exc:  # gunicorn parses a chunked body as it is read; it then
            # fails the same way on the unread rest and closes the connection, unanswered
            answer = _bad(f"malformed request body: {type(exc).__name__}: {exc}")
        outcome = (answer.audit or {}).get("outcome", "bad-request")
        metrics.observe(outcome, time.perf_counter() - started, answer.report,
                        cached=bool((answer.audit or {}).get("cached")))
        if answer.audit is not None:
            audit.emit(answer.audit)
        return _json(answer.status, answer.body)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        certificate.refresh()  # kept-alive connections make handshakes (which re-check) rare
        checks = {"certificate": certificate.valid, "namespaces": namespaces.ready(), "serving": not draining()}
        return _json(200 if all(checks.values()) else 503, {"ready": all(checks.values()), **checks})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        certificate.refresh()  # so the expiry gauge follows a rotation promptly
        # content_type, not mimetype: werkzeug would append a second charset to this text/plain one
        return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE_LATEST)

    # Every refusal werkzeug raises (404, 405, a 400 for `Upgrade: websocket` on an HTTP route):
    # without this, the catch-all below would answer the client's mistake with a 500.
    @app.errorhandler(HTTPException)
    def refused(exc: HTTPException) -> Response:
        answer = _json(exc.code or 400, {"kind": "Status", "status": "Failure", "code": exc.code, "message": exc.description})
        # werkzeug's own headers but its HTML content type: a 405's Allow (RFC 9110 requires it)
        answer.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return answer

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return _json(500, {"kind": "Status", "status": "Failure", "code": 500, "message": "internal error"})

    return app
