"""Spreading kept-alive connections evenly over the gunicorn workers.

gthread workers share one listening socket and a kept-alive connection stays for its whole
life with the worker that accepted it. The API server opens its connections in a burst and then
reuses them, and whichever worker wakes first accepts most of the burst: measured here, 16 new
connections landed 16+0 on two workers in most runs, leaving one core idle while the other
queued every review (half the throughput, twice the latency). A bare Flask + gunicorn stack
behaves the same.

So the workers share a small table in anonymous shared memory (made by the master before it
forks): each worker publishes how many connections it holds and when it last looked, and stops
accepting while a live peer holds fewer. The least-loaded worker therefore always accepts, ties
accept together, and a burst splits evenly (within one connection). A peer that has not
published for STALE_AFTER seconds (stuck, or killed before the master cleared its slot) is
ignored, so a dead worker can hold back new connections for that long at most.

Reads are not atomic with a peer's writes; a torn read only skews one accept decision of a
heuristic, never a request.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Iterable

_SLOT = struct.Struct("=qqd")  # pid (0 = free), connections held, last publication (monotonic)
STALE_AFTER = 3.0  # seconds; a live worker publishes at least once a second (gthread's poll timeout)


class ConnectionTable:
    """Per-worker connection counts, shared across fork. Slot i belongs to one worker at a time."""

    def __init__(self, slots: int):
        self.slots = slots
        self._buf = mmap.mmap(-1, _SLOT.size * slots)  # MAP_SHARED | MAP_ANONYMOUS: survives fork

    def free_slot(self, taken: Iterable[int | None]) -> int | None:
        """A slot no live worker holds (the master assigns it before forking), or None."""
        busy = set(taken)
        return next((i for i in range(self.slots) if i not in busy), None)

    def publish(self, slot: int, pid: int, connections: int, now: float | None = None) -> None:
        _SLOT.pack_into(self._buf, slot * _SLOT.size, pid, connections, time.monotonic() if now is None else now)

    def clear(self, slot: int) -> None:
        """The worker left (or stopped accepting for good): peers no longer wait for it."""
        _SLOT.pack_into(self._buf, slot * _SLOT.size, 0, 0, 0.0)

    def may_accept(self, slot: int, connections: int, now: float | None = None) -> bool:
        """False while a live peer holds fewer connections than `connections`."""
        now = time.monotonic() if now is None else now
        for other in range(self.slots):
            if other == slot:
                continue
            pid, held, seen = _SLOT.unpack_from(self._buf, other * _SLOT.size)
            if pid and now - seen < STALE_AFTER and held < connections:
                return False
        return True
