"""Start costs from the published measurements (docs/lifecycle.md): cold/worker size dependence, the
prewarmed start as designed (attach + KV mapping, background mapping after), sleep-mode wakes over the
links, pinned host memory of sleeping replicas, and the sensitivity knobs."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twin_scenario import Fixed, _base_hw, _specs, hardware, wl

from warmserve.config import load_yaml, model_specs
from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.seam import CapacityError
from warmserve.errors import InputError
from warmserve.hardware import load_profile
from warmserve.sim.backend import SimBackend
from warmserve.sim.lifecycle import (
    engine_init_s,
    engine_start_s,
    first_step_blocks,
    kv_ramp,
    plan_start,
)

HW = load_profile(_base_hw())
_CK = model_specs([{"name": "m7", "base": "llama2-7b"}, {"name": "m13", "base": "llama2-13b"},
                   {"name": "m70", "base": "llama2-70b"}])
# the published breakdown ran 7B and 13B on one GPU each (TP1); 70B keeps its TP4
SPECS = {"m7": _CK["m7"], "m13": dataclasses.replace(_CK["m13"], tp=1), "m70": _CK["m70"]}
MS = BackendFeatures(worker_pool=True, memory_switching=True)



def _run(rows, *, pre=None, features=MS, launch=(0,), models=("a", "c"), gpn=2, **hw):
    specs = _specs(models)
    b = SimBackend(models=specs, cluster={"nodes": 1, "gpus_per_node": gpn}, hardware=hardware(80, 256, **hw),
                   features=features, setup_ready=False)
    b.replay(wl(rows), Controller(b, Fixed([], launch), list(specs)), 10_000,
             on_start=(lambda: pre(b)) if pre else None)
    return b, b.request_log()


# ---- cold and worker starts: the published 7B/13B breakdown -------------------------------------------
@pytest.mark.parametrize(("model", "total_ram", "dynamo", "compile_", "graphs", "page_cache_load"), [
    ("m7", 24.5, 5.4, 4.5, 1.1, 1.63), ("m13", 29.7, 6.9, 5.7, 1.5, 3.16)])
def test_cold_start_reproduces_the_published_eager_breakdown(model, total_ram, dynamo, compile_, graphs,
                                                             page_cache_load) -> None:
    """Published vLLM cold start with weights in RAM (H100 NVL, docs/published_measurements.md §2) minus the
    stages an eager engine skips = our process + CUDA context + engine init + the measured load."""
    eager = total_ram - dynamo - compile_ - graphs
    ours = engine_start_s(HW.lifecycle, SPECS[model], fresh_process=True) + page_cache_load
    assert ours == pytest.approx(eager, abs=0.01)


def test_engine_init_grows_with_the_weights_by_the_fitted_slope() -> None:
    lc = HW.lifecycle
    d_bytes = SPECS["m13"].bytes_per_gpu - SPECS["m7"].bytes_per_gpu
    d = engine_init_s(lc, SPECS["m13"]) - engine_init_s(lc, SPECS["m7"])
    assert d == pytest.approx(0.0454 * d_bytes / 1e9)
    assert d == pytest.approx(9.14 - 8.57, abs=0.005)  # the two published points
    # 70B at TP4: each GPU's shard counts, and TP adds the NCCL set-up
    w = engine_start_s(lc, SPECS["m70"], fresh_process=False)
    assert w == pytest.approx(lc.engine_init_s + lc.engine_init_s_per_GB * SPECS["m70"].bytes_per_gpu / 1e9
                              + lc.tp_comm_setup_s)


def test_cold_13b_start_in_the_twin_is_longer_by_the_fit_and_the_load() -> None:
    b, log = _run([(0, 0.0, "m7a", 16, 2)], features=BackendFeatures())
    _, log13 = _run([(0, 0.0, "m13", 16, 2)], features=BackendFeatures(), launch=(0, 1))
    r7, r13 = log.iloc[0], log13.iloc[0]
    s7, s13 = _specs(("a", "c"))["m7a"], _specs(("a", "c"))["m13"]
    assert r13.init_s - r7.init_s == pytest.approx(
        HW.lifecycle.engine_init_s_per_GB * (s13.bytes_per_gpu - s7.bytes_per_gpu) / 1e9 + HW.lifecycle.tp_comm_setup_s)


# ---- prewarmed start as designed (vmm) ------------------------------------------------------------------
def test_vmm_prewarmed_start_is_attach_plus_first_step_kv_mapping() -> None:
    b, log = _run([(0, 100.0, "m7a", 16, 2)], pre=lambda b: b.prewarm("m7a", (0,)))
    r = log.iloc[0]
    # by hand: 1.0 s attach + (2048 + 256) / 256 = 9 blocks x 256 tokens x 524,288 B x 0.0179 s/GB
    assert r.start_kind == "prewarmed" and r.load_s == 0
    assert r.init_s == pytest.approx(1.0 + 9 * 256 * 524288 * 0.0179 / 1e9)
    assert first_step_blocks(HW.engine) == 9


def test_vmm_background_mapping_grows_the_usable_kv_to_all_of_it() -> None:
    # a second request long after keeps the run going until the background mapping has finished
    b, _ = _run([(0, 100.0, "m7a", 16, 2), (1, 500.0, "m7a", 16, 2)], pre=lambda b: b.prewarm("m7a", (0,)))
    inst = b.insts[0]
    total = inst.st.kv_blocks_total
    steps = b.starts[0].kv_ramp
    assert steps and steps[-1][1] == total and b.starts[0].kv_mapped == total  # every block mapped by the end
    block = 524288 * 256
    per_block = 0.0179 / 1e9 * block + 0.010 / 20971520 * block  # map cost + the published throttle
    assert steps[-1][0] == pytest.approx((total - 9) * per_block)
    assert [n for _, n in steps] == sorted({n for _, n in steps})  # strictly growing


@settings(max_examples=200, deadline=None, derandomize=True)
@given(first=st.integers(1, 50), extra=st.integers(0, 5000), block=st.integers(1, 2**28))
def test_kv_ramp_is_monotone_and_ends_at_the_whole_cache(first: int, extra: int, block: int) -> None:
    steps = kv_ramp(HW.lifecycle, first, first + extra, block)
    if extra == 0:
        assert steps == []
        return
    ts, ns = zip(*steps, strict=True)
    assert list(ts) == sorted(ts) and list(ns) == sorted(ns) and ns[-1] == first + extra
    assert all(n <= 2 * p for p, n in zip((first, *ns), ns, strict=False))  # doubling: never ahead of the mapper


# ---- sleep mode -----------------------------------------------------------------------------------------
def test_sleep_wake_is_fixed_part_plus_weights_over_the_link() -> None:
    b, log = _run([(0, 200.0, "m7a", 16, 2)], pre=lambda b: b.prewarm("m7a", (0,)), prewarm_mechanism="sleep")
    r = log.iloc[0]
    spec = _specs(("a", "c"))["m7a"]
    assert r.start_kind == "prewarmed"
    assert r.init_s == pytest.approx(0.40)
    assert r.load_s == pytest.approx(spec.bytes_per_gpu / 25.7e9)  # pinned host -> GPU at the measured PCIe rate


def test_sleep_wake_of_a_tp2_replica_shares_the_pcie_switch() -> None:
    b, log = _run([(0, 200.0, "m13", 16, 2)], pre=lambda b: b.prewarm("m13", (0, 1)), prewarm_mechanism="sleep",
                  launch=(0, 1))
    spec = _specs(("a", "c"))["m13"]
    # DGX A100: GPUs 0 and 1 share one switch uplink (gpus_per_pcie_switch 2), so the two shards halve it
    assert log.iloc[0].load_s == pytest.approx(2 * spec.bytes_per_gpu / 25.7e9)


def test_sleep_wake_fixed_part_is_the_mean_residual_of_the_published_wakes() -> None:
    # docs/published_measurements.md §1, single-GPU A100, vLLM 0.11.0; sizes = parameters x 2 bytes (derived)
    points = [(0.6e9 * 2, (0.25 + 0.28) / 2), (4.2e9 * 2, 0.82), (30.5e9 * 2, (2.85 + 2.89) / 2)]
    fixed = np.mean([w - nbytes / HW.pcie_h2d_Bps for nbytes, w in points])
    assert HW.lifecycle.sleep_wake_s == pytest.approx(fixed, abs=0.005)


def test_a_sleeping_replica_holds_host_memory_not_gpu_memory() -> None:
    spec = _specs(("a", "c"))["m13"]
    seen = {}

    def pre(b):
        b.prewarm("m13", (0, 1))
        seen["gpu"] = [g.used_bytes for g in b.state.gpus]
        seen["host"] = list(b.host.held)
        b.evict("m13", (0, 1))
        seen["after"] = list(b.host.held)

    _run([], pre=pre, prewarm_mechanism="sleep")
    assert seen["gpu"] == [0, 0]
    assert seen["host"] == [2 * spec.bytes_per_gpu]
    assert seen["after"] == [0]


def test_sleep_prewarm_past_the_host_memory_is_refused_untouched() -> None:
    spec = _specs(("a", "c"))["m7a"]
    out = {}

    def pre(b):
        b.prewarm("m7a", (0,))  # 13.5 GB of 16 GiB
        with pytest.raises(CapacityError, match="pinned host memory"):
            b.prewarm("m7b", (1,))
        out["held"] = list(b.host.held)

    specs = model_specs([{"name": "m7a", "base": "llama2-7b"}, {"name": "m7b", "base": "llama2-7b"}])
    b = SimBackend(models=specs, cluster={"nodes": 1, "gpus_per_node": 2},
                   hardware=hardware(80, 256, prewarm_mechanism="sleep", host_gib=16), features=MS,
                   setup_ready=False)
    b.replay(wl([]), Controller(b, Fixed([]), list(specs)), 10_000, on_start=lambda: pre(b))
    assert out["held"] == [spec.bytes_per_gpu]


def test_a_stop_that_keeps_weights_puts_the_engine_to_sleep() -> None:
    feats = BackendFeatures(worker_pool=True, memory_switching=True)
    spec = _specs(("a", "c"))["m7a"]
    b, _ = _run([(0, 0.0, "m7a", 16, 2)], features=feats, prewarm_mechanism="sleep")
    b.stop_instance(0, keep_weights=True)  # the policy decides (features.keep_weights_on_stop -> StopInstance)
    assert b.state.gpus[0].used_bytes == 0 and b.host.held == [spec.bytes_per_gpu]
    assert b.state.gpus[0].replicas["m7a"].ready


# ---- knobs and validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_scale_knobs_multiply_start_costs(scale: float) -> None:
    hw = copy.deepcopy(_base_hw())
    hw["lifecycle"]["cold_scale"] = scale
    hw["lifecycle"]["prewarm_scale"] = scale
    scaled = load_profile(hw)
    spec = SPECS["m7"]
    for fresh in (True, False):
        assert engine_start_s(scaled.lifecycle, spec, fresh_process=fresh) == pytest.approx(
            scale * engine_start_s(HW.lifecycle, spec, fresh_process=fresh))
    a = plan_start(scaled, spec, adopt=True, fresh_process=False, busy=1.0)
    b = plan_start(HW, spec, adopt=True, fresh_process=False, busy=1.0)
    assert (a.init_s, a.post_s) == pytest.approx((scale * b.init_s, scale * b.post_s))


def test_the_override_names_exist_in_both_gpu_profiles() -> None:
    for name in ("a100-80gb", "h100-80gb"):
        lc = load_yaml("hardware", name)["lifecycle"]
        assert lc["prewarm_mechanism"] == "vmm" and lc["cold_scale"] == 1.0 and lc["prewarm_scale"] == 1.0


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda h: h["lifecycle"].__setitem__("prewarm_mechanism", "hibernate"), "prewarm_mechanism"),
    (lambda h: (h["lifecycle"].__setitem__("prewarm_mechanism", "sleep"),
                h["lifecycle"].__setitem__("sleep_wake_s", None)), "sleep_wake_s"),
    (lambda h: h["lifecycle"].__setitem__("cold_scale", 0), "cold_scale"),
    (lambda h: (h["lifecycle"].__setitem__("prewarm_mechanism", "sleep"),
                h["lifecycle"].__setitem__("prewarm_is_engine", True)), "exclude"),
])
def test_bad_lifecycle_settings_are_input_errors(edit, needle) -> None:
    hw = copy.deepcopy(_base_hw())
    edit(hw)
    with pytest.raises(InputError, match=needle):
        load_profile(hw)
