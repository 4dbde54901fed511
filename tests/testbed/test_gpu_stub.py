"""The GPU testbed against stub engines on fake GPUs (``backend=testbed-stub-gpu``).

The first group checks that the stub follows vLLM's GPU rules (so it can catch the testbed's
bugs); the second runs the testbed on it: every finding of the GPU review has a test here
that fails on the code before the fix (see the commit messages for which were run so).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from warmserve.control.controller import Controller
from warmserve.control.seam import Prewarm, StartInstance
from warmserve.testbed.engines import REGISTRY, EngineExited, EngineProcess, EngineSpec, python_argv
from warmserve.testbed.fake_gpu import ENV, FakeGpuNode
from warmserve.testbed.mechanisms import SleepModeClient
from warmserve.testbed.ports import PortAllocator
from warmserve.testbed.stubs import ScriptedPolicy as Scripted
from warmserve.testbed.stubs import gpu_stub_backend, workload

GiB = 2**30
PORTS = PortAllocator(18700, 200)
SEVEN = [{"name": "a", "base": "llama2-7b"}, {"name": "b", "base": "llama2-7b"}]


# ---- the stub follows vLLM's rules on its fake GPU -------------------------------------------
def _engine(tmp: Path, node: Path, *args: str, visible: str = "0", base: str = "llama2-7b") -> EngineProcess:
    port = PORTS.acquire()
    argv = python_argv("warmserve.testbed.stub_engine", "--model", "m", "--base", base, "--port", str(port), *args)
    return EngineProcess(EngineSpec(f"e{port}", argv, port, env={ENV: str(node), "CUDA_VISIBLE_DEVICES": visible},
                                    log_dir=tmp))


def _run(coro):
    return asyncio.run(coro)


async def _up(eng: EngineProcess, s: aiohttp.ClientSession) -> None:
    eng.launch()
    await eng.wait_healthy(s, 30, 0.05)


async def _state(s: aiohttp.ClientSession, eng: EngineProcess) -> dict:
    async with s.get(f"{eng.spec.url}/stub/state") as r:
        return await r.json()


async def _complete(s: aiohttp.ClientSession, eng: EngineProcess) -> str:
    async with s.post(f"{eng.spec.url}/v1/completions",
                      json={"model": "m", "prompt": [5] * 8, "max_tokens": 3}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["choices"][0]["text"]


@pytest.fixture
def node(tmp_path):
    path = tmp_path / "node0.json"
    FakeGpuNode.init(path, [0, 1, 2, 3], 80 * GiB, context_bytes=GiB // 2, activation_bytes=GiB)
    return path


def test_stub_refuses_a_start_when_free_memory_is_below_utilisation_times_total(tmp_path, node):
    """vLLM's request_memory: the old fixed --gpu-memory-utilization 0.9 refuses a second engine."""
    a = _engine(tmp_path, node, "--gpu-memory-utilization", "0.9", "--kv-cache-memory-bytes", str(4 * GiB))
    b = _engine(tmp_path, node, "--gpu-memory-utilization", "0.9", "--kv-cache-memory-bytes", str(4 * GiB))
    c = _engine(tmp_path, node, "--gpu-memory-utilization", "0.3", "--kv-cache-memory-bytes", str(4 * GiB))

    async def go():
        async with aiohttp.ClientSession() as s:
            await _up(a, s)
            with pytest.raises(EngineExited, match="less than desired GPU memory utilization"):
                await _up(b, s)
            await _up(c, s)  # its own share fits beside the first
            st = await _state(s, c)
            assert st["kv_bytes"] == 4 * GiB  # --kv-cache-memory-bytes is what it holds

    try:
        _run(go())
    finally:
        for e in (a, b, c):
            e.stop(1)
    free, _ = FakeGpuNode(node).free_bytes(0)
    assert free == 80 * GiB  # exited engines hold nothing


