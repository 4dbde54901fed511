"""KV-cache reservation: lending idle KV blocks of running instances to prewarming (docs/reference.md §5.5).

Published rule: an instance with ``total`` KV blocks and ``inflight``
requests keeps at most ``target_free = int(total * inflight / C)`` free
blocks; every free block beyond that is lent to the prewarmer, so the lent
count is ``total - used - target_free`` (never negative). A busy instance
keeps more headroom; an idle one lends all its free blocks.

Published bug (docs/reference.md §10.4): lent blocks were never given
back, so an instance's KV capacity only shrank until it stopped, even when
its load rose again. With ``return_stale=True`` (default) the lent count
follows the rule both ways: when it must drop, the blocks come back, and
prewarmed replicas that sit on those bytes are evicted first (lowest score
first, since a returned block holding a replica cannot be reclaimed
otherwise). ``return_stale=False`` reproduces the published one-way
behaviour (``lent = max(lent, rule)``).

Floor (our addition): an instance always keeps ``min_free_blocks`` free
blocks (WarmServe passes one maximum-length sequence's worth,
``ceil(max_model_len / block_tokens) + 1``). With the bare rule an idle
instance lends *every* free block, and the next request to arrive finds no
KV at all until the lending is undone a tick later (published: never).
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.control.seam import (
    ClusterState,
    Command,
    Evict,
    GpuSet,
    InstancePhase,
    InstanceState,
    LendKv,
)


def lend_target(inst: InstanceState, capacity: int, return_stale: bool, min_free_blocks: int = 0) -> int:
    """How many of ``inst``'s KV blocks should be lent now."""
    total = inst.kv_blocks_total
    target_free = max(int(total * inst.inflight / capacity), min_free_blocks)
    want = max(0, min(total, total - inst.kv_blocks_used - target_free))
    if not return_stale:
        want = max(want, inst.kv_blocks_lent)
    return want


def kv_commands(
    state: ClusterState,
    capacity: int,
    return_stale: bool,
    block_bytes_per_gpu: Callable[[InstanceState], int],
    score_of: Callable[[str, GpuSet], float],
    min_free_blocks: Callable[[InstanceState], int] = lambda inst: 0,
) -> list[Command]:
    """``LendKv`` for every ready instance whose lent count should change, preceded by
    the ``Evict``s needed to give blocks back."""
    out: list[Command] = []
    evicted: set[tuple[str, GpuSet]] = set()
    for inst in sorted(state.instances.values(), key=lambda i: i.instance_id):
        if inst.phase != InstancePhase.READY or inst.kv_blocks_total <= 0:
            continue
        want = lend_target(inst, capacity, return_stale, min_free_blocks(inst))
        if want == inst.kv_blocks_lent:
            continue
        if want < inst.kv_blocks_lent:
            need = (inst.kv_blocks_lent - want) * block_bytes_per_gpu(inst)
            for g in inst.gpus:
                gpu = state.gpus[g]
                short = need - gpu.free_bytes
                reps = sorted(gpu.replicas.values(), key=lambda r: (score_of(r.model, r.gpus), r.model))
                for rep in reps:
                    if short <= 0:
                        break
                    key = (rep.model, rep.gpus)
                    if key not in evicted:
                        evicted.add(key)
                        out.append(Evict(rep.model, rep.gpus))
                    short -= rep.bytes_per_gpu
        out.append(LendKv(inst.instance_id, want))
    return out
