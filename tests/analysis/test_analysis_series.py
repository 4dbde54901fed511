"""Timeline reconstruction, the cold-start split and the forecast-error table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_helpers import make_run, requests_frame, timeline_frame

from warmserve.analysis import coldstart as CS
from warmserve.analysis import forecast as FC
from warmserve.analysis import plots as P
from warmserve.analysis import timeline as T
from warmserve.analysis.results import load_runs
from warmserve.errors import InputError


def test_inflight_counts_unfinished_requests_to_the_end():
    req = pd.DataFrame({"model": ["a", "a", "a"], "arrival_s": [0.0, 1.0, 2.0], "finish_s": [1.5, 3.0, np.nan]})
    got = T.inflight(req, np.array([0.0, 1.0, 1.5, 2.5, 10.0]))["inflight"].tolist()
    assert got == [1, 2, 1, 2, 1]


def test_arrivals_per_bin():
    req = pd.DataFrame({"model": ["a"] * 4, "arrival_s": [0.0, 1.0, 9.9, 10.0], "finish_s": [1.0] * 4})
    a = T.arrivals(req, 10.0, 20.0)
    assert a["rate_rps"].tolist() == [0.3, 0.1]  # bins [0, 10) and [10, 20]
    assert a["t_s"].tolist() == [0.0, 10.0]


def test_replicas_instances_and_forecast_steps():
    tl = timeline_frame([
        {"t_s": 0.0, "kind": "forecast", "model": "a", "mean": 1.0, "peak": 3.0},
        {"t_s": 0.0, "kind": "prewarm_start", "model": "a", "gpus": "0"},
        {"t_s": 0.0, "kind": "prewarm_start", "model": "a", "gpus": "1"},
        {"t_s": 2.0, "kind": "prewarm_done", "model": "a", "gpus": "0"},
        {"t_s": 3.0, "kind": "evict", "model": "a", "gpus": "1", "detail": "claimed by b"},  # still loading
        {"t_s": 4.0, "kind": "claim", "model": "a", "gpus": "0"},
        {"t_s": 4.0, "kind": "instance_start", "model": "a", "instance_id": 7, "gpus": "0"},
        {"t_s": 5.0, "kind": "instance_ready", "model": "a", "instance_id": 7, "gpus": "0"},
        {"t_s": 5.0, "kind": "forecast", "model": "a", "mean": 2.0, "peak": 4.0},
        {"t_s": 8.0, "kind": "instance_stop", "model": "a", "instance_id": 7, "gpus": "0"},
        {"t_s": 8.0, "kind": "prewarm_done", "model": "a", "gpus": "0", "detail": "kept_on_stop"},
    ])
    t = np.arange(0.0, 10.0, 1.0)
    rep = T.replicas(tl, t)
    assert rep["replicas_held"].tolist() == [2, 2, 2, 1, 0, 0, 0, 0, 1, 1]
    assert rep["replicas_loaded"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    ins = T.instances(tl, t)
    assert ins["instances"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert ins["ready"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    fc = T.forecast(tl, t)
    assert fc["forecast_peak"].tolist() == [3.0] * 5 + [4.0] * 5
    req = pd.DataFrame({"model": ["a", "b"], "arrival_s": [4.0, 1.0], "finish_s": [6.0, 2.0]})
    series, arr = T.model_series(req, tl, end_s=9.0, step_s=1.0, bin_s=3.0)
    assert sorted(series.model.unique()) == ["a", "b"]  # b only has requests: zeros / NaN elsewhere
    b = series[series.model == "b"]
    assert b["replicas_held"].sum() == 0 and b["forecast_mean"].isna().all() and b["inflight"].sum() == 1
    fig = P.timeline_panels(series, arr, window_s=5.0)  # smoke: the figure builds from these series
    assert len(fig.axes) >= 4


def test_coldstart_table_split_and_flags(tmp_path):
    parts = {"queue_s": [0.0], "load_s": [20.0], "init_s": [12.0], "prefill_s": [0.05]}
    make_run(tmp_path, "a100-probe_cold", system="probe_cold", rps=1,
             requests=requests_frame([32.05], model="llama2-70b-0", start_kind="cold", parts=parts))
    bad = {"queue_s": [0.0], "load_s": [13.0], "init_s": [1.4], "prefill_s": [0.01]}
    make_run(tmp_path, "a100-probe_prewarmed", system="probe_prewarmed", rps=1,
             requests=requests_frame([14.41], model="llama2-70b-0", start_kind="prewarmed", parts=bad))
    tab = CS.coldstart_table(load_runs(tmp_path).overall)
    assert tab["start_kind"].astype(str).tolist() == ["cold", "prewarmed"]
    cold = tab.iloc[0]
    assert cold["checkpoint"] == "llama2-70b"
    assert cold[list(CS.PARTS)].sum() == pytest.approx(cold["ttft_s"])
    assert cold["flag"] == "" and "still loaded weights" in tab.iloc[1]["flag"]
    sp = CS.speedups(tab)
    assert sp.iloc[0]["cold_over_prewarmed_vmm"] == pytest.approx(32.05 / 14.41)


def _errors(oracle_err: float = 0.0) -> pd.DataFrame:
    rows = []
    for f, e in (("paper", 0.1), ("oracle", oracle_err)):
        for w in range(4):
            true = 0.0 if w == 3 else 2.0
            rows.append({"trace": "conv", "seed": 42, "forecaster": f, "model": "m", "window": w,
                         "pred_mean": true * (1 + e), "pred_peak": true * (1 + e), "true_mean": true,
                         "true_peak": true, "synthetic": True,
                         "rel_err_mean": np.nan if true == 0 else e, "rel_err_peak": np.nan if true == 0 else e})
    return pd.DataFrame(rows)


def test_forecast_table_counts_zero_truth_and_checks_oracle(tmp_path):
    tab = FC.error_table(_errors())
    assert tab["forecaster"].tolist() == ["paper", "oracle"]
    paper = tab.iloc[0]
    assert paper["mre_peak"] == pytest.approx(0.1) and paper["zero_truth_peak"] == 1 and paper["windows"] == 4
    FC.check_oracle(tab)
    with pytest.raises(AssertionError, match="oracle forecaster has non-zero error"):
        FC.check_oracle(FC.error_table(_errors(oracle_err=0.2)))
    full = FC.with_paper_row(tab)
    assert full.iloc[-1]["mre_peak"] == FC.PAPER_PEAK_MRE


def test_forecast_inputs_fail_with_one_line(tmp_path):
    with pytest.raises(InputError, match="errors.parquet: missing"):
        FC.load_errors(tmp_path)
    _errors().drop(columns=["rel_err_peak"]).to_parquet(tmp_path / "errors.parquet")
    pd.DataFrame({"forecaster": ["paper"], "fit_s": [0.1]}).to_parquet(tmp_path / "fit_cost.parquet")
    with pytest.raises(InputError, match=r"missing column\(s\) \['rel_err_peak'\]"):
        FC.load_errors(tmp_path)
