"""The event engine: a plain ``heapq`` of timestamped callbacks on a virtual clock.

Why not SimPy: a hand-written heap loop was ~9x faster here (docs/environment.md §3),
and the twin's speed target is ~10^7 requests in minutes. Entries are tuples
``(t, seq, fn, arg)``; ``seq`` comes from one counter so events at the same
time run in the order they were scheduled (deterministic, never compares
``fn``). Cancellation is by the owner: an object bumps its own generation
number and stale callbacks return immediately (cheaper than deleting from the
heap).

Speed notes (the loop runs ~3 events per simulated request): hot callers push
``(t, next(loop.seq), fn, arg)`` onto ``loop.heap`` themselves when ``t`` is
known not to be in the past (skipping ``at``'s check and a call); the end of a
replay is a flag set by the owner (``halt``) rather than a predicate called
after every event; progress is reported between chunks of events.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from warmserve.control.seam import Clock


def _call0(fn: Callable[[], None]) -> None:
    fn()


class EventLoop(Clock):
    """Virtual clock + event heap. Implements the seam's ``Clock``."""

    __slots__ = ("heap", "seq", "t", "events", "halted")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self.seq = itertools.count(1)  # next(seq): scheduling order of same-time events
        self.t = 0.0
        self.events = 0
        self.halted = False

    def now(self) -> float:
        return self.t

    def at(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run ``fn(arg)`` at absolute time ``t`` (never earlier than now)."""
        if t < self.t:
            raise RuntimeError(f"event scheduled in the past: {t} < {self.t}")
        heapq.heappush(self.heap, (t, next(self.seq), fn, arg))

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.at(self.t + max(0.0, delay_s), _call0, fn)

    def halt(self) -> None:
        """Stop ``run`` after the event in progress (the owner's end-of-replay condition)."""
        self.halted = True

    def run(self, until: float, stop: Callable[[], bool] | None = None,
            progress: Callable[[float], None] | None = None, progress_every: float = 60.0) -> None:
        """Process events in time order until ``until``, ``halt()``, or ``stop()`` true after an event.

        ``progress(t)`` is called after the first event at or past each
        ``progress_every`` boundary (then the next boundary is ``t +
        progress_every``).
        """
        heap = self.heap
        pop = heapq.heappop
        inf = float("inf")
        next_progress = self.t + progress_every if progress is not None else inf
        n = 0
        self.halted = False
        try:
            while heap and not self.halted:
                # a chunk: events strictly before the next progress boundary, with no progress test
                limit = until if next_progress > until else next_progress
                if stop is None:
                    while heap:
                        ev = heap[0]
                        t = ev[0]
                        if t >= limit:
                            break
                        pop(heap)
                        self.t = t
                        ev[2](ev[3])
                        n += 1
                        if self.halted:
                            return
                else:
                    while heap:
                        ev = heap[0]
                        t = ev[0]
                        if t >= limit:
                            break
                        pop(heap)
                        self.t = t
                        ev[2](ev[3])
                        n += 1
                        if stop():
                            return
                if not heap:
                    return
                # one event at or past the boundary: past ``until`` ends the run, else report progress
                ev = heap[0]
                t = ev[0]
                if t > until:
                    self.t = until
                    return
                pop(heap)
                self.t = t
                ev[2](ev[3])
                n += 1
                if progress is not None and t >= next_progress:
                    progress(t)
                    next_progress = t + progress_every
                if stop is not None and stop():
                    return
        finally:
            self.events += n
