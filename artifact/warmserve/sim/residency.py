"""The twin's layer over the cluster book: replicas' loads and sleep mode's pinned host memory.

The memory rules themselves are in ``warmserve.cluster.book`` (shared with the
testbed); here is only what the twin adds around them: a replica still
loading has a ``LoadJob`` that an eviction cancels and an adopting start
takes over, and with sleep mode (``lifecycle.prewarm_mechanism=sleep``) a
replica waits in the node's pinned host memory (``SleepingReplicas``) rather
than on its GPUs. Every eviction and adoption is a timeline row.
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.cluster.book import ClusterBook
from warmserve.control.seam import GpuSet, InstanceState, ModelSpec, ReplicaState
from warmserve.sim.events import EventLoop
from warmserve.sim.lifecycle import SleepingReplicas
from warmserve.sim.loading import Loader, LoadJob


class Residency:
    """Replicas, claims and releases on the book; ``jobs`` are the loads of replicas still loading."""

    def __init__(self, loop: EventLoop, book: ClusterBook, loader: Loader, sleepers: SleepingReplicas,
                 sleeps: bool, tl: Callable[..., None]) -> None:
        self.loop = loop
        self.book = book
        self.loader = loader
        self.sleepers = sleepers
        self.sleeps = sleeps  # the hardware profile's sleep mode: replicas wait in pinned host memory
        self._tl = tl
        self.jobs: dict[tuple[str, GpuSet], LoadJob] = {}  # loading replicas

    # ---- replicas ------------------------------------------------------------
    def book_replica(self, spec: ModelSpec, gs: GpuSet) -> ReplicaState:
        """A new (still loading) replica of ``spec`` on ``gs``; ``CapacityError`` if it does not fit."""
        if self.sleeps:  # a sleeping engine: its weights wait in the node's pinned host memory, not on the GPUs
            return self.sleepers.book(spec, gs, ready=False, t=self.loop.t)
        return self.book.add_replica(spec, gs, self.loop.t)

    def drop(self, rep: ReplicaState, why: str) -> None:
        """Evict ``rep`` (cancelling its load if it is still loading)."""
        job = self.jobs.pop((rep.model, rep.gpus), None)
        if job is not None:
            self.loader.cancel(job)
        self.book.remove_replica(rep, self.loop.t)
        self.sleepers.unbook(rep.model, rep.gpus, self.loop.t)
        self._tl("evict", rep.model, gpus=rep.gpus, nbytes=rep.bytes_per_gpu, detail=why)

    # ---- a start's claim, a stop's release -------------------------------------
    def claim(self, iid: int, spec: ModelSpec, gs: GpuSet, reuse: ReplicaState | None,
              kv_bytes: int) -> LoadJob | None:
        """Book ``gs`` for instance ``iid`` (``ClusterBook.claim``), evicting other replicas as the twin does.

        Returns the load of the adopted replica ``reuse`` if it is still loading.
        """
        now = self.loop.t
        model = spec.name
        self.book.claim(iid, spec, gs, reuse, kv_bytes, now, lambda rep: self.drop(rep, f"claimed by {model}"))
        if reuse is None:
            return None
        job = self.jobs.pop((model, gs), None)
        if job is not None:
            job.waiters = []  # the replica is claimed: no prewarm_done for it
        self.sleepers.unbook(model, gs, now)  # woken: the weights come back onto the GPUs (the load phase)
        self._tl("claim", model, gpus=gs, nbytes=spec.bytes_per_gpu)
        return job

    def release(self, st: InstanceState, spec: ModelSpec, keep: bool) -> bool:
        """Free a stopped instance's GPUs; its weights stay as a replica (asleep with sleep mode) if
        ``keep`` and there is room for them. Returns whether they were kept."""
        now = self.loop.t
        if self.sleeps:
            keep = keep and self.sleepers.fits(spec, st.gpus)  # else no pinned host memory left to sleep in
            self.book.release(st, False, now)
            if keep:  # the engine goes to sleep: its weights move to pinned host memory
                self.sleepers.book(spec, st.gpus, ready=True, t=now)
            return keep
        return self.book.release(st, keep, now) is not None
