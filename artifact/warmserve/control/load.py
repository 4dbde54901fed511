"""Per-model in-flight load as the front door sees it (queued + running requests).

The published manager keeps, per model, the number of requests in flight, its
time integral since the current forecast window began and the window's peak
(docs/reference.md §4), plus time-stamped samples for the autoscaler's 5 s
sliding average (docs/reference.md §5.4). ``LoadTracker`` keeps the same quantities
exactly (piecewise-constant integration, no sampling), so forecasters and the
autoscaler read the same numbers on both backends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _ModelLoad:
    inflight: int = 0
    last_t: float = 0.0
    # forecast window accumulators
    window_integral: float = 0.0
    window_peak: int = 0
    # (t, inflight after change) samples kept for the sliding average
    history: deque[tuple[float, int]] = field(default_factory=deque)


class LoadTracker:
    """Exact time-weighted in-flight statistics per model."""

    def __init__(self, models: list[str], horizon_s: float = 60.0, t0: float = 0.0) -> None:
        self._m: dict[str, _ModelLoad] = {}
        self._horizon = horizon_s
        self._window_start = t0
        for m in models:
            ml = _ModelLoad(last_t=t0)
            ml.history.append((t0, 0))
            self._m[m] = ml

    @property
    def models(self) -> list[str]:
        return list(self._m)

    def inflight(self, model: str) -> int:
        return self._m[model].inflight

    def change(self, model: str, delta: int, now: float) -> None:
        """Record an arrival (+1) or a completion (-1) at time ``now``."""
        # runs twice per request: locals instead of repeated attribute reads (same arithmetic)
        ml = self._m[model]
        v = ml.inflight
        ml.window_integral += v * (now - ml.last_t)
        ml.last_t = now
        v += delta
        if v < 0:
            ml.inflight = v
            raise ValueError(f"in-flight count of {model} went negative at t={now}")
        ml.inflight = v
        if v > ml.window_peak:
            ml.window_peak = v
        hist = ml.history
        hist.append((now, v))
        cutoff = now - self._horizon
        while len(hist) > 1 and hist[1][0] <= cutoff:
            hist.popleft()

    def sliding_mean(self, model: str, now: float, window_s: float) -> float:
        """Time-weighted mean in-flight count over ``[now - window_s, now]``."""
        ml = self._m[model]
        lo = now - window_s
        total = 0.0
        hist = ml.history
        # walk backwards over the piecewise-constant segments
        seg_end = now
        for t, v in reversed(hist):
            start = max(t, lo)
            if seg_end > start:
                total += v * (seg_end - start)
            if t <= lo:
                break
            seg_end = t
        span = min(window_s, now - hist[0][0]) if hist else window_s
        return total / span if span > 0 else float(ml.inflight)

    def close_window(self, now: float) -> dict[str, tuple[float, float]]:
        """End the current forecast window: return (mean, peak) per model and reset."""
        length = now - self._window_start
        out: dict[str, tuple[float, float]] = {}
        for name, ml in self._m.items():
            integral = ml.window_integral + ml.inflight * (now - ml.last_t)
            mean = integral / length if length > 0 else float(ml.inflight)
            out[name] = (mean, float(max(ml.window_peak, ml.inflight)))
            ml.window_integral = 0.0
            ml.last_t = now
            ml.window_peak = ml.inflight
        self._window_start = now
        return out
