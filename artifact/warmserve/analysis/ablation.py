"""The ablation chain per setting and rate: was each mechanism exercised, and did it beat seed noise?

A step that adds a mechanism can only show an effect if the mechanism ran:
KV reservation does nothing when no prewarm ever needed an idle instance's KV
blocks, evict-aware placement does nothing when nothing was evicted. So each
row says, from the counters in ``summary.json``, whether its mechanism was
exercised (and in how many seeds), and whether its change of P99 / mean TTFT
against the previous step exceeds the seed range (``seeds.beyond_range``). A
step that was not exercised says "not exercised in this setting" and why,
instead of reading as "the mechanism does not help".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from warmserve.analysis.headline_data import gpu_hours
from warmserve.analysis.labels import ABLATION_LABELS, ABLATION_ORDER, label
from warmserve.analysis.seeds import beyond_range, finite, values_range


def _col(r: pd.Series, name: str) -> float | None:
    return finite(r.get(name))


@dataclass(frozen=True)
class Check:
    """How to tell from one run (and the previous step's / WarmServe's run at the same seed) that a step's
    mechanism ran; ``None`` = unknown (the counter is missing from older runs)."""

    what: str  # the counter, as the table names it
    ran: Callable[[pd.Series, pd.Series | None, pd.Series | None], bool | None]
    why_not: str


def _gt0(name: str) -> Callable[[pd.Series, pd.Series | None, pd.Series | None], bool | None]:
    def f(r: pd.Series, _prev: pd.Series | None, _ws: pd.Series | None) -> bool | None:
        v = _col(r, name)
        return None if v is None else v > 0
    return f


def _evicted(r: pd.Series, prev: pd.Series | None, _ws: pd.Series | None) -> bool | None:
    vals = [_col(x, "evictions") for x in (r, prev) if x is not None]
    if all(v is None for v in vals):
        return None
    return any(v is not None and v > 0 for v in vals)


def _plan_differs(r: pd.Series, _prev: pd.Series | None, ws: pd.Series | None) -> bool | None:
    if ws is None:
        return None
    return any(_col(r, k) != _col(ws, k) for k in ("prewarms", "instances"))


CHECKS: dict[str, Check] = {
    "worker_prewarm": Check("starts_by_kind.worker > 0", _gt0("starts_by_kind.worker"),
                            "no start used a pre-spawned worker/engine"),
    "warmserve_no_prediction": Check("starts_by_kind.prewarmed > 0", _gt0("starts_by_kind.prewarmed"),
                                     "no start adopted weights kept after a stop"),
    "ablation_forecast_rr": Check("prewarms > 0", _gt0("prewarms"), "the forecast never asked for a prewarm"),
    "warmserve_no_kv": Check("evictions > 0 (this or the round-robin step)", _evicted,
                             "no replica was evicted under either placement, so placement never had to choose "
                             "which replica to give up"),
    "warmserve": Check("kv_lends > 0", _gt0("kv_lends"),
                       "no KV block was lent (kv_lends = 0): no prewarm needed memory held by an idle "
                       "instance's KV cache"),
    "oracle": Check("prewarms or instances differ from WarmServe", _plan_differs,
                    "the oracle forecast led to the same plan as the paper forecaster (same prewarms and "
                    "instances at every seed)"),
}


def exercised(step: str, runs: pd.DataFrame, prev: pd.DataFrame | None, ws: pd.DataFrame | None) -> str:
    """'yes (2 of 2 seeds)', 'partly (1 of 2 seeds)', 'not exercised in this setting: <why>', or 'unknown'."""
    chk = CHECKS.get(step)
    if chk is None:
        return "baseline" if step == ABLATION_ORDER[0] else "no check defined"
    by_seed = lambda f: {int(r["seed"]): r for _, r in f.iterrows()} if f is not None else {}  # noqa: E731
    p, w = by_seed(prev), by_seed(ws)
    flags = [chk.ran(r, p.get(int(r["seed"])), w.get(int(r["seed"]))) for _, r in runs.iterrows()]
    known = [f for f in flags if f is not None]
    n = len(flags)
    if not known:
        return f"unknown: {chk.what.split(' ')[0]} not recorded by these runs"
    k = sum(known)
    unk = f", {n - len(known)} unknown" if len(known) < n else ""
    if k == 0:
        return f"not exercised in this setting: {chk.why_not} (checked: {chk.what}, in 0 of {n} seeds{unk})"
    word = "yes" if k == len(known) else "partly"
    return f"{word} ({chk.what} in {k} of {n} seeds{unk})"


def effect(prev: pd.DataFrame | None, cur: pd.DataFrame, metric: str) -> str:
    """'30.2 -> 22.4 s: beyond seed range' (means over seeds) or why it cannot be told."""
    if prev is None or prev.empty:
        return "-"
    a, b = pd.to_numeric(prev[metric], errors="coerce"), pd.to_numeric(cur[metric], errors="coerce")
    verdict = beyond_range(list(a), list(b))
    return f"{a.mean():.3g} -> {b.mean():.3g} s: {verdict}"


def ablation_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, rate, step) in chain order; steps missing from the runs are skipped (the
    notebook lists them)."""
    d = df.assign(gpu_hours=gpu_hours(df))
    if "kv_lends" not in d:
        d["kv_lends"] = float("nan")
    rows = []
    for (setting, rps), g in d.groupby(["setting", "rps"], sort=True):
        steps = [s for s in ABLATION_ORDER if s in set(g["system"])] + sorted(set(g["system"]) - set(ABLATION_ORDER))
        ws = g[g["system"] == "warmserve"]
        prev: pd.DataFrame | None = None
        for step in steps:
            cur = g[g["system"] == step].sort_values("seed")
            chain_prev = prev if step in ABLATION_ORDER else None
            rows.append({
                "setting": setting, "rate (req/s)": rps, "step": ABLATION_LABELS.get(step, label(step)),
                "system config": step, "seeds": ",".join(str(int(s)) for s in cur["seed"]),
                "P99 TTFT (s)": values_range(cur["ttft_p99"]), "mean TTFT (s)": values_range(cur["ttft_mean"]),
                "GPU-hours": values_range(cur["gpu_hours"]),
                "prewarms": values_range(cur["prewarms"]), "evictions": values_range(cur["evictions"]),
                "KV lends": values_range(cur["kv_lends"]),
                "mechanism exercised": exercised(step, cur, chain_prev, ws if step == "oracle" else None),
                "P99 vs previous step": effect(chain_prev, cur, "ttft_p99"),
                "mean TTFT vs previous step": effect(chain_prev, cur, "ttft_mean"),
            })
            if step in ABLATION_ORDER and step != "oracle":
                prev = cur
    return pd.DataFrame(rows)
