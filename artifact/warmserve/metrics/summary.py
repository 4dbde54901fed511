"""Summary statistics of one run (``summary.json``), overall and per model.

Definitions (backend-neutral, from the request log and the timeline):

* TTFT statistics are over requests that got a first token; ``mean`` and
  ``p50/p90/p95/p99`` (numpy linear percentiles, like the published analyzer).
  Requests without a result are *not* given a TTFT: they are counted as
  ``timeout``/``failed``. The published analyzer instead counted a missing
  result as TTFT = TPOT = 999 s (docs/reference.md §8.2); ``ttft_mean_published`` and
  ``ttft_p99_published`` reproduce that convention for comparison.
* ``tpot_mean``: mean over finished requests with more than one output token;
  ``tpot_token_weighted``: total decode time / total decode tokens.
* SLO attainment: share of *all* requests that finished ``ok`` with TTFT <=
  ``slo.ttft_s`` and TPOT <= ``slo.tpot_s`` (TPOT of a one-token request is
  met). Goodput: those requests per second of replay.
* ``gpu_seconds``: time GPUs were held by an instance (start to stop, union
  per GPU, within the run), the cost of a placement.
* ``prewarm_hit_rate``: starts that adopted prewarmed weights / all
  non-setup starts; ``starts_by_kind`` counts instance starts by kind;
  ``requests_by_start_kind`` counts requests by the start that served them.
* ``bytes_loaded``: weight bytes moved by completed plus cancelled loads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

PCTS = (50, 90, 95, 99)
KINDS = ("warm", "prewarmed", "worker", "cold")
PUBLISHED_PENALTY_S = 999.0  # reference result_analyzer: missing result -> TTFT 999 s


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _request_stats(r: pd.DataFrame, slo_ttft: float, slo_tpot: float, replay_s: float) -> dict[str, Any]:
    n = len(r)
    status = r["status"]  # compared as a column: a categorical compares its codes, not 10^7 strings
    ok = np.asarray(status == "ok", dtype=bool)
    ttft = r["ttft_s"].to_numpy(float)
    has = np.isfinite(ttft)
    tpot = r["tpot_s"].to_numpy(float)
    out: dict[str, Any] = {
        "requests": n,
        "ok": int(ok.sum()),
        "failed": int(np.asarray(status == "failed", dtype=bool).sum()),
        "timeout": int(np.asarray(status == "timeout", dtype=bool).sum()),
        "ttft_mean": _f(ttft[has].mean()) if has.any() else None,
    }
    for p in PCTS:
        out[f"ttft_p{p}"] = _f(np.percentile(ttft[has], p)) if has.any() else None
    pen = np.where(ok, ttft, PUBLISHED_PENALTY_S)
    out["ttft_mean_published"] = _f(pen.mean()) if n else None
    out["ttft_p99_published"] = _f(np.percentile(pen, 99)) if n else None
    tp = tpot[ok & np.isfinite(tpot)]
    out["tpot_mean"] = _f(tp.mean()) if len(tp) else None
    dec_tokens = (r["output_tokens"].to_numpy(float) - 1)[ok & np.isfinite(tpot)]
    out["tpot_token_weighted"] = _f((tp * dec_tokens).sum() / dec_tokens.sum()) if dec_tokens.sum() > 0 else None
    met = ok & (ttft <= slo_ttft) & (~np.isfinite(tpot) | (tpot <= slo_tpot))
    out["slo_attainment"] = _f(met.mean()) if n else None
    out["goodput_rps"] = _f(met.sum() / replay_s) if replay_s > 0 else None
    for c in ("queue_s", "load_s", "init_s", "prefill_s"):
        v = r[c].to_numpy(float)
        v = v[np.isfinite(v)]
        out[f"{c[:-2]}_mean_s"] = _f(v.mean()) if len(v) else None
    kinds = r["start_kind"].value_counts()
    out["requests_by_start_kind"] = {k: int(kinds.get(k, 0)) for k in KINDS}
    return out


def _instance_spans(tl: pd.DataFrame, end_s: float) -> pd.DataFrame:
    """One row per instance: model, gpus, start, stop (end of run if never stopped), start_kind."""
    st = tl[tl["kind"] == "instance_start"][["instance_id", "t_s", "model", "gpus", "start_kind"]]
    sp = tl[tl["kind"] == "instance_stop"][["instance_id", "t_s"]].rename(columns={"t_s": "stop_s"})
    spans = st.merge(sp, on="instance_id", how="left")
    spans["stop_s"] = spans["stop_s"].fillna(end_s).clip(upper=end_s)
    return spans


def _gpu_seconds(spans: pd.DataFrame) -> float:
    per_gpu: dict[int, list[tuple[float, float]]] = {}
    for row in spans.itertuples(index=False):
        for g in str(row.gpus).split(","):
            if g:
                per_gpu.setdefault(int(g), []).append((float(row.t_s), float(row.stop_s)))
    total = 0.0
    for ivs in per_gpu.values():
        ivs.sort()
        cur_s, cur_e = ivs[0]
        for s, e in ivs[1:]:
            if s > cur_e:
                total += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        total += cur_e - cur_s
    return total


def _start_stats(spans: pd.DataFrame, tl: pd.DataFrame) -> dict[str, Any]:
    kinds = spans["start_kind"].astype(str).value_counts()
    by_kind = {k: int(kinds.get(k, 0)) for k in KINDS}
    non_setup = by_kind["prewarmed"] + by_kind["worker"] + by_kind["cold"]
    loads = tl[tl["kind"].isin(["load_done", "load_cancel"])]
    return {
        "instances": len(spans),
        "starts_by_kind": by_kind,
        "prewarm_hit_rate": by_kind["prewarmed"] / non_setup if non_setup else None,
        "gpu_seconds": _gpu_seconds(spans) if len(spans) else 0.0,
        "bytes_loaded": int(loads["bytes"].sum()),
        "prewarms": int((tl["kind"] == "prewarm_start").sum()),
        "evictions": int((tl["kind"] == "evict").sum()),
        "preemptions": int((tl["kind"] == "preempt").sum()),
        # KV reservation at work: how often instances lent idle KV blocks to prewarming, and the most
        # lent at once (a ``kv_reserve`` event carries the instance's lent total after the change)
        "kv_lends": int(((tl["kind"] == "kv_reserve") & (tl["bytes"] > 0)).sum()),
        "kv_lent_peak_bytes": (int(tl.loc[tl["kind"] == "kv_reserve", "bytes"].max())
                               if (tl["kind"] == "kv_reserve").any() else 0),
    }


def _groups(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions per model (one pass; filtering a 10^7-row log per model would be slow)."""
    if not len(df):
        return {}
    col = df["model"]
    if isinstance(col.dtype, pd.CategoricalDtype):  # group the integer codes (no per-row strings)
        codes = col.cat.codes.to_numpy()
        cats = col.cat.categories
        idx = pd.Series(codes).groupby(codes, sort=False).indices
        return {str(cats[c]): v for c, v in idx.items() if c >= 0}
    keys = pd.Series(np.asarray(col, dtype=object))
    return {str(k): v for k, v in keys.groupby(keys, sort=False).indices.items()}


