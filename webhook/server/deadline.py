"""How long the current request waited in the worker's queue before a thread picked it up.

Under overload, reviews queue inside the gthread worker, invisible to the WSGI app: a request
that already waited longer than the review deadline would, by the time it is answered, be past
the API server's `timeoutSeconds`, which then fails (or ignores) the call with nothing said.
The worker (server.QueueTimedWorker) stamps each request when it is queued; the app reads the
wait here and answers such a request at once, allowed and unpatched, with a warning.
"""

from __future__ import annotations

import threading
import time

_local = threading.local()


def mark_start(enqueued_at: float | None) -> None:
    """Called by the worker thread that is about to handle a request queued at `enqueued_at`."""
    _local.enqueued_at = enqueued_at


def waited() -> float:
    """Seconds the current request spent queued (0 when not served by the queue-timed worker)."""
    enqueued = getattr(_local, "enqueued_at", None)
    return time.monotonic() - enqueued if enqueued is not None else 0.0
