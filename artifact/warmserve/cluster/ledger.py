"""The per-GPU memory ledger: the only code that changes ``GpuState.used_bytes`` (both backends).

Four categories per GPU: ``weights`` of running instances, their ``kv`` (net
of blocks lent to prewarming), ``prewarm``ed replicas (loaded or loading) --
the three the twin's utilisation log reports -- and ``reserved``: bytes a
testbed standby engine holds beyond its weights while it starts awake (before
it sleeps down to its weights; the twin never books any). Every change is checked against
the GPU's pool; an attempt to oversubscribe raises ``CapacityError`` (a policy
or backend bug, never clipped). Changes are also appended to flat arrays so
the utilisation log can be rebuilt afterwards without sampling during the run.
"""

from __future__ import annotations

from array import array

from warmserve.control.seam import CapacityError, ClusterState

WEIGHTS, KV, PREWARM, RESERVED = 0, 1, 2, 3
CATEGORIES = ("weights", "kv", "prewarm", "reserved")


class Ledger:
    __slots__ = ("state", "held", "log_t", "log_gpu", "log_cat", "log_delta")

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.held = [[0] * len(CATEGORIES) for _ in state.gpus]  # per GPU, per category
        self.log_t = array("d")
        self.log_gpu = array("i")
        self.log_cat = array("b")
        self.log_delta = array("q")

    def change(self, gpu: int, cat: int, delta: int, t: float) -> None:
        g = self.state.gpus[gpu]
        used = g.used_bytes + delta
        if used > g.capacity_bytes:
            raise CapacityError(
                f"GPU {gpu}: {CATEGORIES[cat]} +{delta} B would use {used} B of {g.capacity_bytes} B at t={t:.6f}")
        held = self.held[gpu]
        if held[cat] + delta < 0 or used < 0:
            raise CapacityError(f"GPU {gpu}: {CATEGORIES[cat]} would go negative at t={t:.6f}")
        g.used_bytes = used
        held[cat] += delta
        self.log_t.append(t)
        self.log_gpu.append(gpu)
        self.log_cat.append(cat)
        self.log_delta.append(delta)

    def move(self, gpu: int, src: int, dst: int, nbytes: int, t: float) -> None:
        """Re-label bytes (a replica adopted as an instance's weights, or the reverse)."""
        self.change(gpu, src, -nbytes, t)
        self.change(gpu, dst, nbytes, t)

    def check(self) -> None:
        """Cross-check the books against ``ClusterState`` (tests call it)."""
        for g, held in zip(self.state.gpus, self.held, strict=True):
            if sum(held) != g.used_bytes or g.used_bytes > g.capacity_bytes or min(held) < 0:
                raise CapacityError(f"GPU {g.gpu}: ledger {held} vs used {g.used_bytes} / {g.capacity_bytes}")


class HostBook:
    """Pinned host memory per node held by sleeping replicas (``lifecycle.prewarm_mechanism=sleep``).

    A sleeping engine keeps its weights in pinned host DRAM, so the node's DRAM,
    not the GPU, is what a sleeping replica occupies. ``capacity`` per node is
    the host DRAM not set aside for the checkpoint cache; a change past it
    raises ``CapacityError`` (callers check ``fits`` first, as with the GPU
    ledger). ``peak`` records the most ever held, for tests.
    """

    __slots__ = ("capacity", "held", "peak")

    def __init__(self, nodes: int, capacity: int) -> None:
        self.capacity = capacity
        self.held = [0] * nodes
        self.peak = [0] * nodes

    def fits(self, node: int, nbytes: int) -> bool:
        return self.held[node] + nbytes <= self.capacity

    def change(self, node: int, delta: int, t: float) -> None:
        held = self.held[node] + delta
        if held > self.capacity or held < 0:
            raise CapacityError(f"node {node}: pinned sleeping weights {held} B of {self.capacity} B at t={t:.6f}")
        self.held[node] = held
        self.peak[node] = max(self.peak[node], held)
