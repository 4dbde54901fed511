"""MuxServe-style placement: hand-worked layouts, a forced colocation, the cannot-fit errors, and
invariants (Hypothesis) of every layout the placement returns."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from warmserve.config import load_yaml, model_specs
from warmserve.control import mux_placement as mp
from warmserve.control.features import BackendFeatures
from warmserve.control.mps import ShareModel
from warmserve.control.muxserve import MuxServePolicy
from warmserve.control.policy import PolicyInputs
from warmserve.errors import InputError
from warmserve.hardware import load_profile

GIB = 2**30
HW = load_yaml("hardware", "a100-80gb")
POOL = int(80 * GIB * 0.9)  # a100-80gb: 80 GiB x gpu_mem_utilization 0.9
SHARES = ShareModel.from_config(HW.compute_sharing, "a100")


def sys_cfg(**over) -> dict:
    c = OmegaConf.to_container(load_yaml("system", "muxserve").policy, resolve=True)
    c.pop("_target_")
    c.update(over)
    return c


def policy(mix: str, nodes: int, gpn: int, demand: list[float], hw=HW, **over) -> MuxServePolicy:
    specs = model_specs(mix)
    pri = pd.DataFrame([{"model": m, "window": 0, "prior_mean": v, "prior_peak": 2 * v}
                        for m, v in zip(specs, demand, strict=True)])
    return MuxServePolicy(PolicyInputs(models=specs, nodes=nodes, gpus_per_node=gpn, hardware=load_profile(hw),
                                       features=BackendFeatures(), window_s=300.0, seed=42, priors=pri),
                          **sys_cfg(**over))


def by_gpu(plan) -> dict[int, list]:
    out: dict[int, list] = {}
    for inst in plan:
        for g in inst.gpus:
            out.setdefault(g, []).append(inst)
    return out


def test_node_patterns_are_muxserves():
    assert mp.node_patterns(8, [8, 4, 2, 1]) == [
        (8,), (4, 4), (4, 2, 2), (4, 2, 1, 1), (4, 1, 1, 1, 1), (2, 2, 2, 2), (2, 2, 2, 1, 1),
        (2, 2, 1, 1, 1, 1), (2, 1, 1, 1, 1, 1, 1), (1,) * 8]
    assert mp.node_patterns(4, [8, 4, 2, 1]) == [(4,), (2, 2), (2, 1, 1), (1, 1, 1, 1)]
    # 2 nodes, at most 4 meshes (4 LLMs): {8,8}, {8,4+4}, {8,4+2+2}, {4+4,4+4}
    got = [tuple(m.size for m in c) for c in mp.candidates(2, 8, [8, 4, 2, 1], 4)]
    assert got == [(8, 8), (8, 4, 4), (8, 4, 2, 2), (4, 4, 4, 4)]


def test_paper4_on_2x8_serves_on_all_16_gpus():
    # demand (mean concurrency) 40 / 10 / 5 / 3 for 7b-0, 7b-1, 13b, 70b. By demand x scale: 7b-0 (40),
    # 70b (3x8=24), 7b-1 (10), 13b (5x2=10; ties by scale). Every candidate meets all demand; the
    # two-mesh layout {8, 8} keeps the most headroom: 7b-0 alone on node 0 (8 TP1 replicas, 8 x 32 = 256
    # concurrency, headroom 6.4), the rest share node 1.
    p = policy("paper4", 2, 8, [40.0, 10.0, 5.0, 3.0])
    plan = p._plan
    assert sorted(by_gpu(plan)) == list(range(16))
    count = {m: sum(i.model == m for i in plan) for m in p.specs}
    assert count == {"llama2-7b-0": 8, "llama2-7b-1": 8, "llama2-13b-0": 4, "llama2-70b-0": 2}
    assert [m.size for m in p.layout.meshes] == [8, 8]
    assert p.layout.on_mesh[0] == ("llama2-7b-0",)
    assert set(p.layout.on_mesh[1]) == {"llama2-70b-0", "llama2-13b-0", "llama2-7b-1"}
    assert p.layout.headroom == pytest.approx(6.4)
    # run-time SM shares: max(prefill, decode) / sum over the mesh; decode shares are all 0.3 (the
    # smallest of the grid already meets demand), so prefill 1.0 / 0.9 / 0.8 decide: sum 2.7
    share = {i.model: i.compute_share for i in plan if i.gpus[0] >= 8}
    assert share == pytest.approx({"llama2-70b-0": 1 / 2.7, "llama2-13b-0": 0.9 / 2.7, "llama2-7b-1": 0.8 / 2.7})
    assert all(i.compute_share == 1.0 and i.mem_fraction == 1.0 for i in plan if i.gpus[0] < 8)
    for insts in by_gpu(plan).values():
        assert sum(i.mem_fraction for i in insts) <= 1 + 1e-9
        assert sum(i.compute_share for i in insts) == pytest.approx(1.0)
    assert any("node 1 GPUs 8-15" in n for n in p.notes) and any("testbed" in n for n in p.notes)


def test_forced_colocation_small2_on_one_pair():
    # 13B needs TP2, so on 1x2 GPUs only the single mesh [2] is a candidate: 7B runs as 2 TP1 replicas next
    # to one TP2 13B on both GPUs.
    p = policy("small2", 1, 2, [4.0, 4.0])
    plan = p._plan
    assert sorted((i.model, i.gpus) for i in plan) == [
        ("llama2-13b-0", (0, 1)), ("llama2-7b-0", (0,)), ("llama2-7b-0", (1,))]
    sh = {i.model: i.compute_share for i in plan}
    assert sh == pytest.approx({"llama2-7b-0": 0.8 / 1.7, "llama2-13b-0": 0.9 / 1.7})
    # memory: weights + reserve (5 % of the pool) each, the rest split by per-replica demand x KV bytes per
    # token per GPU: 7B 4/2 x 524288, 13B 4/1 x 409600
    w7, w13 = 2 * 524288, 4 * 409600
    s7, s13 = model_specs("small2").values()
    res = int(0.05 * POOL)
    free = POOL - (s7.bytes_per_gpu + s13.bytes_per_gpu + 2 * res)
    f7 = (s7.bytes_per_gpu + res + free * w7 / (w7 + w13)) / POOL
    f13 = (s13.bytes_per_gpu + res + free * w13 / (w7 + w13)) / POOL
    fr = {i.model: i.mem_fraction for i in plan}
    assert fr["llama2-7b-0"] == pytest.approx(f7, abs=1e-8) and fr["llama2-13b-0"] == pytest.approx(f13, abs=1e-8)
    assert fr["llama2-7b-0"] + fr["llama2-13b-0"] <= 1


def test_cannot_fit_names_the_model():
    # paper4 on 1x4: only the mesh [4] holds the 70B; 70b (32.1 GiB) + 13b (12.1) + 7b (12.6) + 3 reserves of
    # 3.6 GiB = 67.6 GiB of the 72 GiB pool; the last 7B (by demand x scale) needs 16.2 GiB more
    with pytest.raises(InputError, match=r"cannot hold the models.*'llama2-7b-1'"):
        policy("paper4", 1, 4, [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(InputError, match=r"'llama2-70b-0' needs TP 4"):
        policy("paper4", 1, 2, [1.0, 1.0, 1.0, 1.0])


def test_bad_config_is_an_input_error():
    with pytest.raises(InputError, match="rate"):
        policy("small2", 1, 2, [1.0, 1.0], rate="median")
    with pytest.raises(InputError, match="size class"):
        policy("small2", 1, 2, [1.0, 1.0], size_classes=[{"max_params_b": 1, "scale": 1, "prefill_share": 0.8}])
    bad = OmegaConf.to_container(HW, resolve=True)
    del bad["compute_sharing"]["decode_exponent"]["tp2"]
    with pytest.raises(InputError, match=r"compute_sharing.decode_exponent: missing field 'tp2'"):
        policy("small2", 1, 2, [1.0, 1.0], hw=OmegaConf.create(bad))


def test_more_nodes_than_llms_fills_every_mesh():
    # 2 LLMs on 3 nodes: MuxServe would have no candidate (3 meshes > 2 LLMs); one mesh per node, and the
    # empty one gets a second group of an LLM
    p = policy("small2", 3, 2, [30.0, 5.0])
    assert sorted(by_gpu(p._plan)) == list(range(6))
    assert all(names for names in p.layout.on_mesh)


# ---- invariants ----------------------------------------------------------------
CKPTS = [("7b", 1, 13_476_839_424, 524_288), ("13b", 2, 26_031_738_880, 819_200), ("70b", 4, 137_961_209_856, 327_680)]


@st.composite
def problems(draw):
    gpn = draw(st.sampled_from([1, 2, 4, 8]))
    nodes = draw(st.integers(1, 3))
    n = draw(st.integers(1, 5))
    llms = []
    for k in range(n):
        name, tp, wb, kv = draw(st.sampled_from([c for c in CKPTS if c[1] <= gpn]))
        kv_tok = -(-kv // tp)
        scale, prefill = {"7b": (1, 0.8), "13b": (2, 0.9), "70b": (8, 1.0)}[name]
        llms.append(mp.Llm(f"{name}-{k}", tp, -(-wb // tp), max(int(0.05 * POOL), 10 * 256 * kv_tok), kv_tok,
                           draw(st.floats(0, 200)), scale, prefill))
    return nodes, gpn, llms


PARAMS = mp.Params(POOL, 32, (8, 4, 2, 1), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), 0.2, SHARES)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_layouts_partition_the_gpus_and_respect_memory_and_shares(prob):
    nodes, gpn, llms = prob
    try:
        layout = mp.place(nodes, gpn, llms, PARAMS)
    except InputError as e:
        assert "muxserve" in str(e) and ("'" in str(e) or "mesh" in str(e))
        return
    # every GPU in exactly one mesh, meshes inside one node
    gpus = [g for m in layout.meshes for g in m.gpus]
    assert sorted(gpus) == list(range(nodes * gpn))
    assert all(m.gpus[0] // gpn == m.gpus[-1] // gpn for m in layout.meshes)
    by = {m.name: m for m in llms}
    for i, names in enumerate(layout.on_mesh):
        assert names  # every mesh serves
        mem = sum(by[n].bytes_per_gpu + by[n].reserve_bytes for n in names)
        assert mem <= POOL
        assert sum(layout.decode[(n, i)] for n in names) <= 1 + PARAMS.overload + 1e-9
        assert math.isclose(sum(layout.run_share[(n, i)] for n in names), 1.0)
    plan = mp.instances(layout, llms, POOL)
    assert {i.model for i in plan} == set(by)  # every model at least one instance
    per = by_gpu(plan)
    assert sorted(per) == list(range(nodes * gpn))  # every GPU serves
    for insts in per.values():
        assert sum(i.mem_fraction for i in insts) <= 1 + 1e-9
        assert sum(i.compute_share for i in insts) <= 1 + 1e-9
        for i in insts:
            assert 0 < i.compute_share <= 1
            m = by[i.model]
            kv = int(i.mem_fraction * POOL) - m.bytes_per_gpu
            assert kv >= m.reserve_bytes - POOL * 1e-9 - 1  # the reserve survives the rounding of mem_fraction
            assert len(i.gpus) == m.tp
