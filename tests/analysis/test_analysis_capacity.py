"""Capacity under an SLO and the ratio logic, including the 'cannot compute' paths."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import SLO_TPOT, attained_requests, make_run, requests_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.analysis import capacity as C
from warmserve.analysis.results import load_runs


def test_attainment_counts_all_requests_and_one_token_tpot():
    r = requests_frame([0.1, 0.2, 9.0, float("nan")], tpot=[0.01, float("nan"), 0.01, float("nan")])
    # ok+fast, ok+fast with no TPOT (one output token: met), ok but slow TTFT, timeout
    assert C.attainment(r, 5.0, 0.15) == pytest.approx(0.5)
    assert C.attainment(r, 10.0, 0.15) == pytest.approx(0.75)
    slow_decode = requests_frame([0.1, 0.1], tpot=[0.5, 0.01])
    assert C.attainment(slow_decode, 5.0, 0.15) == pytest.approx(0.5)


@pytest.mark.parametrize(("att", "rps", "bound"), [
    ([1.0, 1.0, 0.5, 0.2], 4.0, "exact"),
    ([1.0, 1.0, 1.0, 1.0], 16.0, "at_least"),
    ([0.5, 1.0, 1.0, 1.0], None, "below"),
    ([1.0, 0.98, 1.0, 1.0], 2.0, "exact"),  # met again above a miss: not counted
])
def test_capacity_cases(att, rps, bound):
    c = C.capacity([2, 4, 8, 16], att, 0.99)
    assert (c.rps, c.bound) == (rps, bound)
    assert c.nonmonotone == (att == [1.0, 0.98, 1.0, 1.0] or att == [0.5, 1.0, 1.0, 1.0])


def test_capacity_is_order_independent():
    assert (C.capacity([16, 2, 8, 4], [0.2, 1.0, 0.5, 1.0], 0.99)
            == C.capacity([2, 4, 8, 16], [1.0, 1.0, 0.5, 0.2], 0.99))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8), st.floats(0, 0.3))
def test_capacity_definition_and_monotone_in_attainment(att, bump):
    rates = [2.0 * (i + 1) for i in range(len(att))]
    c = C.capacity(rates, att, 0.99)
    if c.bound == "below":
        assert att[0] < 0.99 and c.rps is None
    else:
        k = rates.index(c.rps)
        assert all(a >= 0.99 for a in att[: k + 1])
        assert (k == len(att) - 1) == (c.bound == "at_least")
        if c.bound == "exact":
            assert att[k + 1] < 0.99
    better = C.capacity(rates, [min(1.0, a + bump) for a in att], 0.99)
    assert (better.rps or 0) >= (c.rps or 0)


def _cap(rps, bound):
    return C.Capacity(rps, bound, 2.0, 32.0)


@pytest.mark.parametrize(("num", "den", "value", "rel"), [
    (_cap(16, "exact"), _cap(8, "exact"), 2.0, "="),
    (_cap(32, "at_least"), _cap(8, "exact"), 4.0, ">="),
    (_cap(8, "exact"), _cap(32, "at_least"), 0.25, "<="),
])
def test_ratio_values_and_bounds(num, den, value, rel):
    r = C.capacity_ratio(num, den, "WarmServe", "MuxServe")
    assert r.computable and r.value == pytest.approx(value) and r.relation == rel
    assert r.text().endswith(f"{value:.2f}x")


@pytest.mark.parametrize(("num", "den", "value", "rel"), [
    (_cap(8, "exact"), _cap(None, "below"), 4.0, ">="),  # den < 2 (lowest probed): ratio > 8 / 2
    (_cap(None, "below"), _cap(8, "exact"), 0.25, "<="),
])
def test_ratio_with_a_side_below_every_probe_is_a_bound(num, den, value, rel):
    r = C.capacity_ratio(num, den, "WarmServe", "MuxServe")
    assert r.computable and r.value == pytest.approx(value) and r.relation == rel


@pytest.mark.parametrize(("num", "den", "needle"), [
    (_cap(32, "at_least"), _cap(32, "at_least"), "bounds in the same direction"),
    (_cap(None, "below"), _cap(None, "below"), "bounds in the same direction"),
])
def test_ratio_cannot_compute_says_why_without_a_number(num, den, needle):
    r = C.capacity_ratio(num, den, "WarmServe", "MuxServe")
    assert not r.computable and r.value is None
    assert r.text().startswith("cannot compute") and needle in r.text()


def test_grid_capacities_and_ratio_from_run_dirs(tmp_path):
    # WarmServe meets 99 % up to 8 rps, MuxServe only at 2 rps -> ratio 4 at the 5 s SLO
    met = {"warmserve": {2: 100, 4: 100, 8: 100, 16: 50}, "muxserve": {2: 100, 4: 90, 8: 80, 16: 10}}
    for sysname, by_rate in met.items():
        for rps, n_met in by_rate.items():
            make_run(tmp_path, f"conv-{sysname}-rps{rps}", system=sysname, rps=rps,
                     requests=attained_requests(100, n_met))
    runs = load_runs(tmp_path)
    grid = C.attainment_grid(runs.overall, [1.0, 5.0, 30.0], SLO_TPOT)
    assert len(grid) == 8 * 3
    # the recomputed attainment equals what summary.json says at the default SLO
    chk = grid[grid.slo_ttft_s == 5.0].merge(runs.overall[["run", "slo_attainment"]], on="run")
    assert np.allclose(chk.attainment, chk.slo_attainment)
    caps = C.capacities(grid, 0.99)
    ratios = C.ratio_table(caps).set_index("slo_ttft_s")
    assert ratios.loc[5.0, "ratio"].value == pytest.approx(4.0)
    assert ratios.loc[1.0, "ratio"].value == pytest.approx(4.0)
    # at 30 s every request meets the TTFT SLO: both at_least -> cannot compute
    assert not ratios.loc[30.0, "ratio"].computable
    best = C.largest(C.ratio_table(caps))
    assert best is not None and best["ratio_value"] == pytest.approx(4.0)


def test_largest_is_none_when_nothing_computable(tmp_path):
    for sysname in ("warmserve", "muxserve"):
        make_run(tmp_path, f"conv-{sysname}-rps4", system=sysname, rps=4, requests=attained_requests(10, 0))
    grid = C.attainment_grid(load_runs(tmp_path).overall, [5.0], SLO_TPOT)
    ratios = C.ratio_table(C.capacities(grid, 0.99))
    assert C.largest(ratios) is None
    assert ratios.iloc[0]["ratio_text"].startswith("cannot compute")
