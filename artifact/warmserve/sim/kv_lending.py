"""KV lending on the twin (the seam's ``lend_kv``): an instance's free KV blocks lent to prewarming.

Lent blocks leave the instance's KV cache and its ``KV`` bytes in the ledger,
so they become free memory for replicas on its GPUs. Blocks are lent only
from free blocks (lending never preempts by itself) and returned only as far
as the GPUs have the memory free again (not while a replica holds it). The
usable cache is ``min(mapped, total - lent)`` (``mapped``: the background KV
mapping of a vmm start, ``warmserve.sim.starting``).
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.control.seam import ClusterState, InstanceState
from warmserve.sim.instance import Instance
from warmserve.sim.ledger import KV, Ledger


def lend_kv(state: ClusterState, ledger: Ledger, st: InstanceState, inst: Instance, kv_mapped: int,
            block_bytes: int, blocks: int, now: float, tl: Callable[..., None]) -> int:
    """Set the blocks of ``st`` lent to prewarming as near ``blocks`` as possible; returns the number lent."""
    bb = block_bytes
    target = max(0, int(blocks))
    if target > st.kv_blocks_lent:
        free = st.kv_blocks_total - st.kv_blocks_lent - inst.used_blocks()
        d = min(target - st.kv_blocks_lent, max(free, 0))
        for g in st.gpus:
            ledger.change(g, KV, -d * bb, now)
    else:
        room = min(state.gpus[g].free_bytes for g in st.gpus) // bb
        d = -min(st.kv_blocks_lent - target, room)
        for g in st.gpus:
            ledger.change(g, KV, -d * bb, now)
    if d:
        st.kv_blocks_lent += d
        inst.set_kv_blocks(min(kv_mapped, st.kv_blocks_total - st.kv_blocks_lent))
        tl("kv_reserve", st.model, st.instance_id, st.gpus, nbytes=st.kv_blocks_lent * bb,
           blocks=st.kv_blocks_lent)
    return st.kv_blocks_lent
