"""``TestbedSettings``: the resolved backend config every testbed piece reads (no defaults: the YAML is the one home).

Its own module so the pieces composed into ``TestbedBackend`` (launcher, GPU lifecycle) can take
the settings without importing the backend (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from warmserve.testbed.gpu_engine import GpuEngineSettings


@dataclass(slots=True)
class TestbedSettings:
    """Resolved ``configs/backend/testbed*.yaml`` (minus the engine command)."""

    device: str  # "cpu" or "cuda"
    slot_cores: list[str]  # per global slot ("GPU"): OMP core binding, e.g. "0" or "0-1"
    capacity_bytes: int  # per slot, what policies plan against
    max_engines: int  # hard cap on live engine processes (memory guard)
    prespawned_pool: int  # pre-spawned processes kept ready ("worker" starts)
    sleep_level: int  # GPU sleep mode level used by evict (prewarm.sleep_level)
    adopt_replicas: bool  # features.memory_switching: a start may adopt a standby/sleeping engine
    kv_block_tokens: int  # the hardware profile's engine.kv_block_tokens
    max_model_len: int  # the hardware profile's engine.max_model_len (a start must fit one such sequence)
    kv_cache_bytes: int | None  # the engines' fixed KV cache (--kv-cache-memory-bytes); None = sized by share
    gpu: GpuEngineSettings | None  # device: cuda: how engines are sized (None on the CPU)
    fake_gpu_dir: Path | None  # stub engines on fake GPUs: one registry per node here (None = real GPUs/CPU)
    port_first: int  # ports.first
    port_count: int  # ports.count
    max_port_retries: int  # ports.retries
