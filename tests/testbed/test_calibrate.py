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
    from warmserve.sim.profile import load_profile

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
