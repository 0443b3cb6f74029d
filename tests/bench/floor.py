"""The floor of podmedic's stack, for `make bench`: Flask under gunicorn doing nothing but the
unavoidable part of a review.

It decodes the AdmissionReview JSON and answers with a fixed one-operation JSON patch (encoded
per request), over the same transport as `podmedic serve`: gthread workers, the same number of
workers and threads, the same keep-alive, TLS from the same certificate. Whatever podmedic costs
above this figure is its own work (decisions, patch building, audit, metrics, its TLS wrapper);
the ratio of the two, measured in the same run on the same cores, is what `make bench` judges,
because absolute figures on shared machines vary two-fold from run to run.

Keep the gunicorn settings in step with webhook/server/gunicorn.py (`Server.load_config`).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication

PATCH = [{"op": "add", "path": "/metadata/annotations", "value": {"podmedic.io/floor": "true"}}]

app = Flask("podmedic-floor")


@app.post("/mutate")
def mutate() -> Response:
    review = json.loads(request.get_data())
    answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "response": {"uid": review["request"]["uid"], "allowed": True, "patchType": "JSONPatch",
                           "patch": base64.b64encode(json.dumps(PATCH).encode()).decode()}}
    return Response(json.dumps(answer, separators=(",", ":")), mimetype="application/json")


@app.get("/readyz")
def readyz() -> Response:
    return Response('{"ready":true}', mimetype="application/json")


class Floor(BaseApplication):  # type: ignore[misc]
    """gunicorn configured like `podmedic serve`, serving the floor app."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        super().__init__()

    def load_config(self) -> None:
        a = self.args
        settings = {
            "bind": [a.bind],
            "workers": a.workers,
            "threads": a.threads,
            "worker_class": "gthread",
            "keepalive": 75,
            "timeout": 30,
            "certfile": a.tls_cert_file,
            "keyfile": a.tls_private_key_file,
            "accesslog": None,
            "errorlog": "-",
            "proc_name": "podmedic-floor",
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.floor", description=__doc__.split("\n")[0])
    parser.add_argument("--bind", required=True, help="HOST:PORT")
    parser.add_argument("--tls-cert-file", required=True)
    parser.add_argument("--tls-private-key-file", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    Floor(parser.parse_args(argv)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
