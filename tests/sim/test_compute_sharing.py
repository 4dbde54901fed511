"""The twin's compute sharing (warmserve.control.mps): colocated instances slow down by their SM shares,
checked against hand-computed latencies."""

from __future__ import annotations

import pandas as pd
import pytest
from twin_scenario import _base_hw, _specs, hardware

from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.mps import ShareModel, oversubscription
from warmserve.control.policy import SystemPolicy
from warmserve.control.seam import CapacityError, StartInstance
from warmserve.errors import InputError
from warmserve.hardware import load_profile
from warmserve.sim.backend import SimBackend

HW = load_profile(_base_hw())
LAT7 = HW.latency[("llama2-7b", 1)]
A100_PREFILL_TP1, A100_DECODE_TP1 = 0.709, 0.321  # configs/hardware/a100-80gb.yaml compute_sharing


class Starts(SystemPolicy):
    tick_interval_s = 0.5  # a test policy: the published control-loop period
    instance_capacity = 32  # a test policy: the published BATCH_SIZE
    def __init__(self, starts) -> None:
        self.starts = starts

    def setup(self, ctx):
        return [StartInstance(*s) for s in self.starts]


def _run(starts, rows):
    b = SimBackend(models=_specs(("a", "b")), cluster={"nodes": 1, "gpus_per_node": 2},
                   hardware=hardware(80, 256), features=BackendFeatures(), setup_ready=True)
    c = Controller(b, Starts(starts), ["m7a", "m7b"])
    wl = pd.DataFrame(rows, columns=["request_id", "arrival_s", "model", "input_tokens", "output_tokens"])
    b.replay(wl, c, 10_000)
    return b, b.request_log().set_index("request_id")


def _alone(inp: int, out: int) -> tuple[float, float]:
    """(TTFT, decode time) of one request on a 7B TP1 instance alone on its GPU (the profile)."""
    ctx0 = inp + 1
    steps = sum(LAT7.decode_base + LAT7.decode_per_seq + LAT7.decode_per_ctx_token * (ctx0 + j) for j in range(out - 1))
    return LAT7.prefill_s(inp), steps


def test_share_stretches_prefill_more_than_decode():
    # two 7B instances on GPU 0 with half the SMs each: prefill x 0.5^-0.709 = 1.635, decode x 0.5^-0.321 = 1.249
    _, log = _run([("m7a", (0,), 0.5, 0.5), ("m7b", (0,), 0.5, 0.5)], [(0, 1.0, "m7a", 100, 5)])
    ttft, dec = _alone(100, 5)
    r = log.loc[0]
    assert r.ttft_s == pytest.approx(ttft * 0.5 ** -A100_PREFILL_TP1)
    assert r.finish_s - r.first_token_s == pytest.approx(dec * 0.5 ** -A100_DECODE_TP1)
    assert ((HW.compute_sharing.prefill_exponent[1], HW.compute_sharing.decode_exponent[1])
            == (A100_PREFILL_TP1, A100_DECODE_TP1))


def test_shareless_colocation_time_slices_and_whole_gpu_is_unchanged():
    # no shares: each holds the whole GPU, two on one GPU -> oversubscription 2 -> both phases twice as long
    _, log = _run([("m7a", (0,), 0.5), ("m7b", (0,), 0.5)], [(0, 1.0, "m7a", 100, 5)])
    ttft, dec = _alone(100, 5)
    assert log.loc[0].ttft_s == pytest.approx(2 * ttft)
    assert log.loc[0].finish_s - log.loc[0].first_token_s == pytest.approx(2 * dec)
    # a share on an instance alone on its GPU still caps it (MPS active-thread percentage is a cap)
    _, log = _run([("m7a", (0,), 1.0, 0.25)], [(0, 1.0, "m7a", 100, 5)])
    assert log.loc[0].ttft_s == pytest.approx(ttft * 0.25 ** -A100_PREFILL_TP1)
    _, log = _run([("m7a", (0,))], [(0, 1.0, "m7a", 100, 5)])
    assert log.loc[0].ttft_s == pytest.approx(ttft)


def test_stopping_a_neighbour_restores_speed():
    b, _ = _run([("m7a", (0,), 0.5), ("m7b", (0,), 0.5)], [])
    inst = next(i for i in b.insts.values() if i.st.model == "m7a")
    assert (inst.slow_prefill, inst.slow) == (2.0, 2.0)
    other = next(i for i in b.insts.values() if i.st.model == "m7b")
    b.stop_instance(other.st.instance_id)
    b.loop.run(b.loop.t + 60.0)
    assert (inst.slow_prefill, inst.slow) == (1.0, 1.0)


def test_share_out_of_range_is_a_capacity_error():
    with pytest.raises(CapacityError, match="compute_share"):
        _run([("m7a", (0,), 1.0, 0.0)], [])


def test_share_model_arithmetic_and_validation():
    m = ShareModel({1: 0.5, 2: 0.5, 4: 0.5, 8: 0.5}, {1: 0.25, 2: 0.25, 4: 0.25, 8: 0.25})
    assert m.factors(0.25, 1) == pytest.approx((2.0, 0.25 ** -0.25))
    assert m.factors(0.25, 1, oversubscription=1.5) == pytest.approx((3.0, 1.5 * 0.25 ** -0.25))
    assert oversubscription([[0.5, 0.5], [0.7, None]]) == pytest.approx(1.7)
    assert oversubscription([[0.3]]) == 1.0
    with pytest.raises(InputError, match="prefill_exponent.tp4: must be in"):
        ShareModel.from_config({"prefill_exponent": {"tp1": 0, "tp2": 0, "tp4": 2, "tp8": 0},
                                "decode_exponent": {"tp1": 0, "tp2": 0, "tp4": 0, "tp8": 0}}, "hw")
    with pytest.raises(InputError, match="missing section 'compute_sharing'"):
        ShareModel.from_config(None, "hw")
