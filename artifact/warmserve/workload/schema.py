"""Column contracts of everything the workload layer hands to other layers.

Other parts of the artifact (the twin, the testbed, the forecasters) code
against these names; change them only together with docs/design.md §4.

Workload (``workload.parquet``), one row per request, sorted by ``arrival_s``
(stable: ties keep model order, then sample order), ``request_id`` = row
order ``0..n-1``::

    request_id:int64  arrival_s:float64 (s from the start of the replayed hour)
    model:str (served instance name, e.g. "llama2-7b-0")  input_tokens:int64  output_tokens:int64

Priors (``history.parquet``), one row per (model, window) of the replayed
hour, ``window`` = 0..11 for a 3600 s hour of 300 s windows::

    model:str  window:int64  prior_mean:float64  prior_peak:float64

``prior_mean[j]`` / ``prior_peak[j]`` are the time-weighted mean / the peak of
in-flight requests in window ``j`` of the replayed hour averaged over the
*earlier* days of the source week, scaled to the sampled rate (docs/reference.md §2.4).

Week load (``week_load.parquet``), one row per (model, window) of the whole
source week (2016 windows of 300 s for a 7-day week), i.e. the same
quantities *before* averaging over days::

    model:str  window:int64  day:int64 (0 = Monday)  window_of_day:int64
    mean:float64  peak:float64  replayed:bool

It is scaled to the sampled rate by the same per-model factor as the priors
without the ``1/day`` averaging: ``n_i / len(pool_i)`` with
``prior_scaling=published``, ``n_i / rows_i`` with ``corrected`` (they differ
only when hour rows were duplicated). Hence
``prior_mean[j] == mean(week_load.mean[day*W + j] for day < replay_day)``.

Alignment: model ``m`` replays day ``d = manifest["replay_day"][m]``; its
replayed hour is week windows ``d*W + 0 .. d*W + 11`` (``W`` = windows per
day, 288), flagged ``replayed=True``. A forecaster may fit on windows
``< d*W`` (history) and must not read ``replayed`` rows or anything later
(they are computed from the whole source trace, i.e. a scaled *oracle* of the
replayed hour, useful only to score forecasts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from warmserve.errors import InputError

REQUEST_COLUMNS: dict[str, str] = {
    "request_id": "int64",
    "arrival_s": "float64",
    "model": "str",
    "input_tokens": "int64",
    "output_tokens": "int64",
}
PRIOR_COLUMNS: dict[str, str] = {
    "model": "str",
    "window": "int64",
    "prior_mean": "float64",
    "prior_peak": "float64",
}
WEEK_LOAD_COLUMNS: dict[str, str] = {
    "model": "str",
    "window": "int64",
    "day": "int64",
    "window_of_day": "int64",
    "mean": "float64",
    "peak": "float64",
    "replayed": "bool",
}
# The loaded source trace (after parsing and re-basing), before the recipe.
TRACE_COLUMNS: dict[str, str] = {
    "t_s": "float64",  # seconds since the day origin of day 0 (Monday)
    "input_tokens": "int64",  # raw ContextTokens (not capped)
    "output_tokens": "int64",  # raw GeneratedTokens (not floored)
}
# The Azure LLM inference trace 2024 CSV header (docs/reference.md §2.1).
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _coerce(df: pd.DataFrame, columns: dict[str, str], what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {missing}; expected {list(columns)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for c, dtype in columns.items():
        col = df[c].to_numpy() if dtype != "str" else df[c].astype(str).to_numpy()
        out[c] = col if dtype == "str" else col.astype(dtype)
    return out


def as_requests(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the workload columns and dtypes, validated."""
    out = _coerce(df, REQUEST_COLUMNS, "workload")
    if len(out) and not np.all(np.diff(out["arrival_s"].to_numpy()) >= 0):
        raise InputError("workload: arrival_s is not sorted")
    if not np.array_equal(out["request_id"].to_numpy(), np.arange(len(out))):
        raise InputError("workload: request_id must be the row order 0..n-1")
    for c in ("input_tokens", "output_tokens"):
        if (out[c].to_numpy() < 0).any():
            raise InputError(f"workload: negative values in '{c}'")
    return out


def as_priors(df: pd.DataFrame) -> pd.DataFrame:
    return _coerce(df, PRIOR_COLUMNS, "history")


def as_week_load(df: pd.DataFrame) -> pd.DataFrame:
    return _coerce(df, WEEK_LOAD_COLUMNS, "week_load")