def test_stub_requires_tp_across_visible_devices_for_a_model_larger_than_one_gpu(tmp_path, node):
    one = _engine(tmp_path, node, base="llama2-70b", visible="0,1,2,3")  # no --tensor-parallel-size
    tp4 = _engine(tmp_path, node, "--tensor-parallel-size", "4", base="llama2-70b", visible="0,1,2,3")
    tp8 = _engine(tmp_path, node, "--tensor-parallel-size", "8", base="llama2-70b", visible="0,1,2,3")

    async def go():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(EngineExited, match="out of memory"):
                await _up(one, s)
            with pytest.raises(EngineExited, match="World size"):
                await _up(tp8, s)
            await _up(tp4, s)
            st = await _state(s, tp4)
            assert st["tp"] == 4 and st["devices"] == [0, 1, 2, 3]
            for d in range(4):
                free, total = FakeGpuNode(node).free_bytes(d)
                assert total - free >= 137961209856 // 4

    try:
        _run(go())
    finally:
        for e in (one, tp4, tp8):
            e.stop(1)


@pytest.mark.parametrize("level", [1, 2])
def test_stub_sleep_levels_and_garbage_weights_without_reload(tmp_path, node, level):
    eng = _engine(tmp_path, node, "--enable-sleep-mode", "--gpu-memory-utilization", "0.5")
    plain = _engine(tmp_path, node, "--gpu-memory-utilization", "0.3")

    async def go():
        async with aiohttp.ClientSession() as s:
            await _up(eng, s)
            await _up(plain, s)
            c = SleepModeClient(s, eng.spec.url)
            held = 80 * GiB - FakeGpuNode(node).free_bytes(0)[0]
            await c.sleep(level)
            assert await c.is_sleeping()
            await c.wake_up(["weights"])
            assert await c.is_sleeping()
            st = await _state(s, eng)
            assert st["weights_on"] and not st["kv_on"]
            await c.wake_up(["kv_cache"])
            assert not await c.is_sleeping()
            assert 80 * GiB - FakeGpuNode(node).free_bytes(0)[0] == held  # all back
            text = await _complete(s, eng)
            assert (text == "???") is (level == 2)  # level 2 without a reload: garbage
            await c.sleep(level)
            await c.wake_up(["weights"])
            if level == 2:
                await c.reload_weights()
            await c.wake_up(["kv_cache"])
            assert await _complete(s, eng) == "xxx"
            with pytest.raises(RuntimeError, match="Sleep mode is not enabled"):
                await SleepModeClient(s, plain.spec.url).sleep(1)

    try:
        _run(go())
    finally:
        eng.stop(1)
        plain.stop(1)


def test_stub_enforces_kv_size_and_block_rounding(tmp_path, node):
    per_token = 524288  # llama2-7b kv_bytes_per_token (configs/model)
    small = _engine(tmp_path, node, "--kv-cache-memory-bytes", str(1000 * per_token), "--block-size", "256",
                    "--max-model-len", "2048", "--gpu-memory-utilization", "0.3")
    ok = _engine(tmp_path, node, "--kv-cache-memory-bytes", str(2100 * per_token), "--block-size", "256",
                 "--max-model-len", "2048", "--gpu-memory-utilization", "0.3")

    async def go():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(EngineExited, match="max seq len"):
                await _up(small, s)
            await _up(ok, s)
            st = await _state(s, ok)
            assert st["kv_tokens"] == 2048 and st["block_size"] == 256  # 2100 tokens = 8 whole blocks of 256

    try:
        _run(go())
    finally:
        small.stop(1)
        ok.stop(1)


# ---- the GPU testbed on the stub -------------------------------------------------------------
def _replay(backend, policy, rows, until_s=20.0):
    ctrl = Controller(backend, policy, list(backend.state.models))
    info = backend.replay(workload(rows), ctrl, until_s)
    return info, backend.request_log()


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*.log"))


