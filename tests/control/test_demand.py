"""Replica demand and scores, hand-worked (docs/reference.md §5.2)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmserve.config import model_specs
from warmserve.control.demand import (
    burst_factor,
    cold_start_s,
    model_demand,
    replica_counts,
    replica_scores,
)

SPECS = model_specs("paper4")


@pytest.mark.parametrize(
    ("avg", "peak", "inst", "expected"),
    [
        (40, 100, 0, (2, 2)),  # ceil(40/32)=2 foundation, ceil(100/32)=4 -> 2 burst
        (40, 100, 1, (1, 2)),  # one instance already covers one foundation replica
        (40, 100, 4, (0, 0)),  # instances cover the peak
        (0, 0, 0, (0, 0)),
        (0, 5, 0, (0, 1)),  # all burst
        (-3, -1, 0, (0, 0)),  # negative corrected forecasts are clamped
        (32, 32, 0, (1, 0)),  # exactly one instance's worth
    ],
)
def test_replica_counts(avg, peak, inst, expected):
    assert replica_counts(avg, peak, inst, 32) == expected


def test_burst_factor_zero_average_is_neutral():
    # published code: ZeroDivisionError that silently killed the prewarm thread
    assert burst_factor(0.0, 10.0) == 1.0
    assert burst_factor(-2.0, 10.0) == 1.0
    assert burst_factor(4.0, 10.0) == 2.5


def test_cold_start_matches_reference_estimates():
    # docs/reference.md §3: 0.39 s (7B TP1), 0.38 s (13B TP2), 1.00 s (70B TP4) at 32 GB/s
    assert cold_start_s(SPECS["llama2-7b-0"], 32.0) == pytest.approx(0.392, abs=1e-3)
    assert cold_start_s(SPECS["llama2-13b-0"], 32.0) == pytest.approx(0.379, abs=1e-3)
    assert cold_start_s(SPECS["llama2-70b-0"], 32.0) == pytest.approx(1.004, abs=1e-3)


def test_scores_hand_worked():
    s = replica_scores(1.0, 2, 2, 2.5)
    assert s == pytest.approx([1.0, math.exp(-0.25), math.exp(-0.5) * 2.5, math.exp(-0.75) * 2.5])


def test_model_demand_scores_and_rank_lookup():
    d = model_demand(SPECS["llama2-7b-0"], 40.0, 100.0, 0, 32, 32.0)
    assert (d.foundation, d.burst, d.total) == (2, 2, 4)
    cold = cold_start_s(SPECS["llama2-7b-0"], 32.0)
    assert d.score(0) == pytest.approx(cold)
    assert d.score(2) == pytest.approx(cold * math.exp(-0.5) * 2.5)
    assert d.score(4) == 0.0 and d.score(-1) == 0.0


@given(st.floats(0, 500), st.floats(0, 500), st.integers(0, 20))
def test_demand_invariants(avg, peak, inst):
    nf, nb = replica_counts(avg, peak, inst, 32)
    assert nf >= 0 and nb >= 0
    # instances + replicas cover the forecast peak (and average) whenever replicas are wanted
    if nf + nb > 0:
        assert (inst + nf + nb) * 32 >= max(avg, peak)
    scores = replica_scores(1.0, nf, nb, 1.0)
    assert all(a >= b for a, b in zip(scores, scores[1:], strict=False))  # factor 1: pure rank decay
