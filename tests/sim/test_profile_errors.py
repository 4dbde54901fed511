"""Bad hardware/cluster/model input: one-line InputError naming the field."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from twin_scenario import _base_hw, _specs

from warmserve.config import load_yaml, model_specs
from warmserve.control.controller import Controller
from warmserve.control.policy import PolicyContext, SystemPolicy
from warmserve.control.seam import Command, StartInstance
from warmserve.errors import InputError
from warmserve.hardware import load_profile
from warmserve.sim.backend import SimBackend


def _make(hw=None, cluster=None, models=None):
    return SimBackend(models=models or _specs(("a", "c")), cluster=cluster or {"nodes": 1, "gpus_per_node": 2},
                      hardware=hw or _base_hw())


@pytest.mark.parametrize("name", ["a100-80gb", "h100-80gb", "cpu-testbed"])
def test_bundled_profiles_load(name: str) -> None:
    hw = load_profile(load_yaml("hardware", name))
    assert hw.pool_bytes > 0 and hw.latency


def _err(fn) -> str:
    with pytest.raises(InputError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_missing_field_is_named() -> None:
    hw = copy.deepcopy(_base_hw())
    del hw["nvme_GBps"]
    assert "nvme_GBps" in _err(lambda: _make(hw))


def test_negative_bandwidth_is_named() -> None:
    hw = copy.deepcopy(_base_hw())
    hw["pcie_h2d_GBps"] = -3
    assert "pcie_h2d_GBps" in _err(lambda: _make(hw))


def test_missing_lifecycle_field_is_named() -> None:
    hw = copy.deepcopy(_base_hw())
    del hw["lifecycle"]["kv_alloc_s"]
    assert "kv_alloc_s" in _err(lambda: _make(hw))


def test_missing_latency_for_a_model_tp_is_named() -> None:
    hw = copy.deepcopy(_base_hw())
    del hw["latency"]["llama2-13b"]["tp2"]
    assert "llama2-13b.tp2" in _err(lambda: _make(hw))


def test_tp_larger_than_node() -> None:
    assert "gpus_per_node" in _err(lambda: _make(cluster={"nodes": 4, "gpus_per_node": 1}))


def test_model_that_does_not_fit_a_gpu() -> None:
    hw = copy.deepcopy(_base_hw())
    hw["gpu_mem_bytes"] = 8 * 2**30
    assert "does not fit" in _err(lambda: _make(hw)) or "do not fit" in _err(lambda: _make(hw))
    big = model_specs([{"name": "big", "base": "llama2-70b"}])
    # 70B at tp4 fits an 80 GB GPU; the 4-GPU node is required
    _make(models=big, cluster={"nodes": 1, "gpus_per_node": 4})


@pytest.mark.parametrize(("extra_blocks", "fits"), [(8.5, False), (9.0, True)])
def test_fit_check_matches_what_a_start_needs(extra_blocks: float, fits: bool) -> None:
    # A GPU with room for the weights plus 8 KV blocks (2048 tokens at 256 per block) used to pass the
    # check, and then every start failed with CapacityError ("leaves 8 KV blocks"): a start needs one
    # max_model_len sequence *and* one more block (seam.min_kv_blocks).
    spec = model_specs([{"name": "m", "base": "llama2-7b"}])
    block = spec["m"].kv_bytes_per_token * 256
    hw = copy.deepcopy(_base_hw())
    hw["engine"]["kv_block_tokens"] = 256
    hw["engine"]["max_model_len"] = 2048
    hw["gpu_mem_utilization"] = 1.0
    hw["gpu_mem_bytes"] = spec["m"].bytes_per_gpu + int(extra_blocks * block)
    if not fits:
        assert "do not fit" in _err(lambda: _make(hw, models=spec))
        return
    b = _make(hw, models=spec)

    class StartOne(SystemPolicy):
        tick_interval_s = 0.5  # a test policy: the published control-loop period
        instance_capacity = 32  # a test policy: the published BATCH_SIZE
        def setup(self, ctx: PolicyContext) -> list[Command]:
            return [StartInstance("m", (0,))]

    none = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in
                         [("request_id", "int64"), ("arrival_s", "float64"), ("model", object),
                          ("input_tokens", "int64"), ("output_tokens", "int64")]})
    b.replay(none, Controller(b, StartOne(), ["m"]), 1.0)  # the smallest GPU the check accepts can start it
    assert len(b.insts) == 1


def test_fixed_kv_cache_smaller_than_one_sequence_is_refused() -> None:
    hw = copy.deepcopy(_base_hw())
    hw["engine"]["kv_cache_bytes"] = 2**20
    assert "kv_cache_bytes" in _err(lambda: _make(hw))


def test_bad_cluster_values() -> None:
    assert "cluster.nodes" in _err(lambda: _make(cluster={"nodes": 0, "gpus_per_node": 2}))
    assert "gpus_per_node" in _err(lambda: _make(cluster={"nodes": 1}))
