"""The published load predictor, as a small reusable function (docs/reference.md §4).

Per model and per window: a seasonal *prior* (the same window on earlier days,
averaged) corrected by an exponentially weighted mean of the last ``<= 10``
prediction errors (weights ``2^-d``, ``d = 0`` the latest window), one window
ahead::

    pred[0]   = prior[0]
    pred[w+1] = prior[w+1] + sum_{d<K} 2^-d (obs[w-d] - prior[w-d]) / sum_{d<K} 2^-d,  K = min(10, w+1)

The published scheduler runs this over the 12 windows of the replayed hour;
``published_forecast`` runs it over any sequence (e.g. a whole week of
windows, for the notebook's error table). ``warmserve.forecast`` builds the
other forecasters next to it.
"""

from __future__ import annotations

import numpy as np

# docs/reference.md §4 (ctrl/scheduler.py): error-correction history and weight base.
HISTORY = 10
WEIGHT_BASE = 0.5


def seasonal_prior(series: np.ndarray, per_day: int) -> np.ndarray:
    """``prior[d*P + j]`` = mean of ``series[e*P + j]`` over days ``e < d``; NaN on day 0."""
    x = np.asarray(series, dtype=np.float64)
    days = len(x) // per_day
    grid = x[: days * per_day].reshape(days, per_day)
    csum = np.cumsum(grid, axis=0)
    prior = np.full_like(grid, np.nan)
    prior[1:] = csum[:-1] / np.arange(1, days)[:, None]
    return prior.reshape(-1)


def weighted_error(recent: np.ndarray, base: float = WEIGHT_BASE) -> float:
    """The published error correction: mean of ``recent`` errors (newest first) weighted ``base**d``.

    Shared by the offline study below and the online ``paper`` forecaster
    (``warmserve.forecast.paper``); 0 when there is no history yet.
    """
    r = np.asarray(recent, dtype=np.float64)
    if len(r) == 0:
        return 0.0
    w = base ** np.arange(len(r))
    return float(np.dot(w, r) / w.sum())


def published_forecast(observed: np.ndarray, prior: np.ndarray, history: int = HISTORY,
                       base: float = WEIGHT_BASE) -> np.ndarray:
    """One-window-ahead forecasts for every window of ``observed`` (same length, ``pred[0] = prior[0]``)."""
    obs = np.asarray(observed, dtype=np.float64)
    pri = np.asarray(prior, dtype=np.float64)
    if obs.shape != pri.shape:
        raise ValueError("observed and prior must have the same shape")
    err = obs - pri
    pred = pri.copy()
    for t in range(1, len(obs)):
        k = min(history, t)
        pred[t] = pri[t] + weighted_error(err[t - k : t][::-1], base)  # d = 0 is window t-1
    return pred


def mean_relative_error(pred: np.ndarray, observed: np.ndarray) -> float:
    """Mean of ``|pred - obs| / obs`` over windows with ``obs > 0`` and a finite forecast."""
    p, o = np.asarray(pred, float), np.asarray(observed, float)
    ok = np.isfinite(p) & (o > 0)
    return float(np.mean(np.abs(p[ok] - o[ok]) / o[ok])) if ok.any() else float("nan")
