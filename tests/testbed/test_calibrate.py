"""Calibration logic that runs without vLLM or a GPU: fits, start split, the GPU mode's Llama timing."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmserve.calibrate.fit import bandwidth_GBps, fit_decode, fit_prefill, split_start


@given(st.floats(0, 50), st.floats(0, 1), st.lists(st.integers(1, 4096), min_size=3, max_size=8, unique=True))
def test_prefill_fit_recovers_a_noiseless_line(base, slope, tokens):
    ms = [base + slope * t for t in tokens]
    fit = fit_prefill(tokens, ms)
    assert fit["prefill_base_ms"] == pytest.approx(base, abs=1e-3 + 1e-6 * base)
    assert fit["prefill_per_token_ms"] == pytest.approx(slope, abs=1e-5)


def test_decode_fit_is_non_negative_and_recovers_coefficients():
    batch, ctx = [1, 4, 16, 1, 4], [80, 320, 1280, 780, 3120]
    ms = [10 + 0.5 * b + 0.001 * c for b, c in zip(batch, ctx, strict=True)]
    fit = fit_decode(batch, ctx, ms)
    assert fit["decode_base_ms"] == pytest.approx(10, abs=1e-3)
    assert fit["decode_per_seq_ms"] == pytest.approx(0.5, abs=1e-4)
    assert fit["decode_per_ctx_token_ms"] == pytest.approx(0.001, abs=1e-6)
    falling = fit_decode([1, 2, 4], [10, 20, 40], [10, 9, 8])  # noise that slopes down
    assert min(falling.values()) >= 0


def test_start_split_and_bandwidth():
    assert split_start(cold_s=40, worker_s=15, load_s=0.5) == {"process_start_s": 25, "engine_init_s": 14.5}
    assert split_start(cold_s=10, worker_s=12, load_s=20) == {"process_start_s": 0, "engine_init_s": 0}
    assert bandwidth_GBps(2e9, 4) == 0.5
    with pytest.raises(ValueError):
        bandwidth_GBps(1, 0)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers (testbed extra) absent")
def test_gpu_mode_llama_timing_runs_on_cpu_with_a_cut_stack():
    """The GPU mode's model timing, on the CPU with a 1-layer cut of tiny-s (logic only, not a GPU number)."""
    from warmserve.calibrate.gpu import llama_stack, time_llama

    model, scale = llama_stack("tiny-s", "cpu", dtype="float32", layers=1)
    assert scale == 4  # tiny-s has 4 layers: times are scaled to the full depth
    res = time_llama(model, "cpu", (8, 32), (1, 2), ctx=16, repeats=1, depth_scale=scale)
    assert len(res["prefill"]) == 2 and len(res["decode"]) == 2
    assert all(v >= 0 for v in res["fit"].values())


def test_gpu_mode_refuses_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from warmserve.calibrate.gpu import h2d_GBps, run_gpu

    with pytest.raises(RuntimeError, match="CUDA"):
        h2d_GBps(1024)
    with pytest.raises(RuntimeError, match="CUDA"):
        run_gpu(["tiny-s"])


def _raw(base: str) -> dict:
    return {"base": base, "weight_bytes": 2_300_000_000, "file_bytes": 44_000_000, "cold_s": 60.0,
            "cold_load_s": 0.1, "engine_rss_bytes": 2_300_000_000, "promote_s": 0.001, "import_s": 20.0,
            "worker_s": 40.0, "worker_load_s": 0.2,
            "prefill": [[16, 60.0], [512, 200.0], [2048, 600.0]],
            "decode": [[1, 76, 20.0], [4, 304, 22.0], [16, 1216, 30.0], [1, 780, 21.0]]}


def test_cpu_profile_is_a_valid_twin_hardware_profile():
    """The written YAML loads with the twin's own profile loader and says how it was made."""
    from omegaconf import OmegaConf

    from warmserve.calibrate.profile import cpu_profile
    from warmserve.hardware import load_profile

    raw = {"tiny-s": _raw("tiny-s"), "tiny-m": _raw("tiny-m"), "_memcpy_GBps": 10.0}
    engine = {"args": ["--max-num-seqs", "32", "--max-model-len", "2048", "--max-num-batched-tokens", "4096",
                       "--kv-cache-memory-bytes", "268435456"]}
    text = cpu_profile(raw, "python -m warmserve.calibrate --x", "cpu-testbed", engine, 4 * 2**30)
    assert "python -m warmserve.calibrate --x" in text and "MEASURED on" in text
    cfg = OmegaConf.create(text)
    prof = load_profile(cfg)
    assert prof is not None
    assert cfg.lifecycle.process_start_s == 20.0 and cfg.lifecycle.engine_init_s == pytest.approx(39.8)
    assert cfg.nvme_GBps == pytest.approx(2 * 2.3e9 / 0.4 / 1e9, rel=1e-3)
    assert set(cfg.latency) == {"tiny-s", "tiny-m"} and cfg.engine.max_num_batched_tokens == 4096


