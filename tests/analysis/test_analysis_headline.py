"""The headline table: which points it picks, what it says when a ratio cannot be computed."""

from __future__ import annotations

import re

import pytest
from analysis_helpers import SLO_TPOT, attained_requests, make_run, requests_frame

from warmserve.analysis import capacity as C
from warmserve.analysis import headline as H
from warmserve.analysis.results import load_runs


def _main(tmp_path, p99s: dict[tuple[str, float, str], float], replay_s: float = 300.0):
    """Main runs whose P99 TTFT is (almost exactly) the given value: 100 requests at that TTFT."""
    for (trace, rps, system), v in p99s.items():
        make_run(tmp_path, f"{trace}-{system}-rps{rps:g}", system=system, rps=rps, trace=trace,
                 requests=requests_frame([v] * 100), replay_s=replay_s)
    return load_runs(tmp_path).overall


def test_tail_ratio_largest_and_default_point(tmp_path):
    df = _main(tmp_path, {("conv", 1, "warmserve"): 0.5, ("conv", 1, "serverlessllm"): 5.0,
                          ("conv", 4, "warmserve"): 0.5, ("conv", 4, "serverlessllm"): 20.0,
                          ("code", 1, "warmserve"): 1.0, ("code", 1, "serverlessllm"): 2.0})
    tails = H.tail_ratios(df)
    best = C.largest(tails)
    assert (best["trace"], best["rps"], best["ratio_value"]) == ("conv", 4.0, pytest.approx(40.0))
    d = H.default_point(tails)
    assert (d["trace"], d["rps"], d["ratio_value"]) == ("conv", 1.0, pytest.approx(10.0))


def test_default_point_falls_back_to_lowest_conv_rate(tmp_path):
    df = _main(tmp_path, {("conv", 2, "warmserve"): 1.0, ("conv", 2, "serverlessllm"): 3.0,
                          ("conv", 8, "warmserve"): 1.0, ("conv", 8, "serverlessllm"): 4.0})
    d = H.default_point(H.tail_ratios(df))
    assert (d["trace"], d["rps"]) == ("conv", 2.0)


def test_missing_system_gives_a_reason_not_a_number(tmp_path):
    df = _main(tmp_path, {("conv", 1, "warmserve"): 1.0})
    tails = H.tail_ratios(df)
    r = tails.iloc[0]["ratio"]
    assert not r.computable and "serverlessllm" in r.reason


def _caps(tmp_path, met: dict[str, dict[int, int]]):
    for sysname, by_rate in met.items():
        for rps, n_met in by_rate.items():
            make_run(tmp_path / "cap", f"conv-{sysname}-rps{rps}", system=sysname, rps=rps,
                     requests=attained_requests(100, n_met))
    cap = load_runs(tmp_path / "cap").overall
    grid = C.attainment_grid(cap, [1.0, 5.0], SLO_TPOT)
    return cap, C.ratio_table(C.capacities(grid))


def test_headline_table_numbers_and_reading(tmp_path):
    main = _main(tmp_path / "main", {("conv", 1, "warmserve"): 0.5, ("conv", 1, "serverlessllm"): 5.0})
    cap, ratios = _caps(tmp_path, {"warmserve": {2: 100, 4: 100, 8: 10}, "muxserve": {2: 100, 4: 10, 8: 0}})
    head = H.headline_table(H.tail_ratios(main), ratios, 5.0, rates_text="2, 4, 8 req/s")
    assert list(head.columns) == H.HEADLINE_COLUMNS
    assert len(head) == 4
    assert head.loc[0, "ratio"] == "10.00x" and head.loc[1, "ratio"] == "10.00x"
    assert head.loc[2, "ratio"] == "2.00x" and head.loc[3, "ratio"] == "2.00x"
    assert "default SLO" in head.loc[3, "setting"] and "TTFT <= 5 s" in head.loc[3, "setting"]
    text = H.honest_reading(H.tail_ratios(main), ratios, main, cap, "simulated, a100-80gb profile")
    assert "10.00x" in text and "5.1x below the paper's 50.8x" in text
    assert "2.00x" in text and "2.5x" in text
    assert "quick-mode" in text  # replay 300 s < the published 1200 s
    assert "synthetic" in text and "target=32" in text  # the baseline's parameters come from its run.json
    assert "our SLO (TTFT <= 5 s, TPOT <= 0.15 s)" in text  # from the runs, not hard-coded


def test_headline_cannot_compute_when_muxserve_never_meets_slo(tmp_path):
    main = _main(tmp_path / "main", {("conv", 1, "warmserve"): 0.5, ("conv", 1, "serverlessllm"): 5.0},
                 replay_s=1200.0)
    cap, ratios = _caps(tmp_path, {"warmserve": {2: 100, 4: 100}, "muxserve": {2: 0, 4: 0}})
    head = H.headline_table(H.tail_ratios(main), ratios, 5.0)
    for i in (2, 3):
        cell = head.loc[i, "ratio"]
        assert cell.startswith("cannot compute") and "MuxServe-style meets the SLO at no swept rate" in cell
        assert not re.search(r"\d+\.\d+x", cell)  # no invented number
    text = H.honest_reading(H.tail_ratios(main), ratios, main, cap, "simulated")
    assert "No swept SLO gives a computable capacity ratio" in text
    assert "quick-mode" not in text


def test_headline_with_no_capacity_runs_says_so(tmp_path):
    main = _main(tmp_path / "main", {("conv", 1, "warmserve"): 0.5, ("conv", 1, "serverlessllm"): 5.0})
    empty = C.ratio_table(C.capacities(C.attainment_grid(main.iloc[:0], [5.0], SLO_TPOT)))
    head = H.headline_table(H.tail_ratios(main), empty, 5.0)
    assert head.loc[2, "ratio"].startswith("cannot compute")


def test_muxserve_parameters_name_its_compute_sharing(tmp_path):
    make_run(tmp_path, "conv-muxserve-rps2", system="muxserve", rps=2, requests=attained_requests(10, 10),
             extra_cfg={"system.policy.mesh_sizes": [8, 4], "system.policy.size_classes": [{"scale": 1}]})
    got = H.system_parameters(load_runs(tmp_path).overall, "muxserve")
    assert got["hardware.compute_sharing.prefill_exponent"] == "tp1=0.7"
    assert got["hardware.compute_sharing.decode_exponent"] == "tp1=0.3"
    assert got["mesh_sizes"] == [8, 4] and "size_classes" not in got