_REQUEST_STAT_COLUMNS = ["status", "ttft_s", "tpot_s", "output_tokens", "queue_s", "load_s", "init_s", "prefill_s",
                         "start_kind"]


def summarize(requests: pd.DataFrame, timeline: pd.DataFrame, *, end_s: float, replay_s: float,
              slo_ttft_s: float, slo_tpot_s: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``summary.json`` document."""
    spans = _instance_spans(timeline, end_s)
    overall = _request_stats(requests, slo_ttft_s, slo_tpot_s, replay_s) | _start_stats(spans, timeline)
    per_model = {}
    req_idx = _groups(requests)
    span_idx = _groups(spans)
    tl_idx = _groups(timeline)
    none = np.array([], dtype=np.int64)
    slim = requests[_REQUEST_STAT_COLUMNS]  # per-model subsets copy only what the statistics read
    for m in sorted((set(req_idx) | set(span_idx)) - {""}):
        r = slim.iloc[req_idx.get(m, none)]
        s = spans.iloc[span_idx.get(m, none)]
        t = timeline.iloc[tl_idx.get(m, none)]
        per_model[m] = _request_stats(r, slo_ttft_s, slo_tpot_s, replay_s) | _start_stats(s, t)
    doc: dict[str, Any] = {
        "slo": {"ttft_s": slo_ttft_s, "tpot_s": slo_tpot_s},
        "replay_s": replay_s,
        "end_s": end_s,
        "overall": overall,
        "per_model": per_model,
    }
    if extra:
        doc.update(extra)
    return doc