# ---- the GPU mode's fixes (run without torch, transformers or cuda-python: fakes stand in) ----
def test_gpu_calibration_uses_the_real_llama2_mlp_sizes():
    """Finding 7: 11008 / 13824 / 28672 (configs/model intermediate), not 4h x 2/3 rounded."""
    from warmserve.calibrate.gpu import llama_config_kwargs

    sizes = {b: llama_config_kwargs(b)["intermediate_size"] for b in ("llama2-7b", "llama2-13b", "llama2-70b")}
    assert sizes == {"llama2-7b": 11008, "llama2-13b": 13824, "llama2-70b": 28672}
    assert llama_config_kwargs("llama2-70b", layers=2)["num_hidden_layers"] == 2


def _fake_torch_and_transformers(monkeypatch) -> list:
    """Just enough torch / transformers for llama_stack: records the default dtype at construction."""
    import contextlib
    import sys
    import types

    seen: list = []
    torch = types.ModuleType("torch")
    torch.float16, torch.float32 = "float16", "float32"
    torch._default = "float32"
    torch.get_default_dtype = lambda: torch._default
    torch.set_default_dtype = lambda d: setattr(torch, "_default", d)
    torch.device = lambda dev: contextlib.nullcontext()
    tf = types.ModuleType("transformers")

    class LlamaConfig:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class LlamaForCausalLM:
        def __init__(self, cfg):
            self.config = cfg
            seen.append(("built", torch._default))

        def to(self, *a, **kw):
            seen.append(("to", a, kw))
            return self

        def eval(self):
            return self

    tf.LlamaConfig, tf.LlamaForCausalLM = LlamaConfig, LlamaForCausalLM
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "transformers", tf)
    return seen


def test_gpu_calibration_builds_the_stack_in_fp16_directly(monkeypatch):
    """Finding 6: building in fp32 and casting doubles the peak (70B never fits); no fp32 copy may exist."""
    from warmserve.calibrate.gpu import llama_stack

    seen = _fake_torch_and_transformers(monkeypatch)
    model, scale = llama_stack("llama2-70b", "cuda", layers=8)
    assert seen == [("built", "float16")]
    assert scale == 10 and model.config.intermediate_size == 28672
    import sys

    assert sys.modules["torch"].get_default_dtype() == "float32"  # restored


def test_vmm_timing_takes_the_old_cuda_python_path_and_records_a_driver_error(monkeypatch):
    """Finding 8: cuda-python < 12.6.1 has only `from cuda import cuda`; a driver error is recorded, the
    calibration goes on (it used to abort before writing anything, or claim cuda-python was missing)."""
    import sys
    import types

    from warmserve.calibrate.gpu import cuda_driver, measure_vmm
    from warmserve.calibrate.profile import gpu_profile_summary

    old = types.ModuleType("cuda")
    old.cuda = types.SimpleNamespace(cuInit=lambda flags: (101,))  # CUDA_ERROR_INVALID_DEVICE
    monkeypatch.setitem(sys.modules, "cuda", old)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    assert cuda_driver() is old.cuda
    logged: list[str] = []
    res = measure_vmm(logged.append)
    assert res["status"] == "driver_error" and "101" in res["error"]
    assert logged and "not installed" not in logged[0]
    monkeypatch.setitem(sys.modules, "cuda", None)
    assert measure_vmm(logged.append) == {"status": "not_installed"}
    raw = {"device_name": "fake", "h2d_pinned_GBps": 25.0, "h2d_pageable_GBps": 10.0, "gpu_mem_bytes": 1,
           "vmm": res, "latency": {}}
    text = gpu_profile_summary(raw, "cmd")
    assert "driver error" in text and "mapping_s_per_GB" not in text
