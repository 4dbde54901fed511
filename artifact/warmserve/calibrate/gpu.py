"""Torch-only GPU calibration (no vLLM needed): what the twin's GPU profiles need.

* host-to-device bandwidth, pageable and pinned source (``torch`` copies, CUDA events);
* CUDA virtual-memory map/unmap cost per 2 MiB chunk (``cuMemCreate`` /
  ``cuMemAddressReserve`` / ``cuMemMap`` + ``cuMemSetAccess`` / ``cuMemUnmap``,
  the published memory-switching path, docs/reference.md §7.1) through ``cuda-python``
  (``cuda.bindings.driver`` from 12.6.1 on, ``cuda.cuda`` before), skipped with a note when it
  is not installed, and recorded as a driver error (not raised) when the driver refuses, so
  the other measurements are still written;
* prefill and decode-step time of a random-weight Llama stack at real sizes
  (``transformers`` ``LlamaForCausalLM`` built from ``configs/model/<base>.yaml``, MLP width
  its ``intermediate``; built directly in fp16, never in fp32 first, which would double the
  peak memory; eager), fitted to the twin's latency form.

**Not exercised on a GPU in this project** (no GPU was available to the task
that wrote it); its logic runs on the CPU in the tests with tiny sizes
(``device="cpu"``), and the CUDA-only parts refuse to run without CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from warmserve.calibrate.fit import fit_decode, fit_prefill
from warmserve.config import model_checkpoint
from warmserve.errors import InputError

CHUNK = 2 * 2**20  # 2 MiB granularity, as the published VMM pool (docs/reference.md §7.1)
LLAMA2_VOCAB = 32000  # tokenizer size of every Llama-2 (HF config.json vocab_size) for configs without `vocab`
LLAMA2_MAX_POSITION = 4096  # Llama-2 context (HF config.json max_position_embeddings) for configs without it
HEADROOM = 1.3  # estimate: peak bytes of the timed stack / its fp16 weights (activations and KV of the
                # largest timed batch beside the weights); decides whether the whole depth fits the GPU


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def h2d_GBps(nbytes: int = 1 << 30, pinned: bool = True, repeats: int = 5) -> float:
    """Best-of host-to-device copy bandwidth in GB/s (1e9)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("h2d_GBps needs CUDA")
    src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst.copy_(src, non_blocking=pinned)  # warm-up
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src, non_blocking=pinned)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return nbytes / best / 1e9


def cuda_driver() -> Any | None:
    """cuda-python's driver module: ``cuda.bindings.driver`` (12.6.1 and later), else the older
    ``cuda.cuda`` (before 12.6.1 the only path; deprecated later); None if cuda-python is absent."""
    try:
        from cuda.bindings import driver  # noqa: PLC0415 - optional dependency
    except ImportError:
        try:
            from cuda import cuda as driver  # noqa: PLC0415 - cuda-python < 12.6.1
        except ImportError:
            return None
    return driver


def measure_vmm(log=print, chunks: int = 512, device: int = 0, driver: Any | None = None) -> dict:
    """The VMM timing with its status: ``measured``, ``not_installed`` or ``driver_error`` (with the
    error). A driver error is recorded, never raised: the rest of the calibration goes on."""
    cu = driver if driver is not None else cuda_driver()
    if cu is None:
        log("cuda-python not installed (pip install cuda-python): CUDA VMM map/unmap not measured")
        return {"status": "not_installed"}
    try:
        res = vmm_map_unmap(cu, chunks, device)
    except Exception as exc:  # noqa: BLE001 - a driver refusal must not abort the calibration
        log(f"CUDA VMM map/unmap failed, not measured: {exc}")
        return {"status": "driver_error", "error": str(exc)}
    log(f"VMM map {res['map_s_per_chunk'] * 1e6:.1f} us/chunk")
    return {"status": "measured", **res}


