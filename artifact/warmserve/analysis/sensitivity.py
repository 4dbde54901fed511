"""Sensitivity runs as one tidy frame: which dimension each run sweeps and its swept value.

Each ``sens_<dim>`` preset tags its runs ``tags.dim``; the swept value lives
in a different config field per dimension (``DIMS``). Categorical sweeps are
turned into numbers a reader can put on an x axis: the number of served
models for ``models`` and the number of GPUs for ``cluster``.

The ``error`` dimension runs WarmServe only (ServerlessLLM-style needs no
forecast). Its reference line is a ServerlessLLM-style run from another
dimension whose setting (trace, rate, alpha, CV, window, models, cluster,
replay length) equals the error runs' own -- or none, and the notebook says so.
"""

from __future__ import annotations

import json

import pandas as pd

from warmserve.analysis.results import config_value
from warmserve.config import model_mix

# dim -> (column of load_runs' frame holding the swept value, x-axis label)
DIMS: dict[str, tuple[str, str]] = {
    "alpha": ("alpha", "popularity skew alpha (share of model i = (i+1)^-alpha)"),
    "cv": ("cv", "inter-arrival CV (burstiness)"),
    "window": ("window_s", "forecast window (s)"),
    "error": ("rel_error", "injected forecast error (relative, uniform +-e)"),
    "models": ("n_models", "number of served models"),
    "cluster": ("n_gpus", "GPUs in the cluster"),
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
