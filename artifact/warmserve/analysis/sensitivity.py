"""Sensitivity runs as one tidy frame: which dimension each run sweeps and its swept value.

Each ``sens_<dim>`` preset tags its runs ``tags.dim``; the swept value lives
in a different config field per dimension (``DIMS``). Categorical sweeps are
turned into numbers a reader can put on an x axis: the number of served
models for ``models`` and the number of GPUs for ``cluster``.

The ``error`` dimension runs WarmServe only (ServerlessLLM-style needs no
forecast). Its reference line is a ServerlessLLM-style run from another
dimension whose setting (trace, rate, alpha, CV, window, models, cluster,
replay length) equals the error runs' own -- or none, and the notebook says so.

``forecast_rows`` (error and window, both settings, seeds): per (setting, dim,
system, level) the mean [range] over seeds, and per (setting, dim, system)
whether the swept forecast changed anything -- the plan (prewarms, instances
differ between levels at the same seed: the seed fixes the workload, so such a
difference is caused by the level) or P99 TTFT beyond the seed range -- else
"not exercised in this setting".
"""

from __future__ import annotations

import json

import pandas as pd

from warmserve.analysis.labels import label
from warmserve.analysis.results import config_value
from warmserve.analysis.seeds import levels_differ, values_range
from warmserve.config import model_mix

# dim -> (column of load_runs' frame holding the swept value, x-axis label)
DIMS: dict[str, tuple[str, str]] = {
    "alpha": ("alpha", "popularity skew alpha (share of model i = (i+1)^-alpha)"),
    "cv": ("cv", "inter-arrival CV (burstiness)"),
    "window": ("window_s", "forecast window (s)"),
    "error": ("rel_error", "injected forecast error (relative, uniform +-e)"),
    "models": ("n_models", "number of served models"),
    "cluster": ("n_gpus", "GPUs in the cluster"),
    "lifecycle": ("cold_scale", "engine start-up costs scaled (x published)"),
}
SETTING = ("trace", "rps", "alpha", "cv", "window_s", "n_models", "n_gpus", "replay_s")


def _n_models(path: str) -> int | None:
    mix = config_value(path, "models") or config_value(path, "workload.models")
    if mix is None:
        return None
    if isinstance(mix, str) and mix.startswith("["):
        mix = json.loads(mix)
    return len(model_mix(mix))


def tidy(overall: pd.DataFrame) -> pd.DataFrame:
    """Add ``dim``, ``n_models``, ``n_gpus`` and ``x`` (the swept value) to the sensitivity runs."""
    df = overall.copy()
    if "tag.dim" not in df:
        raise AssertionError("sensitivity runs carry no tags.dim: were they made by configs/experiment/sens_*.yaml?")
    df["dim"] = df["tag.dim"].astype(str)
    df["n_models"] = [_n_models(p) for p in df["path"]]
    df["n_gpus"] = pd.to_numeric(df["nodes"], errors="coerce") * pd.to_numeric(df["gpus_per_node"], errors="coerce")
    xs = []
    for r in df.itertuples(index=False):
        col = DIMS.get(r.dim, (None, ""))[0]
        xs.append(pd.to_numeric(getattr(r, col), errors="coerce") if col else float("nan"))
    df["x"] = xs
    if "cv" in df:
        # cv null = the trace's own arrivals (no reshaping): keep it visible as NaN in tables, not 0
        df["cv"] = pd.to_numeric(df["cv"], errors="coerce")
    return df


def reference_for(df: pd.DataFrame, dim: str = "error", system: str = "serverlessllm") -> tuple[pd.Series | None, str]:
    """A ``system`` run (from any other dimension) with the same setting as ``dim``'s runs, and a sentence.

    Returns ``(None, why)`` when the ``dim`` runs differ among themselves in
    setting or no matching run exists.
    """
    mine = df[df["dim"] == dim]
    if mine.empty:
        return None, f"no {dim} runs"
    cols = [c for c in SETTING if c in df.columns]
    setting = mine[cols].drop_duplicates()
    if len(setting) != 1:
        return None, f"the {dim} runs differ in setting; no single reference"
    want = setting.iloc[0]
    cand = df[(df["system"] == system) & (df["dim"] != dim)]
    for c in cols:
        cand = cand[(cand[c] == want[c]) | (cand[c].isna() & pd.isna(want[c]))]
    if cand.empty:
        return None, f"no {system} run with the {dim} runs' setting: omitted"
    row = cand.sort_values("dim").iloc[0]
    return row, f"{system} at the same setting, taken from the '{row['dim']}' sweep (run {row['run']})"


FORECAST_DIMS = ("error", "window")


def changed(g: pd.DataFrame) -> str:
    """Did the swept level change anything for one (setting, dim, system)? From the plan (prewarms /
    instances at the same seed across levels) and from P99 TTFT against the seed range."""
    levels = sorted(g["x"].dropna().unique())
    if len(levels) < 2:
        return "one level only: nothing to compare"
    plan = []
    for k in ("prewarms", "instances"):
        per_seed = g.pivot_table(index="seed", columns="x", values=k, aggfunc="first")
        diff = int((per_seed.nunique(axis=1) > 1).sum())
        if diff:
            plan.append(f"{k} differ across levels at {diff} of {len(per_seed)} seeds")
    p99 = levels_differ([list(g[g["x"] == lv]["ttft_p99"]) for lv in levels])
    if not plan and p99 != "beyond seed range":
        return ("not exercised in this setting: the plan was the same at every level (prewarms and instances equal "
                f"at each seed) and P99 TTFT {'is ' + p99 if p99 != 'no value' else 'has no value'}")
    return "; ".join(plan + [f"P99 TTFT across levels: {p99}"])


def forecast_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(levels, verdicts) for the forecast dimensions: one row per (setting, dim, system, level) with
    mean [range] over seeds, and one per (setting, dim, system) saying whether the forecast changed anything."""
    d = df[df["dim"].isin(FORECAST_DIMS)].assign(gpu_hours=lambda f: pd.to_numeric(f["gpu_seconds"]) / 3600)
    levels, verdicts = [], []

    for (setting, dim, system), g in d.groupby(["setting", "dim", "system"], sort=True):
        for x, h in g.groupby("x", sort=True):
            levels.append({"setting": setting, "dimension": dim, "system": label(system), "level": x,
                           "seeds": ",".join(str(int(s)) for s in sorted(h["seed"])),
                           "P99 TTFT (s)": values_range(h["ttft_p99"]),
                           "mean TTFT (s)": values_range(h["ttft_mean"]),
                           "GPU-hours": values_range(h["gpu_hours"]), "prewarms": values_range(h["prewarms"]),
                           "instances": values_range(h["instances"])})
        verdicts.append({"setting": setting, "dimension": dim, "system": label(system),
                         "levels": ", ".join(f"{v:g}" for v in sorted(g["x"].dropna().unique())),
                         "did the forecast change anything?": changed(g)})
    return pd.DataFrame(levels), pd.DataFrame(verdicts)