def vmm_map_unmap(cu: Any, chunks: int = 512, device: int = 0) -> dict[str, float]:
    """Seconds per 2 MiB chunk to map (cuMemMap + cuMemSetAccess) and unmap, through driver module ``cu``."""

    def ok(res):
        err, *rest = res if isinstance(res, tuple) else (res,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA driver error {err}")
        return rest[0] if len(rest) == 1 else rest

    ok(cu.cuInit(0))
    dev = ok(cu.cuDeviceGet(device))
    ctx = ok(cu.cuDevicePrimaryCtxRetain(dev))
    ok(cu.cuCtxSetCurrent(ctx))
    prop = cu.CUmemAllocationProp()
    prop.type = cu.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
    prop.location.type = cu.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
    prop.location.id = device
    gran = ok(cu.cuMemGetAllocationGranularity(
        prop, cu.CUmemAllocationGranularity_flags.CU_MEM_ALLOC_GRANULARITY_MINIMUM))
    size = max(CHUNK, int(gran))
    handles = [ok(cu.cuMemCreate(size, prop, 0)) for _ in range(chunks)]
    va = ok(cu.cuMemAddressReserve(size * chunks, 0, 0, 0))
    access = cu.CUmemAccessDesc()
    access.location = prop.location
    access.flags = cu.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_READWRITE
    t = time.perf_counter()
    for i, h in enumerate(handles):
        ok(cu.cuMemMap(int(va) + i * size, size, 0, h, 0))
        ok(cu.cuMemSetAccess(int(va) + i * size, size, [access], 1))
    map_s = (time.perf_counter() - t) / chunks
    t = time.perf_counter()
    for i in range(chunks):
        ok(cu.cuMemUnmap(int(va) + i * size, size))
    unmap_s = (time.perf_counter() - t) / chunks
    ok(cu.cuMemAddressFree(va, size * chunks))
    for h in handles:
        ok(cu.cuMemRelease(h))
    return {"chunk_bytes": size, "map_s_per_chunk": map_s, "unmap_s_per_chunk": unmap_s,
            "mapping_s_per_GB": map_s * 1e9 / size}


def llama_config_kwargs(base: str, layers: int | None = None) -> dict[str, int]:
    """``LlamaConfig`` sizes of ``base`` from ``configs/model/<base>.yaml`` (MLP width = its ``intermediate``;
    the old 4h x 2/3 rule gives 10752 / 13568 / 21760 instead of Llama-2's 11008 / 13824 / 28672)."""
    mc = model_checkpoint(base)
    if "intermediate" not in mc:
        raise InputError(f"configs/model/{base}.yaml: no 'intermediate' (the MLP width, HF config.json "
                         "intermediate_size); the GPU calibration builds the model at its real sizes")
    return {"hidden_size": int(mc.hidden), "num_hidden_layers": int(layers or mc.layers),
            "num_attention_heads": int(mc.heads), "num_key_value_heads": int(mc.kv_heads),
            "intermediate_size": int(mc.intermediate), "vocab_size": int(mc.get("vocab", LLAMA2_VOCAB)),
            "max_position_embeddings": int(mc.get("max_position", LLAMA2_MAX_POSITION))}


def llama_stack(base: str, device: str, dtype: str = "float16", layers: int | None = None):
    """A random-weight ``LlamaForCausalLM`` at ``base``'s real sizes (``layers`` may cut depth for tests),
    created in ``dtype`` on ``device`` (default dtype switched while building: no fp32 copy ever exists)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**llama_config_kwargs(base, layers))
    prev = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    return model, int(model_checkpoint(base).layers) / cfg.num_hidden_layers


def time_llama(model, device: str, prefill_tokens: tuple[int, ...], decode_batches: tuple[int, ...],
               ctx: int = 256, repeats: int = 3, depth_scale: float = 1.0,
               clock: Callable[[], float] = time.perf_counter) -> dict:
    """Prefill ms by prompt tokens and decode-step ms by batch, fitted to the twin's form."""
    import torch

    vocab = model.config.vocab_size
    pre_t, pre_ms = [], []
    dec_b, dec_ctx, dec_ms = [], [], []
    with torch.inference_mode():
        for n in prefill_tokens:
            ids = torch.randint(3, vocab, (1, n), device=device)
            model(ids)  # warm-up
            _sync(device)
            best = float("inf")
            for _ in range(repeats):
                t = clock()
                model(ids)
                _sync(device)
                best = min(best, clock() - t)
            pre_t.append(n)
            pre_ms.append(best * 1e3 * depth_scale)
        for b in decode_batches:
            ids = torch.randint(3, vocab, (b, ctx), device=device)
            out = model(ids, use_cache=True)
            past = out.past_key_values
            nxt = torch.randint(3, vocab, (b, 1), device=device)
            _sync(device)
            best = float("inf")
            for _ in range(repeats):
                t = clock()
                model(nxt, past_key_values=past, use_cache=True)
                _sync(device)
                best = min(best, clock() - t)
                if hasattr(past, "crop"):
                    past.crop(ctx)  # drop the token just appended, so every repeat sees the same context
            dec_b.append(b)
            dec_ctx.append(b * ctx)
            dec_ms.append(best * 1e3 * depth_scale)
    return {"prefill": list(zip(pre_t, pre_ms, strict=True)),
            "decode": list(zip(dec_b, dec_ctx, dec_ms, strict=True)),
            "fit": {**fit_prefill(pre_t, pre_ms), **fit_decode(dec_b, dec_ctx, dec_ms)}}


def run_gpu(bases: list[str], repeats: int = 3, log=print) -> dict:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("--mode gpu needs a CUDA device (torch.cuda.is_available() is False)")
    out: dict = {"device_name": torch.cuda.get_device_name(0)}
    out["h2d_pinned_GBps"] = h2d_GBps(pinned=True)
    out["h2d_pageable_GBps"] = h2d_GBps(pinned=False)
    log(f"H2D pinned {out['h2d_pinned_GBps']:.1f} GB/s, pageable {out['h2d_pageable_GBps']:.1f} GB/s")
    out["vmm"] = measure_vmm(log)
    free, total = torch.cuda.mem_get_info()
    out["gpu_mem_bytes"] = int(total)
    out["latency"] = {}
    for base in bases:
        mc = model_checkpoint(base)
        need = int(mc.weight_bytes) * HEADROOM
        layers = None if need < free else max(1, int(int(mc.layers) * free / need))
        model, scale = llama_stack(base, "cuda", layers=layers)
        res = time_llama(model, "cuda", (128, 512, 1024, 2048), (1, 8, 32, 64), repeats=repeats, depth_scale=scale)
        out["latency"][base] = {"layers_run": model.config.num_hidden_layers, "depth_scale": scale, **res}
        log(f"{base}: {res['fit']}")
        del model
        torch.cuda.empty_cache()
    return out
