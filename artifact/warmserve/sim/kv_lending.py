"""KV lending on the twin (the seam's ``lend_kv``): an instance's free KV blocks lent to prewarming.

The books are ``ClusterBook.lend_kv`` (lent blocks leave the instance's KV
bytes, so they become free memory for replicas on its GPUs); here the twin's
engine learns its usable cache, ``min(mapped, total - lent)`` (``mapped``:
the background KV mapping of a vmm start, ``warmserve.sim.starting``), and the
timeline records the change.
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.cluster.book import ClusterBook
from warmserve.control.seam import InstanceState
from warmserve.sim.instance import Instance


def lend_kv(book: ClusterBook, st: InstanceState, inst: Instance, kv_mapped: int,
            block_bytes: int, blocks: int, now: float, tl: Callable[..., None]) -> int:
    """Set the blocks of ``st`` lent to prewarming as near ``blocks`` as possible; returns the number lent."""
    d = book.lend_kv(st, blocks, inst.used_blocks(), block_bytes, now)
    if d:
        inst.set_kv_blocks(min(kv_mapped, st.kv_blocks_total - st.kv_blocks_lent))
        tl("kv_reserve", st.model, st.instance_id, st.gpus, nbytes=st.kv_blocks_lent * block_bytes,
           blocks=st.kv_blocks_lent)
    return st.kv_blocks_lent
