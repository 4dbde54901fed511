"""The capacity search: on known attainment curves it finds the threshold to the stated resolution,
reports bounds instead of inventing numbers, and probes few rates; seeds change the workload."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.experiments.capacity_search import SearchSpec, find_capacity
from warmserve.experiments.points import compose_run
from warmserve.run.execute import load_workload

SPEC = SearchSpec(start_rps=4.0, floor_rps=0.25, ceiling_rps=64.0, resolution=0.10, target=0.99, rps_decimals=2)


def step(threshold: float):
    """Attainment 1 up to ``threshold`` req/s, 0.5 above: a system with a sharp capacity."""
    return lambda r: 1.0 if r <= threshold else 0.5


@given(st.floats(min_value=0.3, max_value=60.0))
@settings(max_examples=300, deadline=None)
def test_finds_a_sharp_capacity_to_the_resolution(threshold: float) -> None:
    calls: list[float] = []

    def probe(r: float) -> float:
        calls.append(r)
        return step(threshold)(r)

    res = find_capacity(probe, SPEC)
    assert res.bound == "exact"
    assert res.capacity_rps is not None and res.upper_rps is not None
    assert res.capacity_rps <= threshold < res.upper_rps  # the bracket holds the truth
    assert res.upper_rps / res.capacity_rps <= 1 + SPEC.resolution + 0.01  # to the resolution (0.01 rounding)
    assert len(calls) == len(set(calls)) <= 12  # no rate probed twice; few probes


def test_ceiling_and_floor_are_bounds_not_numbers() -> None:
    top = find_capacity(lambda r: 1.0, SPEC)
    assert (top.bound, top.capacity_rps) == ("at_least", SPEC.ceiling_rps) and top.text() == ">= 64 rps (ceiling)"
    bottom = find_capacity(lambda r: 0.0, SPEC)
    assert bottom.bound == "below" and bottom.capacity_rps is None and bottom.upper_rps is not None
    assert bottom.upper_rps < 2 * SPEC.floor_rps and bottom.text().startswith("< ")


def test_nan_attainment_is_a_miss_and_the_probes_are_the_bisection() -> None:
    assert find_capacity(lambda r: math.nan, SPEC).bound == "below"
    # the bisection's probes, hand-followed: 4 met, 8 missed, sqrt(32) = 5.66 missed, 4.76 met, 5.19 met;
    # 5.66 / 5.19 < 1.1 so it stops with the bracket [5.19, 5.66)
    curve = {4.0: 1.0, 8.0: 0.0, 5.66: 0.0, 4.76: 1.0, 5.19: 1.0}
    res = find_capacity(lambda r: curve[r], SPEC)
    assert (res.bound, res.capacity_rps, res.upper_rps) == ("exact", 5.19, 5.66)
    assert [r for r, _ in res.probes] == [4.0, 8.0, 5.66, 4.76, 5.19]


def test_spec_rejects_nonsense() -> None:
    with pytest.raises(Exception, match="floor_rps"):
        SearchSpec(start_rps=1.0, floor_rps=2.0, ceiling_rps=8.0, resolution=0.1, target=0.99, rps_decimals=2)


def _requests(*overrides: str) -> pd.DataFrame:
    cfg = compose_run(["workload=tiny", "out=/nonexistent", *overrides])
    return load_workload(cfg).requests


def test_the_run_seed_drives_the_workload_unless_pinned() -> None:
    a, b = _requests("seed=1"), _requests("seed=2")
    assert not a[["arrival_s", "input_tokens"]].equals(b[["arrival_s", "input_tokens"]])
    assert _requests("seed=1").equals(a)  # deterministic given the seed
    pinned1, pinned2 = _requests("seed=1", "workload.seed=7"), _requests("seed=2", "workload.seed=7")
    assert pinned1.equals(pinned2)