def test_colocated_instances_and_a_prewarm_beside_an_instance_all_start(tmp_path):
    """Finding 1: each engine asks for its own share, not 0.9 of the device."""
    b = gpu_stub_backend(tmp_path, models=SEVEN + [{"name": "c", "base": "llama2-7b"}], gpus=2, setup_ready=True)
    policy = Scripted([StartInstance("a", (0,), 0.5), StartInstance("b", (0,), 0.5),
                       StartInstance("c", (1,), 0.5), Prewarm("a", (1,))])
    info, log = _replay(b, policy, [(0.5, "a", 8, 3), (0.5, "b", 8, 3), (0.6, "c", 8, 3)])
    kinds = [e["kind"] for e in b.timeline_rows]
    assert "instance_failed" not in kinds, _logs(tmp_path)[-3000:]
    assert kinds.count("instance_ready") == 3 and "prewarm_done" in kinds
    assert (log.status == "ok").all()
    assert REGISTRY.live() == []


def test_start_waits_until_evicted_engines_have_exited_before_waking_kv(tmp_path):
    """Finding 1: the KV wake of a prewarmed start must not race the background kill of evicted replicas."""
    args = ["--startup-s", "0.1", "--prefill-ms-base", "5", "--decode-ms", "2", "--exit-delay-s", "1.5"]
    b = gpu_stub_backend(tmp_path, models=SEVEN, gpus=1, engine_args=args, setup_ready=True,
                         features={"memory_switching": True})
    # b is prewarmed once a's standby is asleep (a standby starts awake, its KV reserved until it sleeps)
    policy = Scripted([Prewarm("a", (0,))], launch={"a": StartInstance("a", (0,))}, later=[(0.0, Prewarm("b", (0,)))])
    info, log = _replay(b, policy, [(1.5, "a", 8, 3)])
    assert "prewarm_done" in [e["kind"] for e in b.timeline_rows if e["model"] == "b"]
    assert list(log.status) == ["ok"], _logs(tmp_path)[-3000:]
    assert log.start_kind.iloc[0] == "prewarmed"
    assert b.request_details().mechanism.iloc[0] == "sleep_wake"


def test_standby_kv_cache_fits_the_instance_it_becomes(tmp_path):
    """Finding 1: a standby's KV size comes from the plan (fixed at its start), not from 0.9 of the device."""
    b = gpu_stub_backend(tmp_path, models=SEVEN, gpus=1, setup_ready=True, features={"memory_switching": True})
    policy = Scripted([StartInstance("b", (0,), 0.5), Prewarm("a", (0,))],
                      launch={"a": StartInstance("a", (0,), 0.5)})
    info, log = _replay(b, policy, [(0.2, "a", 8, 3), (0.2, "b", 8, 3)])
    assert (log.status == "ok").all(), _logs(tmp_path)[-3000:]
    inst = [i for i in b.state.instances.values() if i.model == "a"][0]
    share = int(0.5 * b.settings.capacity_bytes)
    kv_per_gpu = inst.kv_blocks_total * 524288 * b.settings.kv_block_tokens
    assert kv_per_gpu <= share - b.state.models["a"].bytes_per_gpu


def test_tensor_parallel_instances_span_their_gpus(tmp_path):
    """Finding 2: a TP4 70B and a TP2 13B start on their GPUs (the stub OOMs a 70B on one GPU)."""
    models = [{"name": "big", "base": "llama2-70b"}, {"name": "mid", "base": "llama2-13b"}]
    b = gpu_stub_backend(tmp_path, models=models, gpus=8)
    policy = Scripted([StartInstance("big", (0, 1, 2, 3)), StartInstance("mid", (4, 5))])
    info, log = _replay(b, policy, [(0.3, "big", 8, 3), (0.3, "mid", 8, 3)])
    assert (log.status == "ok").all(), _logs(tmp_path)[-3000:]
    logs = _logs(tmp_path)
    assert "--tensor-parallel-size 4" in logs and "--tensor-parallel-size 2" in logs


