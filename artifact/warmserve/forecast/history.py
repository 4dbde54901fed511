"""Reading what forecasters may learn from (the workload layer's contracts).

* priors (``history.parquet``): ``model, window, prior_mean, prior_peak`` for
  the windows of the replayed hour (docs/reference.md §2.4);
* week load (``week_load.parquet``): ``model, window, day, window_of_day,
  mean, peak, replayed`` over the whole source week. A forecaster may fit on
  a model's windows *before* its first ``replayed`` window only
  (``warmserve.workload.schema``): later rows are an oracle of the replay.
* the replayed workload (oracle only): per-window in-flight statistics from
  the published service-time proxy ``prefill_ms + output_tokens x decode_ms``
  (docs/reference.md §2.4; constants from ``configs/model``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from warmserve.config import model_checkpoint
from warmserve.control.seam import ModelSpec
from warmserve.errors import InputError


def prior_arrays(priors: pd.DataFrame, models: list[str], who: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model, ``(prior_mean[w], prior_peak[w])`` indexed by window 0..n-1."""
    for col in ("model", "window", "prior_mean", "prior_peak"):
        if col not in priors.columns:
            raise InputError(f"forecaster '{who}': priors lack column '{col}'")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for m in models:
        rows = priors[priors["model"] == m].sort_values("window")
        if rows.empty:
            raise InputError(f"forecaster '{who}': no priors for model '{m}'")
        w = rows["window"].to_numpy()
        if not np.array_equal(w, np.arange(len(w))):
            raise InputError(f"forecaster '{who}': priors of model '{m}' do not cover windows 0..{len(w) - 1}")
        out[m] = (rows["prior_mean"].to_numpy(float), rows["prior_peak"].to_numpy(float))
    return out


def history_series(week_load: pd.DataFrame, model: str, who: str) -> pd.DataFrame:
    """The windows of ``model`` before its replayed hour, in time order (``mean``, ``peak``)."""
    for col in ("model", "window", "mean", "peak", "replayed"):
        if col not in week_load.columns:
            raise InputError(f"forecaster '{who}': week_load lacks column '{col}'")
    rows = week_load[week_load["model"] == model].sort_values("window")
    if rows.empty:
        raise InputError(f"forecaster '{who}': week_load has no rows for model '{model}'")
    replayed = rows["replayed"].to_numpy(bool)
    if not replayed.any():
        raise InputError(f"forecaster '{who}': week_load of model '{model}' flags no replayed window")
    first = int(np.argmax(replayed))
    return rows.iloc[:first][["window", "mean", "peak"]].reset_index(drop=True)


def window_concurrency(
    arrivals: np.ndarray, durations: np.ndarray, window_s: float, n_windows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact time-weighted mean and peak of the in-flight step function per window.

    A request is in flight over ``[arrival, arrival + duration)``. The peak of a
    window includes the level carried into it, so it is the true maximum of the
    step function over the window.
    """
    mean = np.zeros(n_windows)
    peak = np.zeros(n_windows)
    if n_windows == 0:
        return mean, peak
    ends = arrivals + durations
    t = np.concatenate([arrivals, ends])
    d = np.concatenate([np.ones(len(arrivals)), -np.ones(len(ends))])
    order = np.lexsort((d, t))  # at equal times, departures (-1) before arrivals (+1)
    t, d = t[order], d[order]
    level = np.cumsum(d)  # level right after each event
    horizon = n_windows * window_s
    for w in range(n_windows):
        lo, hi = w * window_s, min((w + 1) * window_s, horizon)
        i0 = np.searchsorted(t, lo, side="right")  # events <= lo already applied
        i1 = np.searchsorted(t, hi, side="left")  # events < hi
        start_level = level[i0 - 1] if i0 > 0 else 0.0
        seg_t = np.concatenate([[lo], t[i0:i1], [hi]])
        seg_v = np.concatenate([[start_level], level[i0:i1]])
        mean[w] = float(np.sum(seg_v * np.diff(seg_t)) / (hi - lo))
        peak[w] = float(seg_v.max())
    return mean, peak


def workload_concurrency(
    workload: pd.DataFrame, specs: dict[str, ModelSpec], window_s: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model, true per-window (mean, peak) of the replayed workload under the
    published service-time proxy (docs/reference.md §2.4)."""
    for col in ("arrival_s", "model", "output_tokens"):
        if col not in workload.columns:
            raise InputError(f"forecaster 'oracle': workload lacks column '{col}'")
    horizon = float(workload["arrival_s"].max()) if len(workload) else 0.0
    n_windows = int(np.floor(horizon / window_s)) + 1
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, spec in specs.items():
        ck = model_checkpoint(spec.base)
        rows = workload[workload["model"] == name]
        arr = rows["arrival_s"].to_numpy(float)
        dur = (float(ck.prefill_ms) + rows["output_tokens"].to_numpy(float) * float(ck.decode_ms)) / 1000.0
        out[name] = window_concurrency(arr, dur, window_s, n_windows)
    return out
