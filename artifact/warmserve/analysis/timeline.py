"""Per-model time series rebuilt from one run's request log and cluster timeline.

The timeline figure shows, per model and on one time axis: the offered load
(requests in flight and arrivals per bin, from ``requests.parquet``), the
system's forecast for each window (timeline kind ``forecast``), the instances
that exist (``instance_start`` .. ``instance_stop``) and the prewarmed
replicas held in GPU memory. A replica is keyed by (model, GPU set), as the
backends emit it: it is *held* from ``prewarm_start`` (loading) or from a
``prewarm_done`` with detail ``kept_on_stop`` (an instance's weights left in
place) until ``claim`` (adopted by an instance start) or ``evict``; it is
*loaded* from its ``prewarm_done``. Every series is a step function sampled
on a regular grid, so panels line up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def grid(end_s: float, step_s: float) -> np.ndarray:
    """Sample times 0, step, ... up to and including ``end_s``."""
    if step_s <= 0:
        raise ValueError("step_s must be > 0")
    return np.arange(0.0, end_s + step_s / 2, step_s)


def inflight(requests: pd.DataFrame, t: np.ndarray) -> pd.DataFrame:
    """Requests in flight per model at each time in ``t`` (arrived, not finished; unfinished ones stay).

    A request with no ``finish_s`` (timeout/failed) counts as in flight to the
    end: it was offered and never served, which is load the system faced.
    """
    rows = []
    for model, g in requests.groupby("model", sort=True, observed=True):
        arr = np.sort(g["arrival_s"].to_numpy(float))
        fin = g["finish_s"].to_numpy(float)
        fin = np.sort(np.where(np.isfinite(fin), fin, np.inf))
        n = np.searchsorted(arr, t, side="right") - np.searchsorted(fin, t, side="right")
        rows.append(pd.DataFrame({"t_s": t, "model": str(model), "inflight": n.astype(int)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["t_s", "model", "inflight"])


def arrivals(requests: pd.DataFrame, bin_s: float, end_s: float) -> pd.DataFrame:
    """Arrival rate (requests/s) per model per ``bin_s`` bin; ``t_s`` = bin start."""
    edges = grid(end_s, bin_s)
    if edges[-1] < end_s:
        edges = np.append(edges, edges[-1] + bin_s)
    rows = []
    for model, g in requests.groupby("model", sort=True, observed=True):
        counts, _ = np.histogram(g["arrival_s"].to_numpy(float), bins=edges)
        rows.append(pd.DataFrame({"t_s": edges[:-1], "model": str(model), "rate_rps": counts / bin_s}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["t_s", "model", "rate_rps"])


def forecast(timeline: pd.DataFrame, t: np.ndarray) -> pd.DataFrame:
    """The forecast (mean, peak) in force at each time: the last ``forecast`` event at or before it."""
    f = timeline[timeline["kind"] == "forecast"][["t_s", "model", "mean", "peak"]].sort_values("t_s", kind="stable")
    rows = []
    for model, g in f.groupby("model", sort=True):
        idx = np.searchsorted(g["t_s"].to_numpy(float), t, side="right") - 1
        have = idx >= 0
        mean = np.where(have, g["mean"].to_numpy(float)[np.clip(idx, 0, None)], np.nan)
        peak = np.where(have, g["peak"].to_numpy(float)[np.clip(idx, 0, None)], np.nan)
        rows.append(pd.DataFrame({"t_s": t, "model": str(model), "forecast_mean": mean, "forecast_peak": peak}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["t_s", "model", "forecast_mean", "forecast_peak"])


def _sample(changes: list[tuple[float, str, int]], models: list[str], t: np.ndarray, name: str) -> pd.DataFrame:
    """Sample per-model counts recorded as (time, model, count after the event) at ``t``."""
    ch = pd.DataFrame(changes, columns=["t_s", "model", "v"])
    rows = []
    for m in models:
        g = ch[ch["model"] == m]
        times = g["t_s"].to_numpy(float)
        vals = g["v"].to_numpy(int)
        idx = np.searchsorted(times, t, side="right") - 1
        v = np.where(idx >= 0, vals[np.clip(idx, 0, None)] if len(vals) else 0, 0)
        rows.append(pd.DataFrame({"t_s": t, "model": m, name: v.astype(int)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["t_s", "model", name])


def instances(timeline: pd.DataFrame, t: np.ndarray) -> pd.DataFrame:
    """Instances per model at each time: ``instances`` (started, not stopped) and ``ready`` (serving)."""
    ev = timeline[timeline["kind"].isin(["instance_start", "instance_ready", "instance_stop"])].sort_values(
        "t_s", kind="stable")
    started: dict[str, set[int]] = {}
    ready: dict[str, set[int]] = {}
    ch_s: list[tuple[float, str, int]] = []
    ch_r: list[tuple[float, str, int]] = []
    for r in ev.itertuples(index=False):
        m, iid = str(r.model), int(r.instance_id)
        s, rd = started.setdefault(m, set()), ready.setdefault(m, set())
        if r.kind == "instance_start":
            s.add(iid)
        elif r.kind == "instance_ready":
            rd.add(iid)
        else:
            s.discard(iid)
            rd.discard(iid)
        ch_s.append((float(r.t_s), m, len(s)))
        ch_r.append((float(r.t_s), m, len(rd)))
    models = sorted(started)
    a = _sample(ch_s, models, t, "instances")
    b = _sample(ch_r, models, t, "ready")
    return a.merge(b, on=["t_s", "model"]) if models else pd.DataFrame(columns=["t_s", "model", "instances", "ready"])


def replicas(timeline: pd.DataFrame, t: np.ndarray) -> pd.DataFrame:
    """Prewarmed replicas per model at each time: ``replicas_held`` (loading or loaded) and ``replicas_loaded``."""
    kinds = ["prewarm_start", "prewarm_done", "claim", "evict"]
    ev = timeline[timeline["kind"].isin(kinds)].sort_values("t_s", kind="stable")
    held: dict[tuple[str, str], bool] = {}  # (model, gpus) -> loaded?
    ch_h: list[tuple[float, str, int]] = []
    ch_l: list[tuple[float, str, int]] = []
    models: set[str] = set()
    for r in ev.itertuples(index=False):
        key = (str(r.model), str(r.gpus))
        models.add(key[0])
        if r.kind == "prewarm_start":
            held[key] = False
        elif r.kind == "prewarm_done":
            held[key] = True  # also opens a replica kept after an instance stop
        else:
            held.pop(key, None)
        mine = [v for (m, _), v in held.items() if m == key[0]]
        ch_h.append((float(r.t_s), key[0], len(mine)))
        ch_l.append((float(r.t_s), key[0], int(sum(mine))))
    ms = sorted(models)
    a = _sample(ch_h, ms, t, "replicas_held")
    b = _sample(ch_l, ms, t, "replicas_loaded")
    return a.merge(b, on=["t_s", "model"]) if ms else pd.DataFrame(
        columns=["t_s", "model", "replicas_held", "replicas_loaded"])


def model_series(requests: pd.DataFrame, timeline: pd.DataFrame, *, end_s: float, step_s: float = 1.0,
                 bin_s: float = 10.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(step series on a ``step_s`` grid: inflight, forecast, instances, replicas; arrivals per ``bin_s``).

    Models that appear only in one source get zeros (or NaN forecasts) in the others.
    """
    t = grid(end_s, step_s)
    parts = [inflight(requests, t), forecast(timeline, t), instances(timeline, t), replicas(timeline, t)]
    models = sorted(set().union(*(set(p["model"]) for p in parts)))
    base = pd.DataFrame({"t_s": np.tile(t, len(models)), "model": np.repeat(models, len(t))})
    for p in parts:
        base = base.merge(p, on=["t_s", "model"], how="left")
    for c in ("inflight", "instances", "ready", "replicas_held", "replicas_loaded"):
        base[c] = base[c].fillna(0).astype(int)
    return base, arrivals(requests, bin_s, end_s)
