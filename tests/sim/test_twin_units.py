"""Unit checks of the twin's mechanisms against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
from twin_scenario import Fixed, _base_hw, _specs, hardware, wl

from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.seam import CapacityError, StartInstance
from warmserve.hardware import load_profile
from warmserve.sim.backend import SimBackend
from warmserve.sim.events import EventLoop
from warmserve.sim.lifecycle import engine_start_s, first_step_blocks
from warmserve.sim.links import Flow, LinkNetwork


def _run(rows, starts, *, features=None, setup_ready=True, launch=None, gpu_gib=80, block=256, gpn=2, pre=None,
         **hw):
    b = SimBackend(models=_specs(("a", "c")), cluster={"nodes": 1, "gpus_per_node": gpn},
                   hardware=hardware(gpu_gib, block, **hw), features=features or BackendFeatures(),
                   setup_ready=setup_ready)
    c = Controller(b, Fixed(starts, launch), ["m7a", "m13"])
    b.replay(wl(rows), c, 10_000, on_start=(lambda: pre(b)) if pre else None)
    return b, b.request_log()


HW = load_profile(_base_hw())
LAT7 = HW.latency[("llama2-7b", 1)]


def test_single_request_latency_is_the_profile() -> None:
    b, log = _run([(0, 1.0, "m7a", 100, 5)], [("m7a", (0,))])
    r = log.iloc[0]
    assert r.start_kind == "warm" and r.status == "ok"
    assert r.ttft_s == pytest.approx(LAT7.prefill_s(100))
    ctx0 = 101  # prompt + first token
    steps = sum(LAT7.decode_base + LAT7.decode_per_seq + LAT7.decode_per_ctx_token * (ctx0 + j) for j in range(4))
    assert r.finish_s - r.first_token_s == pytest.approx(steps)
    assert r.tpot_s == pytest.approx(steps / 4)


def test_analytic_decode_matches_step_by_step_with_interruptions() -> None:
    # three requests; the later arrivals interrupt decode runs; compare with a brute-force per-step replay
    rows = [(0, 0.0, "m7a", 50, 40), (1, 0.2, "m7a", 70, 10), (2, 0.33, "m7a", 30, 25)]
    _, log = _run(rows, [("m7a", (0,))])
    # brute force: vLLM-like loop, prefill has priority at step boundaries
    t, waiting, running = 0.0, [], {}
    pending = list(rows)
    first, fin = {}, {}
    while pending or waiting or running:
        while pending and pending[0][1] <= t:
            waiting.append(pending.pop(0))
        if waiting:
            batch, waiting = waiting, []
            t += LAT7.prefill_s(sum(r[3] for r in batch))
            for r in batch:
                first[r[0]] = t
                running[r[0]] = [r[3] + 1, r[4] - 1]
            continue
        if not running:
            t = pending[0][1]
            continue
        ctx = sum(v[0] for v in running.values())
        t += LAT7.decode_base + LAT7.decode_per_seq * len(running) + LAT7.decode_per_ctx_token * ctx
        for k in list(running):
            running[k][0] += 1
            running[k][1] -= 1
            if running[k][1] == 0:
                fin[k] = t
                del running[k]
    for r in log.itertuples():
        assert r.first_token_s == pytest.approx(first[r.request_id], abs=1e-9)
        assert r.finish_s == pytest.approx(fin[r.request_id], abs=1e-9)


def test_cold_start_split_matches_lifecycle_and_links() -> None:
    b, log = _run([(0, 0.0, "m7a", 100, 2)], [], setup_ready=False, launch=(0,))
    r = log.iloc[0]
    lc = HW.lifecycle
    spec = _specs(("a", "c"))["m7a"]
    bottleneck = min(HW.nvme_Bps, HW.pcie_h2d_Bps, HW.switch_uplink_Bps, HW.host_mem_Bps, HW.vllm_loader_Bps)
    assert r.start_kind == "cold"
    assert r.load_s == pytest.approx(spec.bytes_per_gpu / bottleneck)
    engine_init = lc.engine_init_s + lc.engine_init_s_per_GB * spec.bytes_per_gpu / 1e9
    assert r.init_s == pytest.approx(lc.process_start_s + lc.cuda_context_s + engine_init + lc.kv_alloc_s)
    assert r.queue_s == pytest.approx(0.0, abs=1e-9)
    assert r.ttft_s == pytest.approx(r.load_s + r.init_s + LAT7.prefill_s(100))


def _first_kv_map_s(spec) -> float:
    """Mapping the KV blocks a first step can touch: ceil((max_model_len + block) / block) blocks of this GPU."""
    lim = HW.engine
    return HW.lifecycle.mapping_s_per_GB * first_step_blocks(lim) * spec.kv_bytes_per_token * lim.kv_block_tokens / 1e9


def test_prewarmed_start_with_memory_switching_pays_only_attach_and_mapping() -> None:
    feats = BackendFeatures(worker_pool=True, memory_switching=True)
    b, log = _run([(0, 100.0, "m7a", 100, 2)], [], setup_ready=False, launch=(0,), features=feats,
                  pre=lambda b: b.prewarm("m7a", (0,)))
    r = log.iloc[0]
    lc = HW.lifecycle
    spec = _specs(("a", "c"))["m7a"]
    assert r.start_kind == "prewarmed" and r.load_s == 0
    # by hand (a100-80gb): attach 1.0 s + 9 blocks x 256 tokens x 512 KiB = 1.2080 GB x 0.0179 s/GB
    assert lc.engine_attach_s == 1.0 and lc.mapping_s_per_GB == 0.0179 and spec.kv_bytes_per_token == 2**19
    assert r.init_s == pytest.approx(1.0 + 9 * 256 * 2**19 * 0.0179 / 1e9)
    assert r.init_s == pytest.approx(lc.engine_attach_s + _first_kv_map_s(spec))
    tl = b.timeline()
    assert list(tl.loc[tl.kind.isin(["prewarm_start", "prewarm_done", "claim"]), "kind"]) == [
        "prewarm_start", "prewarm_done", "claim"]


def test_without_memory_switching_a_replica_is_evicted_not_adopted() -> None:
    b, log = _run([(0, 100.0, "m7a", 100, 2)], [], setup_ready=False, launch=(0,),
                  features=BackendFeatures(worker_pool=True), pre=lambda b: b.prewarm("m7a", (0,)))
    assert log.iloc[0].start_kind == "worker"
    assert "evict" in set(b.timeline().kind.astype(str))


def test_two_loads_share_the_nvme_fairly() -> None:
    loop = EventLoop()
    net = LinkNetwork(loop, HW, nodes=1)
    done = {}
    a = Flow(0, net.path(0, 0, 0, True), 13e9, lambda f: done.__setitem__("a", loop.t))
    b = Flow(0, net.path(1, 0, 1, True), 6.5e9, lambda f: done.__setitem__("b", loop.t))
    net.start(a)
    net.start(b)
    loop.run(1e9, lambda: False)
    share = HW.nvme_Bps / 2
    assert done["b"] == pytest.approx(6.5e9 / share)
    # after b ends, a has the whole NVMe
    assert done["a"] == pytest.approx(done["b"] + (13e9 - 6.5e9) / HW.nvme_Bps)


def test_max_min_fairness_gives_unused_share_to_others() -> None:
    # flow x reads from the DRAM cache (no NVMe), two flows share NVMe; x is PCIe-bound alone
    loop = EventLoop()
    net = LinkNetwork(loop, HW, nodes=1)
    fs = [Flow(0, net.path(g, 0, g, g != 4), 1e12, lambda f: None) for g in (0, 2, 4)]
    for f in fs:
        net.start(f)
    assert fs[0].rate == pytest.approx(HW.nvme_Bps / 2)
    assert fs[2].rate == pytest.approx(min(HW.pcie_h2d_Bps, HW.switch_uplink_Bps))
    moved = net.cancel(fs[0])
    assert moved == 0.0 and fs[1].rate == pytest.approx(HW.nvme_Bps)


def test_host_cache_makes_the_second_load_faster() -> None:
    feats = BackendFeatures(host_cache=True)
    rows = [(0, 0.0, "m7a", 10, 2), (1, 500.0, "m7a", 10, 2)]

    class StopAfter(Fixed):
        def on_tick(self, ctx):
            return [] if not ctx.state.instances or ctx.now < 200 else [
                __import__("warmserve.control.seam", fromlist=["StopInstance"]).StopInstance(i)
                for i in list(ctx.state.instances)]

    b = SimBackend(models=_specs(("a", "c")), cluster={"nodes": 1, "gpus_per_node": 2}, hardware=hardware(80, 256),
                   features=feats, setup_ready=False)
    c = Controller(b, StopAfter([], launch=(0,)), ["m7a", "m13"])
    b.replay(wl(rows), c, 10_000)
    log = b.request_log()
    assert log.load_s.iloc[1] < log.load_s.iloc[0] / 2
    assert list(b.timeline().query("kind == 'load_start'").detail.astype(str)) == ["nvme", "host_cache"]


def test_preemption_by_recomputation_when_kv_runs_out() -> None:
    # 20 GiB GPU: 7B leaves ~5.4 GiB of KV = ~10k tokens at 16-token blocks; 12 long requests overflow it
    rows = [(i, 0.0, "m7a", 900, 900) for i in range(12)]
    b, log = _run(rows, [("m7a", (0,))], gpu_gib=20, block=16)
    assert (log.status == "ok").all()
    assert (b.timeline().kind == "preempt").sum() > 0


def test_too_long_request_fails_not_missing() -> None:
    b, log = _run([(0, 0.0, "m7a", 1500, 1000), (1, 0.0, "m7a", 10, 2)], [("m7a", (0,))])
    assert list(log.status) == ["failed", "ok"]
    assert math.isnan(log.ttft_s.iloc[0])


def test_unserved_requests_become_timeouts() -> None:
    b = SimBackend(models=_specs(("a", "c")), cluster={"nodes": 1, "gpus_per_node": 2}, hardware=hardware(80, 256))
    c = Controller(b, Fixed([]), ["m7a", "m13"])  # nobody ever serves
    info = b.replay(wl([(0, 0.0, "m7a", 10, 2), (1, 1.0, "m13", 10, 2)]), c, 50)
    log = b.request_log()
    assert list(log.status) == ["timeout", "timeout"] and info.unfinished == 2
    assert list(log.start_kind.astype(str)) == ["", ""] and list(log.instance_id) == [-1, -1]


def test_lend_kv_frees_memory_and_stop_keeps_weights() -> None:
    b, _ = _run([], [("m7a", (0,))])
    iid = next(iter(b.insts))
    st = b.insts[iid].st
    assert b.state.gpus[0].free_bytes < b._block_bytes["m7a"] * 2
    got = b.lend_kv(iid, 40)
    assert got == 40 and b.state.gpus[0].free_bytes >= 40 * b._block_bytes["m7a"]
    assert b.lend_kv(iid, 10) == 10
    b.stop_instance(iid, keep_weights=True)
    assert st.phase.value == "stopped" and iid not in b.state.instances
    rep = b.state.gpus[0].replicas["m7a"]
    assert rep.ready and b.ledger.held[0] == [0, 0, rep.bytes_per_gpu, 0]


def test_capacity_errors_are_raised_and_leave_books_untouched() -> None:
    b, _ = _run([], [("m7a", (0,))])
    before = [g.used_bytes for g in b.state.gpus]
    with pytest.raises(CapacityError):
        b.start_instance("m13", (0, 1))  # GPU 0 is taken
    with pytest.raises(CapacityError):
        b.prewarm("m7a", (0,))  # GPU 0 runs m7a
    with pytest.raises(CapacityError):
        b.start_instance("m7a", (1,), 0.1)  # too little memory for KV
    assert [g.used_bytes for g in b.state.gpus] == before
    b.ledger.check()


# ---- the CPU testbed's mechanisms (engine.scheduler: mixed, worker pool, standby-engine prewarm) ----------
def test_mixed_scheduler_decodes_running_sequences_during_a_prefill() -> None:
    # r0 decodes; r1 arrives mid-run. prefill_first holds r0 back for r1's prefill; mixed gives r0 a token in it
    rows = [(0, 0.0, "m7a", 50, 40), (1, 0.2, "m7a", 1000, 2)]
    _, first = _run(rows, [("m7a", (0,))])
    _, mixed = _run(rows, [("m7a", (0,))], scheduler="mixed")
    first, mixed = first.set_index("request_id"), mixed.set_index("request_id")
    assert mixed.loc[0, "finish_s"] < first.loc[0, "finish_s"]  # the mixed step also decoded r0
    # both finish the decode step in progress at 0.2 (T); then r1's first token comes after
    # prefill_first: prefill(1000); mixed: max(prefill_base, decode_base) + one decode of r0 + 1000 prompt tokens
    lat = LAT7
    t, n = lat.prefill_s(50), 0
    while t <= 0.2:
        t += lat.decode_base + lat.decode_per_seq + lat.decode_per_ctx_token * (51 + n)
        n += 1
    assert first.loc[1, "first_token_s"] == pytest.approx(t + lat.prefill_s(1000))
    mixed_step = (max(lat.prefill_base, lat.decode_base) + lat.decode_per_seq + lat.decode_per_ctx_token * (51 + n)
                  + lat.prefill_per_token * 1000)
    assert mixed.loc[1, "first_token_s"] == pytest.approx(t + mixed_step)


class _TwoSlots(Fixed):
    def launch_for(self, model, ctx):
        return StartInstance(model, (0,) if model == "m7a" else (1,))  # two 1-GPU models


def _start_kinds(pool, gap=0.0, refill_s=None):
    hw = hardware(80, 256, worker_pool=pool)
    hw["lifecycle"]["worker_refill_s"] = refill_s
    b = SimBackend(models=_specs(("a", "b")), cluster={"nodes": 1, "gpus_per_node": 2},
                   hardware=hw, features=BackendFeatures(worker_pool=True), setup_ready=False)
    rows = [(0, 0.0, "m7a", 100, 2), (1, gap, "m7b", 100, 2)]
    b.replay(wl(rows), Controller(b, _TwoSlots([]), ["m7a", "m7b"]), 10_000)
    tl = b.timeline()
    first_ready = tl.loc[tl.kind == "instance_ready", "t_s"].min()
    return list(b.request_log().sort_values("request_id").start_kind), first_ready


def test_bounded_worker_pool_makes_the_second_start_cold() -> None:
    assert _start_kinds(None)[0] == ["worker", "worker"]  # unbounded, as the published 32 per node
    assert _start_kinds(1)[0] == ["worker", "cold"]
    assert _start_kinds(0)[0] == ["cold", "cold"]


def test_worker_pool_refills_an_import_time_after_the_start_it_served() -> None:
    ps = HW.lifecycle.process_start_s
    _, ready = _start_kinds(1, gap=1e4)
    assert _start_kinds(1, gap=ready + 0.5 * ps)[0] == ["worker", "cold"]
    assert _start_kinds(1, gap=ready + 1.5 * ps)[0] == ["worker", "worker"]
    # a measured import time, when the profile gives one, replaces process_start_s as the refill time
    assert _start_kinds(1, gap=ready + 1.5 * ps, refill_s=3 * ps)[0] == ["worker", "cold"]
    assert _start_kinds(1, gap=ready + 3.5 * ps, refill_s=3 * ps)[0] == ["worker", "worker"]


def test_prewarm_as_engine_takes_a_whole_start_and_a_claim_waits_for_it() -> None:
    feats = BackendFeatures(worker_pool=True, memory_switching=True)
    lc = HW.lifecycle
    spec = _specs(("a", "c"))["m7a"]
    bottleneck = min(HW.nvme_Bps, HW.pcie_h2d_Bps, HW.switch_uplink_Bps, HW.host_mem_Bps, HW.vllm_loader_Bps)
    engine = lc.process_start_s + lc.engine_init_s + spec.bytes_per_gpu / bottleneck
    # claimed long after the standby is up: only the attach is paid
    b, log = _run([(0, engine + 50, "m7a", 100, 2)], [], setup_ready=False, launch=(0,), features=feats,
                  pre=lambda b: b.prewarm("m7a", (0,)), prewarm_is_engine=True)
    tl = b.timeline()
    assert tl.loc[tl.kind == "prewarm_done", "t_s"].iloc[0] == pytest.approx(engine)
    r = log.iloc[0]
    assert r.start_kind == "prewarmed"
    assert r.init_s + r.load_s == pytest.approx(lc.engine_attach_s + _first_kv_map_s(spec))
    # claimed while the standby engine is still starting: the request waits for the rest of that start
    b, log = _run([(0, 1.0, "m7a", 100, 2)], [], setup_ready=False, launch=(0,), features=feats,
                  pre=lambda b: b.prewarm("m7a", (0,)), prewarm_is_engine=True)
    r = log.iloc[0]
    assert r.start_kind == "prewarmed"
    assert r.first_token_s == pytest.approx(engine + _first_kv_map_s(spec) + LAT7.prefill_s(100))


def test_busy_start_slowdown_applies_only_next_to_another_engine() -> None:
    lc = HW.lifecycle
    alone = engine_start_s(lc, _specs(("a", "c"))["m7a"], fresh_process=True)
    # alone on the node: the calibrated start
    _, log = _run([(0, 0.0, "m7a", 100, 2)], [], setup_ready=False, launch=(0,), busy_start_slowdown=1.5)
    assert log.iloc[0].init_s == pytest.approx(alone + lc.kv_alloc_s)
    # next to a serving instance (m13 on GPUs 2-3 of a 4-GPU node): 1.5x the process start and engine init
    b = SimBackend(models=_specs(("a", "c")), cluster={"nodes": 1, "gpus_per_node": 4},
                   hardware=hardware(80, 256, busy_start_slowdown=1.5), setup_ready=True)
    b.replay(wl([(0, 0.0, "m7a", 100, 2)]), Controller(b, Fixed([("m13", (2, 3))], launch=(0,)), ["m7a", "m13"]),
             10_000)
    r = b.request_log().iloc[0]
    assert r.start_kind == "cold"
    assert r.init_s == pytest.approx(1.5 * alone + lc.kv_alloc_s)


def test_fixed_kv_cache_caps_the_blocks_and_queues_what_does_not_fit() -> None:
    spec = _specs(("a", "c"))["m7a"]
    block = spec.kv_bytes_per_token * 256  # hardware(..., block=256)
    cap = 20 * block  # 5,120 tokens: two 1,500-token requests fit, a third waits for one to finish
    rows = [(i, 0.0, "m7a", 1500, 50) for i in range(3)]
    b, log = _run(rows, [("m7a", (0,))], kv_cache_bytes=cap)
    tl = b.timeline()
    assert tl.loc[tl.kind == "instance_start", "blocks"].iloc[0] == 20
    assert (log.status == "ok").all()
    log = log.sort_values("request_id")
    assert log.first_token_s.iloc[2] >= min(log.finish_s.iloc[:2]) - 1e-9  # it waited for KV, then ran
    _, roomy = _run(rows, [("m7a", (0,))])
    assert roomy.first_token_s.max() < log.first_token_s.max()
