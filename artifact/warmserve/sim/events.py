"""The event engine: a plain ``heapq`` of timestamped callbacks on a virtual clock.

Why not SimPy: a hand-written heap loop was ~9x faster here (ENVIRONMENT.md),
and the twin's speed target is ~10^7 requests in minutes. Entries are tuples
``(t, seq, fn, arg)``; ``seq`` is a global counter so events at the same time
run in the order they were scheduled (deterministic, never compares ``fn``).
Cancellation is by the owner: an object bumps its own generation number and
stale callbacks return immediately (cheaper than deleting from the heap).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from warmserve.control.seam import Clock


def _call0(fn: Callable[[], None]) -> None:
    fn()


class EventLoop(Clock):
    """Virtual clock + event heap. Implements the seam's ``Clock``."""

    __slots__ = ("_heap", "_seq", "t", "events")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.t = 0.0
        self.events = 0

    def now(self) -> float:
        return self.t

    def at(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run ``fn(arg)`` at absolute time ``t`` (never earlier than now)."""
        if t < self.t:
            raise RuntimeError(f"event scheduled in the past: {t} < {self.t}")
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, arg))

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.at(self.t + max(0.0, delay_s), _call0, fn)

    def run(self, until: float, stop: Callable[[], bool], progress: Callable[[float], None] | None = None,
            progress_every: float = 60.0) -> None:
        """Process events in time order until ``until`` or ``stop()`` is true after an event."""
        heap = self._heap
        pop = heapq.heappop
        next_progress = self.t + progress_every
        n = 0
        while heap:
            t = heap[0][0]
            if t > until:
                self.t = until
                break
            _, _, fn, arg = pop(heap)
            if t < self.t:  # cannot happen through at(); guards the invariant
                raise RuntimeError(f"time went backwards: {t} < {self.t}")
            self.t = t
            fn(arg)
            n += 1
            if progress is not None and t >= next_progress:
                progress(t)
                next_progress = t + progress_every
            if stop():
                break
        self.events += n
