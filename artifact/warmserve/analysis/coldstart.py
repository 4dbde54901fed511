"""The cold-start table: TTFT of one probe request per model and start kind, split into its parts.

Each ``probe_<kind>`` run (``warmserve.control.probe``) stages every model so
its one request meets that start kind. The split ``queue + load + init +
prefill = ttft`` comes straight from the request log (an exact identity of the
log schema), so the bars add up to the TTFT by construction. A probe whose
request met a different start kind than staged, or a "prewarmed" start that
still had to load weights (the replica was not finished when the probe
arrived), is flagged rather than hidden.

Prewarmed starts come in two mechanisms (``hardware.lifecycle.prewarm_mechanism``,
docs/lifecycle.md §4): ``vmm`` (weights resident on the GPU, the paper's memory
switching) and ``sleep`` (upstream vLLM sleep mode level 1). The ``variant``
column tells them apart; the other kinds do not depend on the mechanism, so a
run of them under ``sleep`` is dropped when the ``vmm`` run of the same cell
exists (they are identical).
"""

from __future__ import annotations

import pandas as pd

from warmserve.analysis.labels import PROBE_KINDS, natural_key
from warmserve.analysis.results import config_value, read_requests

PARTS = ("queue_s", "load_s", "init_s", "prefill_s")
KIND_ORDER = tuple(PROBE_KINDS.values())  # cold, worker, prewarmed, warm
VARIANT_ORDER = ("cold", "worker", "prewarmed_vmm", "prewarmed_sleep", "warm")
VARIANT_LABELS = {"cold": "cold (new process)", "worker": "worker prewarmed",
                  "prewarmed_vmm": "weights prewarmed (vmm, resident)",
                  "prewarmed_sleep": "weights prewarmed (sleep, host memory)", "warm": "warm"}


def _variant(kind: str, mechanism: str) -> str:
    return f"{kind}_{mechanism}" if kind == "prewarmed" else kind


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
        mech = str(config_value(run.path, "hardware.lifecycle.prewarm_mechanism") or "vmm")
        req = read_requests(run.path, ("model", "status", "ttft_s", "start_kind", *PARTS))
        for model, g in req.groupby("model", sort=True):
            ok = g[g["status"] == "ok"]
            row = {"hardware": run.hardware, "model": str(model), "checkpoint": _base(str(model)),
                   "start_kind": staged, "mechanism": mech, "variant": _variant(staged, mech),
                   "requests": len(g), "ok": len(ok),
                   "ttft_s": ok["ttft_s"].mean() if len(ok) else float("nan")}
            for p in PARTS:
                row[p] = ok[p].mean() if len(ok) else float("nan")
            met = sorted(set(ok["start_kind"].astype(str)))
            flags = []
            if met and met != [staged]:
                flags.append(f"met start kind {'/'.join(met)}, staged {staged}")
            # a sleeping replica's wake copies its weights by design (its load phase); vmm and warm load nothing
            if staged in ("prewarmed", "warm") and mech != "sleep" and len(ok) and (ok["load_s"] > 0).any():
                flags.append(f"{staged} start still loaded weights ({ok['load_s'].max():.2g} s): "
                             "the replica was not ready when the probe arrived")
            row["flag"] = "; ".join(flags)
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    # a non-prewarmed kind does not depend on the mechanism: keep its vmm run when both exist
    has_vmm = set(df.loc[df["mechanism"] == "vmm", ["hardware", "model", "start_kind"]].itertuples(index=False))
    vmm_twin = pd.Series([(h, m, k) in has_vmm for h, m, k in
                          df[["hardware", "model", "start_kind"]].itertuples(index=False)], index=df.index)
    dup = (df["start_kind"] != "prewarmed") & (df["mechanism"] != "vmm") & vmm_twin
    df = df[~dup].copy()
    df["variant"] = pd.Categorical(df["variant"], categories=list(VARIANT_ORDER), ordered=True)
    df["start_kind"] = pd.Categorical(df["start_kind"], categories=list(KIND_ORDER), ordered=True)
    rank = {m: i for i, m in enumerate(sorted(df["model"].unique(), key=natural_key))}  # 7b < 13b < 70b
    df = df.assign(_m=df["model"].map(rank)).sort_values(["hardware", "_m", "variant"])
    return df.drop(columns="_m").reset_index(drop=True)


def speedups(table: pd.DataFrame, fast: str = "prewarmed_vmm", slow: str = "cold") -> pd.DataFrame:
    """Per (hardware, model): TTFT of the ``slow`` start / TTFT of the ``fast`` start (by ``variant``)."""
    p = table.pivot_table(index=["hardware", "model"], columns="variant", values="ttft_s", observed=True)
    if fast not in p or slow not in p:
        return pd.DataFrame(columns=["hardware", "model", f"{slow}_over_{fast}"])
    return (p[slow] / p[fast]).rename(f"{slow}_over_{fast}").reset_index()
