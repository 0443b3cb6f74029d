"""`python -m tests.bench.inprocess`: where a review's time goes, stage by stage, in-process.

The same bodies as `make bench` (tests/bench/__main__.py), every review a new pod template (a
label value changes per review, so the plan memo cannot help), run through the admission core
without HTTP: decode, the pod-shape check, the engine, encoding the patch, verification (applying
it to the pod as sent), the answer, and the audit line. Figures are the best of several passes
over many distinct bodies, in microseconds per review: on shared cores the minimum is the
repeatable figure (other processes only ever add time). `--callgrind` only runs handle() over
the bodies of one pod, for `valgrind --tool=callgrind` instruction counts (repeatable under load;
tests/bench/callgrind.sh takes the difference of two sizes, so imports do not count).

`--wsgi` times the whole server app instead (Flask, the review, metrics in multiprocess mode,
the audit line to a file), and the floor's app, over WSGI with the same bodies: what podmedic
adds to its stack outside gunicorn and TLS (`--callgrind --wsgi app|floor` for instructions).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from webhook import engine
from webhook.admission import verify
from webhook.admission.audit_record import audit_record, summary
from webhook.admission.decode import decode
from webhook.admission.handle import handle
from webhook.admission.memo import PlanMemo
from webhook.admission.plan import Plan
from webhook.admission.responses import encode_patch, response
from webhook.cli.config import load
from webhook.kube.namespaces import FileSource
from tests.bench.__main__ import NAMESPACES, SEQ_MARK, bodies, sequenced

PODS = ("typical", "large")
STAGES = ("decode and pod shape", "engine", "encode patch", "verify", "answer", "audit line", "handle()")


def distinct_bodies(pod: str, count: int) -> list[bytes]:
    """`count` reviews of `pod`, each a new template (and a new token volume name)."""
    body = bodies()[pod + "-varied"]
    assert SEQ_MARK in body
    sent = sequenced(body)
    return [next(sent) for _ in range(count)]


def stage_times(reviews: list[bytes]) -> dict[str, float]:
    """Seconds spent per stage over `reviews`, each review taken through every stage once."""
    config, namespaces = load(), FileSource(NAMESPACES)
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.perf_counter
    for body in reviews:
        t0 = clock()
        request, shape_checked = decode(body, "application/json", config.max_request_bytes)
        assert shape_checked  # by msgspec's types: handle() then skips podshape's walk
        t1 = clock()
        pod: Any = request["object"]
        outcome = engine.inject(pod, namespaces.get(request["namespace"]), config)
        t2 = clock()
        patch = encode_patch(outcome.ops)
        t3 = clock()
        verify.apply(pod, patch)
        t4 = clock()
        answer = orjson.dumps(response(request["uid"], patch=patch, warnings=outcome.report.warnings(config.prefix),
                                       audit_annotations={"podmedic": summary(outcome.report)}))
        t5 = clock()
        line = orjson.dumps(audit_record(request, outcome.report, len(outcome.ops), "patched"), default=str)
        t6 = clock()
        handle(body, "application/json", namespaces.get, config, plans=PlanMemo[Plan](config.plan_memo_bytes))
        t7 = clock()
        assert answer and line
        for stage, took in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)):
            spent[stage] += took
    return spent


def handled(reviews: list[bytes]) -> None:
    """Each review through handle(), as the server calls it (a memo that never hits)."""
    config, namespaces = load(), FileSource(NAMESPACES)
    plans = PlanMemo[Plan](config.plan_memo_bytes)
    for body in reviews:
        assert handle(body, "application/json", namespaces.get, config, plans=plans).status == 200


def wsgi_app(which: str) -> Callable[..., Any]:
    """The server's Flask app as `podmedic serve` builds it (metrics in multiprocess mode), or
    the floor's."""
    if which == "floor":
        from tests.bench.floor import app as floor
        return floor.wsgi_app
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # as `podmedic serve` sets it; removed at exit
        metrics_dir = tempfile.mkdtemp(prefix="podmedic-bench-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from webhook.server.app import create_app
    from webhook.server.gunicorn import settle_heap

    class Certificate:
        valid = True

        def refresh(self) -> None:
            pass

    app = create_app(load(), FileSource(NAMESPACES), Certificate())
    settle_heap()
    return app.wsgi_app


def served(app: Callable[..., Any], reviews: list[bytes]) -> None:
    """Each review through the WSGI app, its audit lines to a file."""
    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        assert status.startswith("200"), status

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for body in reviews:
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/mutate", "SERVER_NAME": "bench",
                       "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "https",
                       "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                       "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr}
            b"".join(app(environ, start_response))


def best_served(pod: str, count: int, passes: int) -> dict[str, float]:
    """Microseconds per review of the server app and of the floor's, best of `passes`, each
    pass over new bodies (a body seen before would be answered from the plan memo)."""
    figures = {}
    for which in ("app", "floor"):
        app = wsgi_app(which)
        runs = []
        for _ in range(passes):
            reviews = distinct_bodies(pod, count)
            started = time.perf_counter()
            served(app, reviews)
            runs.append(time.perf_counter() - started)
        figures[which] = min(runs) / count * 1e6
    return figures


def best(reviews: list[bytes], passes: int) -> dict[str, float]:
    """Microseconds per review and stage: the best pass of `passes`."""
    runs = [stage_times(reviews) for _ in range(passes)]
    return {stage: min(run[stage] for run in runs) / len(reviews) * 1e6 for stage in STAGES}


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| stage | " + " | ".join(f"{pod} (us)" for pod in results) + " |",
             "|---|" + "---:|" * len(results)]
    for stage in STAGES:
        lines.append(f"| {stage} | " + " | ".join(f"{figures[stage]:.0f}" for figures in results.values()) + " |")
    stages = [s for s in STAGES if s != "handle()"]
    lines.append("| sum of stages | " + " | ".join(f"{sum(f[s] for s in stages):.0f}" for f in results.values()) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.inprocess", description=__doc__.split("\n")[0])
    p.add_argument("--pods", type=lambda s: s.split(","), default=list(PODS))
    p.add_argument("--reviews", type=int, default=200, help="distinct bodies per pass (large: a tenth)")
    p.add_argument("--passes", type=int, default=7)
    p.add_argument("--callgrind", action="store_true", help="handle() over the first pod's bodies only, no table")
    p.add_argument("--wsgi", nargs="?", const="both", choices=("both", "app", "floor"),
                   help="the whole server app and the floor's over WSGI (with --callgrind: app or floor)")
    args = p.parse_args(argv)
    sized: Callable[[str], int] = lambda pod: max(10, args.reviews // 10) if pod == "large" else args.reviews
    if args.callgrind:
        reviews = distinct_bodies(args.pods[0], args.reviews)
        if args.wsgi:
            served(wsgi_app("floor" if args.wsgi == "floor" else "app"), reviews)
        else:
            handled(reviews)
        return 0
    if args.wsgi:
        for pod in args.pods:
            figures = best_served(pod, sized(pod), args.passes)
            print(f"{pod}: server app {figures['app']:.0f} us, floor app {figures['floor']:.0f} us per review (WSGI)")
        return 0
    results = {pod: best(distinct_bodies(pod, sized(pod)), args.passes) for pod in args.pods}
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
