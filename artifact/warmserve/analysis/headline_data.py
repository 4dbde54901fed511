"""The numbers behind the headline: per-seed tail ratios and their summaries, the keep-alive curve,
the baselines' parameters and the GPUs each system held.

Shared by ``headline`` (the claims' tables) and ``headline_why`` (the generated reasons), which
both import it, so neither imports the other's internals (no import cycle).
"""

from __future__ import annotations

import math
from typing import cast

import pandas as pd

from warmserve.analysis.labels import base_system, label
from warmserve.analysis.results import config_value
from warmserve.analysis.seeds import Bounded, combine, finite, mean_range
from warmserve.workload.api import recipe_defaults

PUBLISHED_REPLAY_S = float(recipe_defaults().replay_s)  # configs/workload/_defaults.yaml (docs/reference.md §2.7)


def gpu_hours(df: pd.DataFrame) -> pd.Series:
    """GPU-hours held by instances over a run (summary ``gpu_seconds`` / 3600)."""
    return pd.to_numeric(df["gpu_seconds"], errors="coerce") / 3600


def tail_ratios(overall: pd.DataFrame, num: str = "serverlessllm", den: str = "warmserve",
                metric: str = "ttft_p99", only_num_seeds: bool = False) -> pd.DataFrame:
    """Per (setting, trace, rps, seed): ``num``'s P99 TTFT / ``den``'s as a ``Bounded``, both values, their
    GPU-hours and unfinished counts. A seed run for one system only gives a row that says so, unless
    ``only_num_seeds`` (a variant run at fewer seeds than the base, e.g. keep-alive: its own seeds define it)."""
    rows = []
    d = overall.assign(gpu_hours=gpu_hours(overall), setting=overall.get("setting", pd.Series(dtype=str)))
    d["setting"] = d["setting"].fillna("(none)")
    for (setting, trace, rps, seed), g in d.groupby(["setting", "trace", "rps", "seed"], sort=True):
        by = {str(r.system): r for r in g.itertuples(index=False)}
        if (num not in by and den not in by) or (only_num_seeds and num not in by):
            continue
        row: dict[str, object] = {"setting": setting, "trace": trace, "rps": float(rps), "seed": int(seed)}
        for who, name in (("num", num), ("den", den)):
            r = by.get(name)
            row[f"{who}_p99"] = finite(getattr(r, metric, None)) if r is not None else None
            row[f"{who}_gpu_h"] = finite(r.gpu_hours) if r is not None else None
            row[f"{who}_unfinished"] = (int(r.timeout) + int(r.failed)) if r is not None else None
            row[f"{who}_requests"] = int(r.requests) if r is not None else None
        a, b = cast("float | None", row["num_p99"]), cast("float | None", row["den_p99"])  # finite(...) above
        if a is None or b is None:
            missing = [f"{label(n)} ({'no run' if n not in by else 'no request got a first token'})"
                       for n, v in ((num, a), (den, b)) if v is None]
            ratio = Bounded(None, None, f"no P99 TTFT for {', '.join(missing)} at seed {seed}")
        elif b <= 0:
            ratio = Bounded(None, None, f"{label(den)} P99 TTFT is 0")
        else:
            ratio = Bounded(a / b, "=")
        row["ratio"] = ratio
        row["ratio_value"] = ratio.value
        rows.append(row)
    return pd.DataFrame(rows)


def _mr(values: list[float | None], n_total: int, unit: str = "", digits: int = 3) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    return mean_range(sum(v) / len(v), min(v), max(v), len(v), n_total, digits=digits, unit=unit)


