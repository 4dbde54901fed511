"""Load history for forecasters: per-window mean and peak of in-flight requests (docs/reference.md §2.4).

A source request arriving at ``t`` is in flight until
``t + (prefill_ms + output_tokens*decode_ms)/1000`` (per-model constants
from ``configs/model``; raw, unclipped GeneratedTokens as published). For
every window of the week we compute, exactly and vectorised:

* ``mean``: the time-weighted average of the in-flight step function;
* ``peak``: its maximum over the window, counting the level carried in at the
  window start and netting events at identical times (the published code
  takes the max at event points inside the window, which misses the
  carried-in level of a window without events; for dense traces the two are
  the same).

Priors: for the model replaying day ``d``,
``prior[j] = sum_{e<d} load[e*W + j] * scale`` with
``scale = n / len(pool) / d`` (published) or ``n / rows / d`` (corrected:
the published scale is too small by the duplication factor ``k`` when hour
rows were repeated to reach ``n``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from warmserve.errors import InputError
from warmserve.workload.loader import DAY_S

PRIOR_SCALINGS = ("published", "corrected")


def inflight_load(
    t_s: np.ndarray,
    output_tokens: np.ndarray,
    prefill_ms: float,
    decode_ms: float,
    window_s: float,
    n_windows: int,
    chunk_windows: int = 288,
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, peak) in-flight requests for windows ``[w*window_s, (w+1)*window_s)``, ``w < n_windows``.

    Works through ``chunk_windows`` windows at a time (a day by default), starting each chunk from
    the exact level carried in, so memory stays at about one day of events.
    """
    t_s = np.asarray(t_s, dtype=np.float64)
    if len(t_s) and not np.all(t_s[1:] >= t_s[:-1]):
        raise ValueError("inflight_load: arrivals must be sorted")
    ends = t_s + (prefill_ms + output_tokens.astype(np.float64) * decode_ms) / 1000.0
    ends.sort()
    mean = np.zeros(n_windows, dtype=np.float64)
    peak = np.zeros(n_windows, dtype=np.float64)
    for c0 in range(0, n_windows, chunk_windows):
        c1 = min(c0 + chunk_windows, n_windows)
        lo, hi = c0 * window_s, c1 * window_s
        a0, a1 = np.searchsorted(t_s, [lo, hi], side="left")
        e0, e1 = np.searchsorted(ends, [lo, hi], side="left")
        level0 = int(a0) - int(e0)  # arrived before ``lo`` and not yet finished at ``lo``
        bounds = np.arange(c0, c1, dtype=np.float64) * window_s
        # events: arrivals (+1), completions (-1), window starts (0) so each segment lies in one window
        times = np.concatenate([t_s[a0:a1], ends[e0:e1], bounds])
        delta = np.concatenate(
            [np.ones(a1 - a0, np.int32), -np.ones(e1 - e0, np.int32), np.zeros(len(bounds), np.int32)]
        )
        order = np.argsort(times, kind="stable")  # three sorted runs: timsort merges them in O(n)
        times = times[order]
        level = level0 + np.cumsum(delta[order], dtype=np.int64)
        del order, delta
        last_at_time = np.ones(len(times), dtype=bool)  # the level after the last event at each time
        last_at_time[:-1] = times[1:] != times[:-1]
        seg_start, seg_level = times[last_at_time], level[last_at_time]
        del times, level, last_at_time
        seg_end = np.empty_like(seg_start)
        seg_end[:-1] = seg_start[1:]
        seg_end[-1] = hi
        win = np.minimum(np.floor(seg_start / window_s).astype(np.int64), c1 - 1)
        mean[c0:c1] = np.bincount(win - c0, weights=seg_level * (seg_end - seg_start), minlength=c1 - c0)
        _group_max(peak, win, seg_level.astype(np.float64))
    return mean / window_s, peak


def _group_max(out: np.ndarray, groups: np.ndarray, values: np.ndarray) -> None:
    """``out[g] = max(values[groups == g])`` for sorted ``groups`` (much faster than ``np.maximum.at``)."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    out[groups[starts]] = np.maximum.reduceat(values, starts)


def scale_factor(n: int, rows: int, dup: int, prior_scaling: str) -> float:
    """Sampling ratio applied to source-trace load (without the 1/day average)."""
    if prior_scaling == "published":
        return n / (rows * dup) if rows else 0.0
    if prior_scaling == "corrected":
        return n / rows if rows else 0.0
    raise InputError(f"prior_scaling must be one of {PRIOR_SCALINGS}, got '{prior_scaling}'")


def week_frame(model: str, mean: np.ndarray, peak: np.ndarray, scale: float, window_s: float,
               replay_day: int | None, hour_windows: int) -> pd.DataFrame:
    """The week-load rows of one model (see ``schema``), scaled to the sampled rate."""
    per_day = int(DAY_S // window_s)
    w = np.arange(len(mean), dtype=np.int64)
    day = w // per_day
    wod = w % per_day
    replayed = (day == replay_day) & (wod < hour_windows) if replay_day is not None else np.zeros(len(w), bool)
    return pd.DataFrame(
        {
            "model": pd.array([model] * len(w), dtype="str"),
            "window": w,
            "day": day,
            "window_of_day": wod,
            "mean": mean * scale,
            "peak": peak * scale,
            "replayed": replayed,
        }
    )


def priors_from_week(model: str, mean: np.ndarray, peak: np.ndarray, scale: float, replay_day: int,
                     window_s: float, hour_windows: int) -> pd.DataFrame:
    """Published prior: the same window on earlier days, summed, times ``scale / replay_day``."""
    per_day = int(DAY_S // window_s)
    if replay_day < 1:
        raise InputError(f"model {model}: replay day {replay_day} has no earlier days for a prior")
    idx = np.arange(replay_day)[:, None] * per_day + np.arange(hour_windows)[None, :]
    return pd.DataFrame(
        {
            "model": pd.array([model] * hour_windows, dtype="str"),
            "window": np.arange(hour_windows, dtype=np.int64),
            "prior_mean": mean[idx].sum(axis=0) * (scale / replay_day),
            "prior_peak": peak[idx].sum(axis=0) * (scale / replay_day),
        }
    )


def priors_same_hour(model: str, mean: np.ndarray, peak: np.ndarray, scale: float) -> pd.DataFrame:
    """Prior for a one-hour source (no earlier days): the source hour's own scaled load.

    It sees the replayed hour, so it is an oracle-like prior; the manifest labels it.
    """
    n = len(mean)
    return pd.DataFrame(
        {
            "model": pd.array([model] * n, dtype="str"),
            "window": np.arange(n, dtype=np.int64),
            "prior_mean": mean * scale,
            "prior_peak": peak * scale,
        }
    )
