"""The cold-start table: TTFT of one probe request per model and start kind, split into its parts.

Each ``probe_<kind>`` run (``warmserve.control.probe``) stages every model so
its one request meets that start kind. The split ``queue + load + init +
prefill = ttft`` comes straight from the request log (an exact identity of the
log schema), so the bars add up to the TTFT by construction. A probe whose
request met a different start kind than staged, or a "prewarmed" start that
still had to load weights (the replica was not finished when the probe
arrived), is flagged rather than hidden.
"""

from __future__ import annotations

import pandas as pd

from warmserve.analysis.labels import PROBE_KINDS, natural_key
from warmserve.analysis.results import read_requests

PARTS = ("queue_s", "load_s", "init_s", "prefill_s")
KIND_ORDER = tuple(PROBE_KINDS.values())  # cold, worker, prewarmed, warm


def _base(model: str) -> str:
    """'llama2-70b-0' -> 'llama2-70b' (the checkpoint; virtual replicas share it)."""
    head, _, tail = model.rpartition("-")
    return head if tail.isdigit() and head else model


def coldstart_table(overall: pd.DataFrame) -> pd.DataFrame:
    """One row per (hardware, model, staged start kind): mean TTFT and parts over its probe requests."""
    rows = []
    for run in overall.itertuples(index=False):
        staged = PROBE_KINDS.get(str(run.system))
        if staged is None:
            continue
        req = read_requests(run.path, ("model", "status", "ttft_s", "start_kind", *PARTS))
        for model, g in req.groupby("model", sort=True):
            ok = g[g["status"] == "ok"]
            row = {"hardware": run.hardware, "model": str(model), "checkpoint": _base(str(model)),
                   "start_kind": staged, "requests": len(g), "ok": len(ok),
                   "ttft_s": ok["ttft_s"].mean() if len(ok) else float("nan")}
            for p in PARTS:
                row[p] = ok[p].mean() if len(ok) else float("nan")
            met = sorted(set(ok["start_kind"].astype(str)))
            flags = []
            if met and met != [staged]:
                flags.append(f"met start kind {'/'.join(met)}, staged {staged}")
            if staged in ("prewarmed", "warm") and len(ok) and (ok["load_s"] > 0).any():
                flags.append(f"{staged} start still loaded weights ({ok['load_s'].max():.2g} s): "
                             "the replica was not ready when the probe arrived")
            row["flag"] = "; ".join(flags)
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["start_kind"] = pd.Categorical(df["start_kind"], categories=list(KIND_ORDER), ordered=True)
    rank = {m: i for i, m in enumerate(sorted(df["model"].unique(), key=natural_key))}  # 7b < 13b < 70b
    df = df.assign(_m=df["model"].map(rank)).sort_values(["hardware", "_m", "start_kind"])
    return df.drop(columns="_m").reset_index(drop=True)


def speedups(table: pd.DataFrame, fast: str = "prewarmed", slow: str = "cold") -> pd.DataFrame:
    """Per (hardware, model): TTFT of the ``slow`` start / TTFT of the ``fast`` start."""
    p = table.pivot_table(index=["hardware", "model"], columns="start_kind", values="ttft_s", observed=True)
    if fast not in p or slow not in p:
        return pd.DataFrame(columns=["hardware", "model", f"{slow}_over_{fast}"])
    return (p[slow] / p[fast]).rename(f"{slow}_over_{fast}").reset_index()