def test_sleep_level_2_prewarm_reloads_weights_before_serving(tmp_path):
    """Finding 3: level 2 discards weights; the replica must reload them or it serves garbage."""
    b = gpu_stub_backend(tmp_path, models=SEVEN, gpus=1, sleep_level=2, setup_ready=True,
                         features={"memory_switching": True})
    policy = Scripted([Prewarm("a", (0,))], launch={"a": StartInstance("a", (0,))})
    info, log = _replay(b, policy, [(0.2, "a", 8, 3)])
    assert list(log.start_kind) == ["prewarmed"] and list(log.status) == ["ok"]
    assert "GARBAGE" not in _logs(tmp_path)


def test_kept_weights_sleep_and_cold_engines_have_sleep_mode(tmp_path):
    """Finding 4: a stop that keeps weights puts the engine to sleep (KV freed); the ledger credits weights
    only, so the device must hold only weights + context for it. Cold engines need --enable-sleep-mode."""
    b = gpu_stub_backend(tmp_path, models=SEVEN, gpus=1, features={"memory_switching": True})
    policy = Scripted([], launch={"a": StartInstance("a", (0,))}, stop_idle=True, stop_keep=True)
    info, log = _replay(b, policy, [(0.0, "a", 8, 3), (3.0, "a", 8, 3)])
    assert list(log.status) == ["ok", "ok"], _logs(tmp_path)[-3000:]
    assert log.start_kind.iloc[1] == "prewarmed"
    raw = b.process_samples()
    kept = raw[raw.instance_id < 0]
    assert len(kept), "the kept engine was sampled while it was a replica"
    weights = b.state.models["a"].bytes_per_gpu
    assert (kept.rss_bytes <= weights + b.settings.gpu.context_bytes).all()
    assert "--enable-sleep-mode" in _logs(tmp_path).split("\n")[0]


def test_nvml_sampling_on_gpus_indexes_by_gpu_id_and_feeds_utilization(tmp_path):
    """Finding 5: device cuda samples through NVML (here the fake NVML), by GPU id, with the columns
    utilization() reads."""
    from warmserve.testbed.utilization import NvmlSampler

    b = gpu_stub_backend(tmp_path, models=SEVEN, gpus=2, setup_ready=True)
    b.settings.slot_cores[:] = ["3", "5"]  # slot 0 is GPU 3, slot 1 is GPU 5
    for path in Path(b.settings.fake_gpu_dir).glob("node*.json"):
        FakeGpuNode.init(path, [3, 5], 80 * GiB, b.settings.gpu.context_bytes, b.settings.gpu.activation_bytes)
    policy = Scripted([StartInstance("a", (0,)), StartInstance("b", (1,))])
    info, log = _replay(b, policy, [(0.1, "a", 8, 800), (0.1, "b", 8, 800)], until_s=8.0)
    assert isinstance(b._sampler, NvmlSampler)
    raw = b.process_samples()
    assert set(raw.gpu) == {0, 1} and (raw.rss_bytes > b.state.models["a"].bytes_per_gpu).all()
    util = b.utilization(1.0)
    assert (util.weights_bytes == b.state.models["a"].bytes_per_gpu).all() and util.busy.max() > 0


def test_nvml_sampler_asks_nvml_for_the_slot_gpu_id():
    from types import SimpleNamespace

    from warmserve.testbed.utilization import NvmlSampler

    asked = []

    class Nvml:
        def nvmlDeviceGetHandleByIndex(self, i):  # noqa: N802
            asked.append(i)
            return i

        def nvmlDeviceGetUtilizationRates(self, h):  # noqa: N802
            return SimpleNamespace(gpu=40)

        def nvmlDeviceGetComputeRunningProcesses(self, h):  # noqa: N802
            return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=7)]

    s = NvmlSampler(lambda: {os.getpid(): ((0,), 9)}, {0: (Nvml(), 6)}, lambda: 1.0)
    s.sample_once()
    assert asked == [6]
    assert s.frame().to_dict("records") == [{"t_s": 1.0, "gpu": 0, "busy": 0.4, "rss_bytes": 7,
                                             "pid": os.getpid(), "instance_id": 9}]


