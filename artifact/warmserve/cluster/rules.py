"""The cluster's rules, written once for both backends: which commands are valid, and how memory is sized.

Each check raises ``CapacityError`` before anything changes, so a refused
command leaves the books as they were (the seam's contract). The sizes --
bytes per KV block, the KV blocks a memory share holds -- are what both the
twin and the testbed give an engine; they used to be computed twice, with
different rounding. ``start_kind`` is the one classification of what a start
begins from.
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.control.seam import CapacityError, ClusterState, GpuSet, ModelSpec, StartKind, min_kv_blocks

COLOCATION_SLACK = 1e-9
"""Float slack when summing instances' ``mem_fraction`` on a GPU (three thirds must fit in one)."""


def check_gpus(state: ClusterState, model: str, gpus: GpuSet) -> tuple[ModelSpec, GpuSet]:
    """``model``'s spec and its GPU set, sorted: ``tp`` distinct GPUs of the cluster, all on one node."""
    spec = state.models.get(model)
    if spec is None:
        raise CapacityError(f"unknown model {model!r}")
    gs = tuple(sorted(int(g) for g in gpus))
    n = len(state.gpus)
    if len(gs) != spec.tp or len(set(gs)) != len(gs) or gs[0] < 0 or gs[-1] >= n:
        raise CapacityError(f"{model}: GPU set {gs} is not {spec.tp} distinct GPUs of 0..{n - 1}")
    gpn = state.gpus_per_node
    if gs[0] // gpn != gs[-1] // gpn:
        raise CapacityError(f"{model}: GPU set {gs} spans nodes")
    return spec, gs


def check_start(state: ClusterState, model: str, gs: GpuSet, mem_fraction: float,
                compute_share: float | None) -> None:
    """A start of ``model`` on ``gs`` with this share: the instances already there and this one fit in
    each GPU (their ``mem_fraction`` sum to at most 1), and none of them serves ``model`` already."""
    if not 0 < mem_fraction <= 1:
        raise CapacityError(f"start {model}: mem_fraction {mem_fraction} not in (0, 1]")
    if compute_share is not None and not 0 < compute_share <= 1:
        raise CapacityError(f"start {model}: compute_share {compute_share} not in (0, 1]")
    for g in gs:
        others = [state.instances[i] for i in state.gpus[g].instances]
        if sum(o.mem_fraction for o in others) + mem_fraction > 1 + COLOCATION_SLACK:
            raise CapacityError(f"start {model} on {gs}: GPU {g} is taken by instances "
                                f"{[o.instance_id for o in others]}")
        if any(o.model == model for o in others):
            raise CapacityError(f"start {model} on {gs}: GPU {g} already runs an instance of it")


def check_prewarm(state: ClusterState, model: str, gs: GpuSet) -> None:
    """A replica of ``model`` on ``gs``: never the same model twice on a GPU, as a replica or an instance."""
    for g in gs:
        gpu = state.gpus[g]
        if model in gpu.replicas:
            raise CapacityError(f"prewarm {model} on {gs}: GPU {g} already holds a replica of it")
        if any(state.instances[i].model == model for i in gpu.instances):
            raise CapacityError(f"prewarm {model} on {gs}: GPU {g} runs an instance of it")


def kv_block_bytes(spec: ModelSpec, block_tokens: int) -> int:
    """Bytes one KV block takes on each GPU of a ``spec.tp``-way instance (a shard rounds up)."""
    return -(-spec.kv_bytes_per_token // spec.tp) * block_tokens


def share_bytes(pool_bytes: int, mem_fraction: float) -> int:
    """The bytes of a GPU's memory pool that an instance with ``mem_fraction`` may use."""
    return int(mem_fraction * pool_bytes)


def kv_blocks_for_share(spec: ModelSpec, pool_bytes: int, mem_fraction: float, block_tokens: int,
                        kv_cache_bytes: int | None) -> int:
    """KV blocks an instance gets from its share beside its weights, capped by a fixed KV cache
    (``--kv-cache-memory-bytes``) when the engine is given one. May be negative: too small a share."""
    bb = kv_block_bytes(spec, block_tokens)
    blocks = (share_bytes(pool_bytes, mem_fraction) - spec.bytes_per_gpu) // bb
    if kv_cache_bytes is not None:
        blocks = min(blocks, kv_cache_bytes // bb)
    return blocks


def kv_bytes_for_share(spec: ModelSpec, pool_bytes: int, mem_fraction: float, kv_cache_bytes: int | None) -> int:
    """KV bytes per GPU an engine allocates from its share beside its weights (capped by a fixed KV
    cache when it is given one); 0 when the share does not even hold the weights."""
    kv = max(0, share_bytes(pool_bytes, mem_fraction) - spec.bytes_per_gpu)
    return kv if kv_cache_bytes is None else min(kv, kv_cache_bytes)


def check_kv_blocks(model: str, mem_fraction: float, blocks: int, max_model_len: int, block_tokens: int) -> None:
    """A start must leave room for one ``max_model_len`` sequence (vLLM refuses to start otherwise)."""
    if blocks < min_kv_blocks(max_model_len, block_tokens):
        raise CapacityError(f"start {model}: mem_fraction {mem_fraction} leaves {max(blocks, 0)} KV blocks")


def start_kind(*, warm: bool, adopts: bool, take_worker: Callable[[], bool]) -> StartKind:
    """What a start begins from: an instance deployed before the run (``warm``), an adopted replica
    (``prewarmed``), a pre-spawned worker (``take_worker()`` takes one if there is one; asked only when
    neither of the former holds), else a fresh process (``cold``)."""
    if warm:
        return StartKind.WARM
    if adopts:
        return StartKind.PREWARMED
    if take_worker():
        return StartKind.WORKER
    return StartKind.COLD
