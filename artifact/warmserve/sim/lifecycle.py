"""What an engine start costs in the twin: pure functions of the hardware profile's ``lifecycle`` block.

Kept apart from ``backend.py`` so the cost model can be read, tested and changed
in one place (docs/lifecycle.md explains every term and its published source).
Every start is three phases, the same for every kind::

    init  -> load  -> post  -> ready (the first step may run)

    kind             init                                       load                          post
    cold             (process + CUDA ctx + engine init + NCCL)  weights from storage           kv_alloc
                     x cold_scale x busy
    worker           (engine init + NCCL) x cold_scale x busy    weights from storage           kv_alloc
    prewarmed, vmm   engine_attach x prewarm_scale              wait for the replica's load    map the KV blocks of the
                     (+ process + ctx if no pre-spawned worker)  (none once it is resident)     first step
    prewarmed, sleep sleep_wake x prewarm_scale                 (replica's host load, then)    none (inside sleep_wake)
                                                                pinned host -> GPU copy
    warm             nothing (already serving)

``engine_init`` grows with the weights on each GPU (``engine_init_s_per_GB``,
fitted on the published 7B/13B breakdown). With ``vmm`` the rest of the KV
cache is mapped in the background after the first step may run, at the
published mapper's throttled pace; ``kv_ramp`` gives the usable blocks over
time (a conservative step function: blocks count only once a doubling is
complete).
"""

from __future__ import annotations

from dataclasses import dataclass

from warmserve.cluster.book import ClusterBook
from warmserve.cluster.ledger import HostBook
from warmserve.cluster.rules import kv_block_bytes
from warmserve.control.features import BackendFeatures
from warmserve.control.seam import CapacityError, GpuSet, ModelSpec, ReplicaState, min_kv_blocks
from warmserve.hardware import EngineLimits, HardwareProfile, Lifecycle

GB = 1e9  # the profiles give rates per GB = 1e9 bytes

STORAGE, ADOPT, WAKE = "storage", "adopt", "wake"  # where a start's weights come from


@dataclass(frozen=True, slots=True)
class StartPlan:
    """The timed phases of one start (seconds) and where its weights come from."""

    init_s: float
    post_s: float
    load: str  # STORAGE: loaded on demand; ADOPT: a resident (vmm) replica; WAKE: a sleeping replica's copy
    first_kv_blocks: int | None = None  # vmm: blocks mapped before the first step (None = the whole cache)


def engine_init_s(lc: Lifecycle, spec: ModelSpec) -> float:
    """Eager engine construction incl. the memory-profiling pass: fixed part + per GB of this GPU's shard."""
    return lc.engine_init_s + lc.engine_init_s_per_GB * spec.bytes_per_gpu / GB


def engine_start_s(lc: Lifecycle, spec: ModelSpec, *, fresh_process: bool, busy: float = 1.0) -> float:
    """A whole engine start before its weights load (cold: ``fresh_process``; worker: not)."""
    proc = lc.process_start_s + lc.cuda_context_s if fresh_process else 0.0
    nccl = lc.tp_comm_setup_s if spec.tp > 1 else 0.0
    return lc.cold_scale * busy * (proc + engine_init_s(lc, spec) + nccl)


def first_step_blocks(lim: EngineLimits) -> int:
    """KV blocks a first step can touch: one ``max_model_len`` sequence plus the block it grows into
    (the same minimum the twin requires of every instance)."""
    return min_kv_blocks(lim.max_model_len, lim.kv_block_tokens)


def kv_map_s(lc: Lifecycle, nbytes: float) -> float:
    """Mapping ``nbytes`` of pre-created pool pages into the engine's address range (one GPU; TP ranks map
    their own shards in parallel)."""
    return lc.prewarm_scale * lc.mapping_s_per_GB * nbytes / GB


def kv_background_s_per_byte(lc: Lifecycle) -> float:
    """Pace of the background KV mapper once serving: map cost plus the published throttle's pauses."""
    pause = lc.kv_map_pause_s / lc.kv_map_pause_bytes if lc.kv_map_pause_bytes else 0.0
    return lc.prewarm_scale * (lc.mapping_s_per_GB / GB + pause)