def test_gpu_extra_declares_nvml_and_missing_pynvml_is_one_clear_error(monkeypatch):
    import sys
    import tomllib

    from warmserve.config import REPO_ROOT
    from warmserve.errors import InputError
    from warmserve.testbed.utilization import load_nvml

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("nvidia-ml-py") for d in extras["gpu"])
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(InputError, match=r"\.\[gpu\]"):
        load_nvml()


def test_engine_block_and_batch_args_come_from_the_hardware_profile(tmp_path):
    """Finding 9: --block-size / --max-num-batched-tokens of GPU engines = the profile's engine: block."""
    from omegaconf import OmegaConf

    from warmserve.config import configs_dir
    from warmserve.errors import InputError
    from warmserve.testbed.gpu_engine import PROFILE_FLAGS, check_no_second_copy

    gpu_args = OmegaConf.load(configs_dir() / "backend" / "testbed-gpu.yaml").engine.args
    assert not set(PROFILE_FLAGS.values()) & set(gpu_args)
    with pytest.raises(InputError, match="hardware profile"):
        check_no_second_copy(["--block-size", "16"], "cuda", {"kv_block_tokens": 256})
    with pytest.raises(InputError, match="disagrees"):
        check_no_second_copy(["--max-num-seqs", "64"], "cpu", {"max_num_seqs": 32})
    b = gpu_stub_backend(tmp_path, models=SEVEN[:1], gpus=1)
    policy = Scripted([StartInstance("a", (0,))])
    _replay(b, policy, [(0.3, "a", 8, 3)])
    hw = OmegaConf.load(configs_dir() / "hardware" / "a100-80gb.yaml").engine
    first = _logs(tmp_path).split("\n")[0]
    assert f"--block-size {hw.kv_block_tokens}" in first
    assert f"--max-num-batched-tokens {hw.max_num_batched_tokens}" in first


def test_main_preset_smallest_point_runs_end_to_end_on_fake_gpus(tmp_path):
    """backend=testbed-stub-gpu runs the `main` preset's smallest point (conv, 1 req/s, WarmServe, paper4 on
    2x8 A100-80GB; 20 s of replay here) through the runner: every request served, starts by sleep/wake."""
    import json
    import subprocess
    import sys

    import pandas as pd

    from warmserve.config import REPO_ROOT

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "warmserve.run", "+experiment=main", "hydra.mode=RUN", "backend=testbed-stub-gpu",
           "system=warmserve", "workload=conv", "workload.rps=1", "workload.source.scale=0.1", "replay_s=20",
           "drain_s=30", "backend.slots.cores=[0,1,2,3,4,5,6,7,0,1,2,3,4,5,6,7]",
           f"backend.log_dir={tmp_path / 'logs'}", f"out={out}", "progress=false", "trace=false"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["backend"]["device"] == "cuda" and run["backend"]["fake_gpu"] is True
    req = pd.read_parquet(out / "requests.parquet")
    tl = pd.read_parquet(out / "timeline.parquet")
    assert len(req) > 0 and (req.status == "ok").all(), req.status.value_counts()
    assert "instance_failed" not in set(tl.kind)
    assert set(run["backend"]["starts_by_mechanism"]) <= {"sleep_wake", "prespawned_process", "process_start"}
    assert len(pd.read_parquet(out / "utilization.parquet")) > 0


def test_gpu_smoke_checks_pass_on_fake_gpus(tmp_path, capsys):
    """scripts/gpu_smoke.sh's checks (FAKE=1 path) without the 60 s replay: one PASS line each."""
    from warmserve.testbed.gpu_smoke import main

    assert main(["--fake", "--gpus", "2", "--out", str(tmp_path), "--only", "two_models_one_gpu", "tp2", "nvml"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(" PASS " in line for line in lines), lines