def tail_summary(tails: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, trace, rps): the ratio over seeds (``Combined``), both P99s and GPU-hours as mean [range]."""
    rows = []
    if tails.empty:
        return pd.DataFrame(columns=["setting", "trace", "rps", "seeds", "ratio", "ratio_text"])
    for (setting, trace, rps), g in tails.groupby(["setting", "trace", "rps"], sort=True):
        n = len(g)
        comb = combine([(int(r.seed), r.ratio) for r in g.itertuples(index=False)])
        unf = [f"{lab}: {int(u)} of {int(q)} unfinished (seed {r.seed})"
               for r in g.itertuples(index=False)
               for lab, u, q in (("ServerlessLLM-style", r.num_unfinished, r.num_requests),
                                 ("WarmServe", r.den_unfinished, r.den_requests)) if finite(u)]
        rows.append({"setting": setting, "trace": trace, "rps": rps, "seeds": ",".join(str(s) for s in g["seed"]),
                     "ratio": comb, "ratio_text": comb.text(),
                     "num_p99": _mr(list(g["num_p99"]), n, "s"), "den_p99": _mr(list(g["den_p99"]), n, "s"),
                     "num_gpu_h": _mr(list(g["num_gpu_h"]), n), "den_gpu_h": _mr(list(g["den_gpu_h"]), n),
                     "unfinished": "; ".join(unf) or "none"})
    return pd.DataFrame(rows)


def keepalive_curve(overall: pd.DataFrame, den: str = "warmserve") -> pd.DataFrame:
    """Per (setting, trace, rps, keep-alive): ServerlessLLM-style (that keep-alive) / ``den`` P99 over seeds,
    with the ServerlessLLM-style GPU-hours. Keep-alive 0 is plain ``serverlessllm``."""
    sl = overall[[base_system(str(s)) == "serverlessllm" for s in overall["system"]]]
    rows = []
    for (sysname, ka), _g in sl.groupby(["system", "keep_alive_s"], sort=True, dropna=False):
        t = tail_ratios(overall, num=str(sysname), den=den, only_num_seeds=True)
        if t.empty:
            continue
        for r in tail_summary(t).itertuples(index=False):
            g = t[(t.setting == r.setting) & (t.trace == r.trace) & (t.rps == r.rps)]
            rows.append({"setting": r.setting, "trace": r.trace, "rps": r.rps, "system": sysname,
                         "keep_alive_s": float(ka) if finite(ka) is not None else 0.0, "seeds": r.seeds,
                         "ratio": r.ratio, "ratio_text": r.ratio_text, "mean": r.ratio.mean.value,
                         "lo": r.ratio.lo, "hi": r.ratio.hi, "sllm_gpu_h": r.num_gpu_h, "sllm_p99": r.num_p99,
                         "sllm_gpu_h_mean": pd.to_numeric(g["num_gpu_h"], errors="coerce").mean()})
    return pd.DataFrame(rows)


def system_parameters(overall: pd.DataFrame, system: str) -> dict[str, object]:
    """The policy parameters (and compute-sharing model) a baseline ran with, read from its run.json."""
    rows = overall[overall["system"] == system] if not overall.empty else overall
    if rows.empty:
        return {}
    path = rows.iloc[0]["path"]
    pol = config_value(path, "system.policy") or {}
    out = {k: v for k, v in pol.items() if not str(k).startswith("_") and not isinstance(v, dict)
           and not (isinstance(v, list) and any(isinstance(x, dict) for x in v))}
    sharing = config_value(path, "hardware.compute_sharing")
    if base_system(system) == "muxserve" and isinstance(sharing, dict):
        for phase, per_tp in sharing.items():
            out[f"hardware.compute_sharing.{phase}"] = "/".join(f"{k}={v}" for k, v in dict(per_tp).items())
    return out


def gpus_held(runs: pd.DataFrame, system: str) -> str:
    """'11.9 of 16 GPUs' per setting: mean GPUs a system's instances held (GPU-seconds / run length)."""
    if runs.empty or not {"gpu_seconds", "end_s"} <= set(runs.columns):
        return "unknown"
    r = runs[runs["system"] == system]
    parts = []
    for setting, g in r.groupby(r["setting"].fillna("(none)"), sort=True):
        held = (pd.to_numeric(g["gpu_seconds"]) / pd.to_numeric(g["end_s"])).to_numpy(float)
        n = (pd.to_numeric(g["nodes"]) * pd.to_numeric(g["gpus_per_node"])).dropna()
        of = f" of {int(n.iloc[0])}" if len(n) else ""
        if len(held) and math.isfinite(held.mean()):
            parts.append(f"{setting}: {held.mean():.1f} [{held.min():.1f}, {held.max():.1f}]{of} GPUs")
    return "; ".join(parts) or "no runs"
