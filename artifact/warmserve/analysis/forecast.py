"""The forecast-error table: every forecaster's mean relative error on the replayed windows.

Input: ``results/forecast/errors.parquet`` (``warmserve.experiments.forecast_study``):
one row per (trace, seed, forecaster, model, window) with predicted and true
5-minute mean and peak in-flight requests and ``rel_err_mean/peak`` (NaN when
the truth is 0: a relative error is undefined there). Those windows are
counted in the table (``zero_truth``), not silently dropped. The oracle must
score exactly 0 -- the study's own harness check.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from warmserve.errors import InputError

PAPER_PEAK_MRE = 0.073  # 5-min peak, as quoted by a third-party summary of the paper (docs/reference.md §4)
# Display order: the published predictor first, the oracle (the harness check) last.
FORECASTER_ORDER = ("paper", "naive", "holt_winters", "sarimax", "noisy_paper", "oracle")
REQUIRED = ("trace", "forecaster", "model", "window", "rel_err_mean", "rel_err_peak")


def load_errors(forecast_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(errors, fit_cost) frames; one-line ``InputError`` for a missing file or column."""
    d = Path(forecast_dir)
    out = []
    for name in ("errors.parquet", "fit_cost.parquet"):
        p = d / name
        if not p.is_file():
            raise InputError(f"{p}: missing; run: python -m warmserve.experiments run forecast [--quick]")
        out.append(pd.read_parquet(p))
    errors, cost = out
    missing = [c for c in REQUIRED if c not in errors.columns]
    if missing:
        raise InputError(f"{d / 'errors.parquet'}: missing column(s) {missing}")
    return errors, cost


def error_table(errors: pd.DataFrame, by: tuple[str, ...] = ("trace", "forecaster")) -> pd.DataFrame:
    """Mean relative error of mean and peak per group, with window counts and zero-truth windows."""
    g = errors.groupby(list(by), sort=True)
    t = pd.DataFrame({
        "windows": g.size(),
        "mre_mean": g["rel_err_mean"].mean(),
        "mre_peak": g["rel_err_peak"].mean(),
        "zero_truth_mean": g["rel_err_mean"].apply(lambda s: int(s.isna().sum())),
        "zero_truth_peak": g["rel_err_peak"].apply(lambda s: int(s.isna().sum())),
    }).reset_index()
    if "synthetic" in errors.columns:
        syn = errors.groupby(list(by))["synthetic"].all().reset_index()
        t = t.merge(syn, on=list(by))
    if "forecaster" in by:
        rank = {f: i for i, f in enumerate(forecaster_order(t["forecaster"]))}
        t = t.assign(_r=t["forecaster"].map(rank)).sort_values(
            [c for c in by if c != "forecaster"] + ["_r"]).drop(columns="_r").reset_index(drop=True)
    return t


def forecaster_order(names: Iterable[object]) -> list[str]:
    """The forecasters present, in ``FORECASTER_ORDER`` first, unknown ones after."""
    present = {str(n) for n in names}
    return [f for f in FORECASTER_ORDER if f in present] + sorted(present - set(FORECASTER_ORDER))


def check_oracle(table: pd.DataFrame, tol: float = 1e-9) -> None:
    """Raise AssertionError unless every oracle row has zero error (the harness check)."""
    o = table[table["forecaster"] == "oracle"]
    if o.empty:
        raise AssertionError("forecast study has no 'oracle' rows: the harness check cannot run")
    bad = o[(o["mre_mean"].abs() > tol) | (o["mre_peak"].abs() > tol)]
    if not bad.empty:
        raise AssertionError(f"oracle forecaster has non-zero error (harness bug):\n{bad.to_string(index=False)}")


def with_paper_row(table: pd.DataFrame) -> pd.DataFrame:
    """The table plus the paper's reported 5-minute peak error as its own row."""
    paper: dict[str, Any] = {c: None for c in table.columns}
    paper.update(trace="paper (reported, real Azure 2024)", forecaster="WarmServe predictor",
                 mre_peak=PAPER_PEAK_MRE)
    if "synthetic" in table.columns:
        paper["synthetic"] = False
    return pd.concat([table, pd.DataFrame([paper])], ignore_index=True)


def fit_cost_table(cost: pd.DataFrame) -> pd.DataFrame:
    """Seconds to fit each forecaster (mean and max over traces and seeds).

    Machine-dependent: notebook 10 prints it and draws it (figure forecast_fit_cost)
    but keeps it out of the committed forecast_error table, so a rerun on the same
    inputs leaves git clean.
    """
    return cost.groupby("forecaster", sort=True)["fit_s"].agg(["mean", "max", "count"]).reset_index().rename(
        columns={"mean": "fit_s_mean", "max": "fit_s_max", "count": "fits"})
