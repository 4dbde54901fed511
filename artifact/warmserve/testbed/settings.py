"""``TestbedSettings``: the resolved backend config every testbed piece reads.

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
    sleep_level: int = 1  # GPU sleep mode level used by evict
    adopt_replicas: bool = True  # features.memory_switching: a start may adopt a standby/sleeping engine
    keep_weights_on_stop: bool = False  # features.keep_weights_on_stop
    kv_block_tokens: int = 16
    kv_cache_bytes: int | None = None  # the engines' fixed KV cache (--kv-cache-memory-bytes), if given
    gpu: GpuEngineSettings | None = None  # device: cuda: how engines are sized (None on the CPU)
    fake_gpu_dir: Path | None = None  # stub engines on fake GPUs: one registry per node here
    port_first: int = 18100
    port_count: int = 400
    max_port_retries: int = 3
