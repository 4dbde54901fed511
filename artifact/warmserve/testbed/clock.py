"""The seam's ``Clock`` on the wall clock, with callbacks on an asyncio event loop.

``now()`` is seconds since the replay started (``start()``; 0 before it, since
the runner builds the controller before the replay begins), measured with the
monotonic clock (the same one asyncio's loop uses) so it never jumps with NTP.
``call_later`` schedules on the running loop; callbacks run on the loop
thread, so the controller (which is not thread-safe) is only ever entered from
that one thread, exactly as on the twin where the event loop is single-threaded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from warmserve.control.seam import Clock


class WallClock(Clock):
    """Wall time since ``start()``; callbacks on the running asyncio loop."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._handles: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        """Make ``now()`` read 0 at this instant (the replay's t=0)."""
        self._t0 = time.monotonic()

    @staticmethod
    def monotonic() -> float:
        """Raw monotonic time (what ``time.monotonic`` and the loop return)."""
        return time.monotonic()

    def to_run_time(self, mono: float) -> float:
        return 0.0 if self._t0 is None else mono - self._t0

    def now(self) -> float:
        return self.to_run_time(time.monotonic())

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._handles = [h for h in self._handles if not h.cancelled() and h.when() > loop.time()]
        self._handles.append(loop.call_later(max(0.0, delay_s), fn))

    def cancel_all(self) -> None:
        """Drop every pending callback (the run is over or was interrupted)."""
        for h in self._handles:
            h.cancel()
        self._handles.clear()
