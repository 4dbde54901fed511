"""The hardware profile: ``configs/hardware/<name>.yaml``, validated and typed.

One typed profile for everything that reads hardware: the twin (``warmserve.sim``),
the policies (``warmserve.control``, through ``PolicyInputs.hardware``) and the
start-up checks (``warmserve.validation``). It lives at the package's top level,
beside ``config``, because the control layer may not import the twin (``tests/test_imports.py``
LAYERS) and every consumer must parse the YAML the same way.

A profile missing a field, a negative bandwidth or a model whose (base, TP)
has no latency entry is an ``InputError`` naming the field, raised before
anything runs. The values' provenance is in the YAML comments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from warmserve.cluster.rules import kv_block_bytes
from warmserve.control.mps import ShareModel
from warmserve.control.seam import ModelSpec, min_kv_blocks
from warmserve.errors import InputError

LINK_FIELDS = ("pcie_h2d_GBps", "pcie_d2h_GBps", "pcie_switch_uplink_GBps", "host_mem_GBps", "nvme_GBps", "hbm_GBps")
LIFECYCLE_FIELDS = ("process_start_s", "cuda_context_s", "engine_init_s", "engine_attach_s",
                    "tp_comm_setup_s", "mapping_s_per_GB", "kv_alloc_s")
ENGINE_FIELDS = ("max_num_seqs", "max_num_batched_tokens", "kv_block_tokens", "max_model_len")
SCHEDULERS = ("prefill_first", "mixed")
PREWARM_MECHANISMS = ("vmm", "sleep")  # docs/lifecycle.md §4
LATENCY_FIELDS = ("prefill_base_ms", "prefill_per_token_ms", "decode_base_ms", "decode_per_seq_ms",
                  "decode_per_ctx_token_ms")


@dataclass(frozen=True, slots=True)
class Latency:
    """Iteration latency of one (model base, TP) in seconds (the YAML is in ms)."""

    prefill_base: float
    prefill_per_token: float
    decode_base: float
    decode_per_seq: float
    decode_per_ctx_token: float

    def prefill_s(self, tokens: int) -> float:
        return self.prefill_base + self.prefill_per_token * tokens


@dataclass(frozen=True, slots=True)
class Lifecycle:
    process_start_s: float
    cuda_context_s: float
    engine_init_s: float
    engine_attach_s: float
    tp_comm_setup_s: float
    mapping_s_per_GB: float
    kv_alloc_s: float
    # Optional (defaults = the GPU profiles' published behaviour):
    prewarm_is_engine: bool = False  # a prewarmed replica is a whole started engine (CPU testbed, no sleep
    #                                  mode): prewarming costs process start + engine init before its load
    busy_start_slowdown: float = 1.0  # engine starts (process start + engine init) take this much longer when
    #                                   another engine process runs on the node (CPU testbed: shared cores)
    worker_pool_per_node: int | None = None  # pre-spawned processes per node; None = unbounded (published:
    #                                          32 per node, more than its GPUs)
    worker_refill_s: float | None = None  # a replacement pre-spawned process is ready this long after it is
    #                                       spawned (its import); None = process_start_s
    engine_init_s_per_GB: float = 0.0  # engine_init grows by this per GB of weights on the GPU (fitted on 7B/13B)
    prewarm_mechanism: str = "vmm"  # "vmm": weights resident on the GPU (the paper's memory switching);
    #                                 "sleep": upstream vLLM sleep level 1, weights in pinned host memory
    sleep_wake_s: float | None = None  # fixed part of a level-1 wake (the copy of the weights is a flow); sleep only
    kv_map_pause_s: float = 0.0  # background KV mapping pauses this long ...
    kv_map_pause_bytes: int | None = None  # ... after every this many bytes (None = no pauses)
    cold_scale: float = 1.0  # sensitivity knob: multiplies the engine start-up of cold and worker starts
    prewarm_scale: float = 1.0  # sensitivity knob: multiplies the fixed costs of a prewarmed start

    @property
    def sleeps(self) -> bool:
        """Prewarmed replicas are sleeping engines (weights in pinned host memory), not resident weights."""
        return self.prewarm_mechanism == "sleep"


@dataclass(frozen=True, slots=True)
class EngineLimits:
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_block_tokens: int
    max_model_len: int
    scheduler: str = "prefill_first"  # "prefill_first" (vLLM 0.6, the published engine) or "mixed" (vLLM V1:
    #                                  running sequences decode in the same step as admitted prefills)
    kv_cache_bytes: int | None = None  # KV cache per instance when the engine is given a fixed size (vLLM's
    #                                    --kv-cache-memory-bytes); None = the memory left after the weights


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: str
    gpu_mem_bytes: int
    gpu_mem_utilization: float
    pcie_h2d_Bps: float
    pcie_d2h_Bps: float
    h2d_slowdown_under_d2h: float
    gpus_per_pcie_switch: int
    switch_uplink_Bps: float
    host_mem_Bps: float
    nvme_Bps: float
    host_cache_bytes: int
    lifecycle: Lifecycle
    engine: EngineLimits
    compute_sharing: ShareModel  # colocated instances' SM shares -> iteration slowdown (warmserve.control.mps)
    latency: Mapping[tuple[str, int], Latency]
    placeholder: bool = False
    host_dram_bytes: int | None = None  # per node; bounds the pinned weights of sleeping replicas
    vllm_loader_Bps: float | None = None  # per-shard rate of vLLM's own loader from storage (None = links only)

    @property
    def pcie_h2d_GBps(self) -> float:
        """Host-to-device link rate in GB/s, as the YAML states it (the unit the policies' knobs use)."""
        return self.pcie_h2d_Bps / 1e9

    @property
    def pool_bytes(self) -> int:
        """Per-GPU memory usable by weights + KV (the published pool = utilisation x memory)."""
        return int(self.gpu_mem_bytes * self.gpu_mem_utilization)

    def latency_of(self, spec: ModelSpec) -> Latency:
        return self.latency[(spec.base, spec.tp)]


def _num(cfg: Mapping[str, Any], key: str, where: str, *, positive: bool = False) -> float:
    if key not in cfg or cfg[key] is None:
        raise InputError(f"{where}: missing field '{key}'")
    try:
        v = float(cfg[key])
    except (TypeError, ValueError):
        raise InputError(f"{where}.{key}: not a number: {cfg[key]!r}") from None
    if v < 0 or (positive and v == 0):
        raise InputError(f"{where}.{key}: must be {'> 0' if positive else '>= 0'}, got {v}")
    return v


def load_profile(cfg: DictConfig | Mapping[str, Any] | HardwareProfile) -> HardwareProfile:
    """Validate and type a hardware config (``cfg.hardware``); an already typed profile is returned as is."""
    if isinstance(cfg, HardwareProfile):
        return cfg
    c: dict[str, Any] = (cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
                         if isinstance(cfg, DictConfig) else dict(cfg))
    assert isinstance(c, dict)
    w = f"hardware '{c.get('name', '?')}'"
    for key in ("lifecycle", "engine", "latency"):
        if not isinstance(c.get(key), dict):
            raise InputError(f"{w}: missing section '{key}'")
    util = _num(c, "gpu_mem_utilization", w, positive=True)
    if util > 1:
        raise InputError(f"{w}.gpu_mem_utilization: must be <= 1, got {util}")
    links = {k: _num(c, k, w, positive=True) for k in LINK_FIELDS}
    slow = _num(c, "h2d_slowdown_under_d2h", w)
    if slow >= 1:
        raise InputError(f"{w}.h2d_slowdown_under_d2h: must be < 1, got {slow}")
    lc = c["lifecycle"]
    pool = lc.get("worker_pool_per_node")
    if pool is not None and (not isinstance(pool, int) or isinstance(pool, bool) or pool < 0):
        raise InputError(f"{w}.lifecycle.worker_pool_per_node: must be null or an integer >= 0, got {pool!r}")
    life = _lifecycle(lc, f"{w}.lifecycle", pool)
    if life.sleeps and c.get("host_dram_bytes") is None:
        raise InputError(f"{w}.host_dram_bytes: needed by lifecycle.prewarm_mechanism=sleep (pinned weights)")
    sched = str(c["engine"].get("scheduler", "prefill_first"))
    if sched not in SCHEDULERS:
        raise InputError(f"{w}.engine.scheduler: must be one of {SCHEDULERS}, got {sched!r}")
    kv_fixed = c["engine"].get("kv_cache_bytes")
    eng = EngineLimits(**{k: int(_num(c["engine"], k, f"{w}.engine", positive=True)) for k in ENGINE_FIELDS},
                       scheduler=sched,
                       kv_cache_bytes=None if kv_fixed is None
                       else int(_num(c["engine"], "kv_cache_bytes", f"{w}.engine", positive=True)))
    lat: dict[tuple[str, int], Latency] = {}
    for base, per_tp in c["latency"].items():
        for tpkey, coeffs in dict(per_tp).items():
            where = f"{w}.latency.{base}.{tpkey}"
            if not str(tpkey).startswith("tp") or not str(tpkey)[2:].isdigit():
                raise InputError(f"{where}: key must look like 'tp<N>'")
            v = [_num(coeffs, k, where) / 1e3 for k in LATENCY_FIELDS]
            lat[(str(base), int(str(tpkey)[2:]))] = Latency(*v)
    return HardwareProfile(
        name=str(c.get("name", "?")),
        gpu_mem_bytes=int(_num(c, "gpu_mem_bytes", w, positive=True)),
        gpu_mem_utilization=util,
        pcie_h2d_Bps=links["pcie_h2d_GBps"] * 1e9,
        pcie_d2h_Bps=links["pcie_d2h_GBps"] * 1e9,
        h2d_slowdown_under_d2h=slow,
        gpus_per_pcie_switch=int(_num(c, "gpus_per_pcie_switch", w, positive=True)),
        switch_uplink_Bps=links["pcie_switch_uplink_GBps"] * 1e9,
        host_mem_Bps=links["host_mem_GBps"] * 1e9,
        nvme_Bps=links["nvme_GBps"] * 1e9,
        host_cache_bytes=int(_num(c, "host_cache_bytes", w)),
        lifecycle=life,
        engine=eng,
        compute_sharing=ShareModel.from_config(c.get("compute_sharing"), w),
        latency=lat,
        placeholder=bool(c.get("placeholder", False)),
        host_dram_bytes=None if c.get("host_dram_bytes") is None else int(_num(c, "host_dram_bytes", w, positive=True)),
        vllm_loader_Bps=None if c.get("vllm_loader_GBps") is None
        else _num(c, "vllm_loader_GBps", w, positive=True) * 1e9,
    )


def _opt(lc: Mapping[str, Any], key: str, where: str, default: float, *, positive: bool = False) -> float:
    """An optional lifecycle number (absent or null = ``default``, the GPU profiles' documented behaviour)."""
    return default if lc.get(key) is None else _num(lc, key, where, positive=positive)


def _lifecycle(lc: Mapping[str, Any], where: str, pool: int | None) -> Lifecycle:
    """Validate the ``lifecycle`` block (docs/lifecycle.md lists every field and its source)."""
    mech = str(lc.get("prewarm_mechanism", "vmm"))
    if mech not in PREWARM_MECHANISMS:
        raise InputError(f"{where}.prewarm_mechanism: must be one of {PREWARM_MECHANISMS}, got {mech!r}")
    prewarm_is_engine = bool(lc.get("prewarm_is_engine", False))
    if mech == "sleep" and prewarm_is_engine:
        raise InputError(f"{where}: prewarm_mechanism=sleep and prewarm_is_engine=true exclude each other")
    if mech == "sleep" and lc.get("sleep_wake_s") is None:
        raise InputError(f"{where}.sleep_wake_s: needed by prewarm_mechanism=sleep")
    pause_bytes = lc.get("kv_map_pause_bytes")
    return Lifecycle(
        **{k: _num(lc, k, where) for k in LIFECYCLE_FIELDS},
        prewarm_is_engine=prewarm_is_engine, worker_pool_per_node=pool,
        busy_start_slowdown=_opt(lc, "busy_start_slowdown", where, 1.0, positive=True),
        worker_refill_s=None if lc.get("worker_refill_s") is None else _num(lc, "worker_refill_s", where),
        engine_init_s_per_GB=_opt(lc, "engine_init_s_per_GB", where, 0.0),
        prewarm_mechanism=mech,
        sleep_wake_s=None if lc.get("sleep_wake_s") is None else _num(lc, "sleep_wake_s", where),
        kv_map_pause_s=_opt(lc, "kv_map_pause_s", where, 0.0),
        kv_map_pause_bytes=None if pause_bytes is None else int(_num(lc, "kv_map_pause_bytes", where, positive=True)),
        cold_scale=_opt(lc, "cold_scale", where, 1.0, positive=True),
        prewarm_scale=_opt(lc, "prewarm_scale", where, 1.0, positive=True),
    )


def check_models_fit(hw: HardwareProfile, models: Mapping[str, ModelSpec], gpus_per_node: int) -> None:
    """Every served model must have a latency entry, fit a GPU at its TP and fit a node."""
    for name, spec in models.items():
        if spec.tp > gpus_per_node:
            raise InputError(f"model {name}: tp={spec.tp} exceeds cluster.gpus_per_node={gpus_per_node}")
        if (spec.base, spec.tp) not in hw.latency:
            raise InputError(f"hardware '{hw.name}'.latency.{spec.base}.tp{spec.tp}: missing (model {name})")
        # the KV every start needs (SimBackend.start_instance refuses fewer blocks with CapacityError)
        block = kv_block_bytes(spec, hw.engine.kv_block_tokens)
        blocks = min_kv_blocks(hw.engine.max_model_len, hw.engine.kv_block_tokens)
        need = spec.bytes_per_gpu + block * blocks
        if need > hw.pool_bytes:
            raise InputError(
                f"model {name}: weights {spec.bytes_per_gpu / 2**30:.1f} GiB/GPU at tp={spec.tp} plus KV for one "
                f"max_model_len sequence and a block do not fit hardware '{hw.name}' pool "
                f"{hw.pool_bytes / 2**30:.1f} GiB/GPU")
        if hw.engine.kv_cache_bytes is not None and hw.engine.kv_cache_bytes // block < blocks:
            raise InputError(f"model {name}: hardware '{hw.name}'.engine.kv_cache_bytes={hw.engine.kv_cache_bytes} "
                             f"holds fewer than the {blocks} KV blocks of one max_model_len sequence and a block")


def cluster_shape(cluster: Any) -> tuple[int, int]:
    """``(nodes, gpus_per_node)`` of a cluster config, validated."""
    c = dict(cluster) if not isinstance(cluster, DictConfig) else {k: cluster[k] for k in cluster}
    out = []
    for key in ("nodes", "gpus_per_node"):
        if key not in c:
            raise InputError(f"cluster: missing field '{key}'")
        try:
            v = int(c[key])
        except (TypeError, ValueError):
            raise InputError(f"cluster.{key}: not an integer: {c[key]!r}") from None
        if v < 1:
            raise InputError(f"cluster.{key}: must be >= 1, got {v}")
        out.append(v)
    return out[0], out[1]
