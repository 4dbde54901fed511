"""The twin's pool of pre-spawned worker processes (``lifecycle.worker_pool_per_node``).

A worker start needs a process that has already imported the engine. The
published system pre-spawns 32 per node, more than a node's GPUs, so the GPU
profiles leave the pool unbounded (every ``worker_pool`` start is a worker
start). The CPU testbed keeps one: a start that finds the pool empty is a cold
process start, and a used process is replaced when the start it served ends
(its import would slow that very start on a 2-core box), ready
``worker_refill_s`` later (its import; default ``process_start_s``) -- the
same rule as ``warmserve.testbed``.
"""

from __future__ import annotations

from warmserve.sim.events import EventLoop


class WorkerPool:
    """Ready pre-spawned processes per node; ``None`` size = unbounded."""

    def __init__(self, loop: EventLoop, nodes: int, size: int | None, refill_s: float) -> None:
        self.loop = loop
        self.free: list[int] | None = None if size is None else [size] * nodes
        self.refill_s = refill_s

    def take(self, node: int) -> bool:
        """Take a ready process of ``node`` if there is one (always, if unbounded)."""
        free = self.free
        if free is None:
            return True
        if free[node] <= 0:
            return False
        free[node] -= 1
        return True

    def replace(self, node: int) -> None:
        """The start that used one of ``node``'s processes ended: a new one is ready ``refill_s`` later."""
        free = self.free
        if free is not None:
            self.loop.call_later(self.refill_s, lambda: free.__setitem__(node, free[node] + 1))
