"""The published autoscaler's thresholds, hand-worked (docs/reference.md §5.4)."""

import pytest

from warmserve.control.autoscaler import ScalingParams, scale_decision
from warmserve.control.seam import InstancePhase, InstanceState, StartKind

P = ScalingParams(capacity=32, scale_out=0.8, scale_in=0.5, protect_s=5.0, window_s=5.0)  # the published values


def inst(iid, created=0.0, inflight=0, phase=InstancePhase.READY):
    return InstanceState(iid, "m", (iid,), phase, StartKind.COLD, created, inflight=inflight)


@pytest.mark.parametrize(
    ("load", "n", "expected_create"),
    [
        (25.6, 1, 0),  # exactly 0.8 x 32: not above
        (25.7, 1, 1),  # ceil(25.7 / 25.6) - 1
        (60.0, 1, 2),  # ceil(60 / 25.6) = 3 instances
        (0.1, 0, 1),  # any load with no instance
        (0.0, 0, 0),
    ],
)
def test_scale_out(load, n, expected_create):
    create, stop = scale_decision(load, [inst(i) for i in range(n)], 100.0, P)
    assert (create, stop) == (expected_create, [])


def test_scale_in_keeps_ceil_of_load_and_stops_least_loaded_old_instances():
    serving = [inst(0, inflight=5), inst(1, inflight=1), inst(2, inflight=1), inst(3, created=97.0)]
    # L = 15 < 0.5*32*4 = 64: keep ceil(15/16) = 1, stop 3 -- but instance 3 is protected (3 s old)
    create, stop = scale_decision(15.0, serving, 100.0, P)
    assert create == 0
    assert stop == [1, 2, 0]  # fewest in flight first, ties by id; only 3 eligible


def test_scale_in_boundary_and_protection():
    assert scale_decision(16.0, [inst(0)], 100.0, P) == (0, [])  # 16 is not below 0.5 x 32
    assert scale_decision(15.9, [inst(0)], 100.0, P) == (0, [])  # keep ceil(15.9/16) = 1
    assert scale_decision(0.0, [inst(0, created=96.0)], 100.0, P) == (0, [])  # 4 s old: protected
    assert scale_decision(0.0, [inst(0, created=94.0)], 100.0, P) == (0, [0])
    # starting instances are never stopped
    assert scale_decision(0.0, [inst(0, phase=InstancePhase.STARTING)], 100.0, P) == (0, [])


def test_impossible_parameters_rejected():
    with pytest.raises(ValueError):
        ScalingParams(capacity=32, scale_in=0.9, scale_out=0.8, protect_s=5.0, window_s=5.0)