def kv_ramp(lc: Lifecycle, first: int, total: int, block_bytes: int) -> list[tuple[float, int]]:
    """``(seconds after ready, blocks usable)`` steps of the background KV mapping, doubling from ``first``
    up to ``total``; empty when everything is mapped at once (no cost or nothing left)."""
    per_block = kv_background_s_per_byte(lc) * block_bytes
    if first >= total or per_block <= 0:
        return []
    out = []
    n = first
    while n < total:
        n = min(2 * n, total)
        out.append(((n - first) * per_block, n))
    return out


def plan_start(hw: HardwareProfile, spec: ModelSpec, *, adopt: bool, fresh_process: bool, busy: float) -> StartPlan:
    """The phases of a non-warm start: ``adopt`` = it takes over a prewarmed replica of the model on its GPUs;
    ``fresh_process`` = no pre-spawned process (or standby/sleeping engine) serves it."""
    lc = hw.lifecycle
    if not adopt:
        return StartPlan(engine_start_s(lc, spec, fresh_process=fresh_process, busy=busy), lc.kv_alloc_s, STORAGE)
    if lc.sleeps:  # the sleeping engine exists: wake it (its fixed part), its weights come back over the links
        assert lc.sleep_wake_s is not None  # load_profile requires it for sleep
        return StartPlan(lc.prewarm_scale * lc.sleep_wake_s, 0.0, WAKE)
    proc = lc.cold_scale * busy * (lc.process_start_s + lc.cuda_context_s) if fresh_process else 0.0
    first = first_step_blocks(hw.engine)
    block_bytes = kv_block_bytes(spec, hw.engine.kv_block_tokens)
    return StartPlan(proc + lc.prewarm_scale * lc.engine_attach_s, kv_map_s(lc, first * block_bytes), ADOPT, first)


def sleep_prewarm_delay_s(hw: HardwareProfile, spec: ModelSpec, busy: float = 1.0) -> float:
    """Before a sleeping replica's weights land in host memory its engine is started like a cold one
    (upstream sleep mode sleeps a started engine). The transient GPU use of that start is not charged."""
    return engine_start_s(hw.lifecycle, spec, fresh_process=True, busy=busy)



class SleepingReplicas:
    """Sleep mode's books: a sleeping replica holds its weights in the node's pinned host memory and
    nothing on its GPUs (``ReplicaState.bytes_per_gpu`` 0). The pinned budget per node is the host DRAM
    not set aside for the checkpoint cache (when the system uses one)."""

    def __init__(self, book: ClusterBook, hw: HardwareProfile, features: BackendFeatures) -> None:
        self.cluster = book
        state = self.state = book.state
        cache = hw.host_cache_bytes if features.host_cache else 0
        self.host = HostBook(state.nodes, max(0, (hw.host_dram_bytes or 0) - cache))
        self.asleep: dict[tuple[str, GpuSet], int] = {}  # (model, gpus) -> pinned bytes

    def _node(self, gs: GpuSet) -> int:
        return gs[0] // self.state.gpus_per_node

    def fits(self, spec: ModelSpec, gs: GpuSet) -> bool:
        return self.host.fits(self._node(gs), spec.bytes_per_gpu * len(gs))

    def book(self, spec: ModelSpec, gs: GpuSet, *, ready: bool, t: float) -> ReplicaState:
        """Put ``spec``'s weights to sleep for ``gs``; refused (``CapacityError``, nothing changed) if the
        node's pinned memory cannot hold them."""
        nbytes = spec.bytes_per_gpu * len(gs)
        node = self._node(gs)
        if not self.host.fits(node, nbytes):
            raise CapacityError(f"prewarm {spec.name} (sleep): node {node} has "
                                f"{self.host.capacity - self.host.held[node]} B of pinned host memory free, "
                                f"needs {nbytes} B")
        rep = self.cluster.add_replica(spec, gs, t, ready=ready, resident=False)
        self.host.change(node, nbytes, t)
        self.asleep[(spec.name, gs)] = nbytes
        return rep

    def unbook(self, model: str, gs: GpuSet, t: float) -> None:
        """The replica is woken or evicted: its pinned memory is free again (no-op for a resident one)."""
        nbytes = self.asleep.pop((model, gs), 0)
        if nbytes:
            self.host.change(self._node(gs), -nbytes, t)
