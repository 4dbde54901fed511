"""What sits in the twin's GPU memory, and every change to it the seam's verbs make.

The memory semantics written in ``warmserve.control.seam``, on the ``Ledger``:
a prewarmed replica is booked on its GPUs (or, in sleep mode, in the node's
pinned host memory, ``SleepingReplicas``) and dropped when evicted; a start
*claims* its GPUs -- it evicts other models' replicas there and adopts a
replica of its own model on exactly those GPUs -- and books weights and KV;
a stop *releases* them, keeping the weights as a replica (or asleep) when
asked to. Checks come before any change, so a refused command
(``CapacityError``) leaves the books as they were.
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.control.seam import (
    CapacityError,
    ClusterState,
    GpuSet,
    InstanceState,
    ModelSpec,
    ReplicaState,
)
from warmserve.sim.events import EventLoop
from warmserve.sim.ledger import KV, PREWARM, WEIGHTS, Ledger
from warmserve.sim.lifecycle import SleepingReplicas
from warmserve.sim.loading import Loader, LoadJob


class Residency:
    """Replicas, claims and releases on the ledger; ``jobs`` are the loads of replicas still loading."""

    def __init__(self, loop: EventLoop, state: ClusterState, ledger: Ledger, loader: Loader,
                 sleepers: SleepingReplicas, sleeps: bool, tl: Callable[..., None]) -> None:
        self.loop = loop
        self.state = state
        self.ledger = ledger
        self.loader = loader
        self.sleepers = sleepers
        self.sleeps = sleeps  # the hardware profile's sleep mode: replicas wait in pinned host memory
        self._tl = tl
        self.jobs: dict[tuple[str, GpuSet], LoadJob] = {}  # loading replicas

    # ---- replicas ------------------------------------------------------------
    def book_replica(self, model: str, spec: ModelSpec, gs: GpuSet) -> ReplicaState:
        """A new (still loading) replica of ``model`` on ``gs``; ``CapacityError`` if it does not fit."""
        if self.sleeps:  # a sleeping engine: its weights wait in the node's pinned host memory, not on the GPUs
            return self.sleepers.book(spec, gs, ready=False, t=self.loop.t)
        for g in gs:
            if self.state.gpus[g].free_bytes < spec.bytes_per_gpu:
                raise CapacityError(f"prewarm {model}: GPU {g} has {self.state.gpus[g].free_bytes} B free, "
                                    f"needs {spec.bytes_per_gpu} B")
        rep = ReplicaState(model=model, gpus=gs, bytes_per_gpu=spec.bytes_per_gpu, ready=False,
                           since_s=self.loop.t)
        for g in gs:
            self.ledger.change(g, PREWARM, spec.bytes_per_gpu, self.loop.t)
            self.state.gpus[g].replicas[model] = rep
        return rep

    def drop(self, rep: ReplicaState, why: str) -> None:
        """Evict ``rep`` (cancelling its load if it is still loading)."""
        job = self.jobs.pop((rep.model, rep.gpus), None)
        if job is not None:
            self.loader.cancel(job)
        for g in rep.gpus:
            del self.state.gpus[g].replicas[rep.model]
            if rep.bytes_per_gpu:
                self.ledger.change(g, PREWARM, -rep.bytes_per_gpu, self.loop.t)
        self.sleepers.unbook(rep.model, rep.gpus, self.loop.t)
        self._tl("evict", rep.model, gpus=rep.gpus, nbytes=rep.bytes_per_gpu, detail=why)

    # ---- a start's claim, a stop's release -------------------------------------
    def claim(self, model: str, spec: ModelSpec, gs: GpuSet, reuse: ReplicaState | None,
              kv_bytes: int) -> LoadJob | None:
        """Book ``gs`` for a start of ``model`` with ``kv_bytes`` of KV per GPU, adopting ``reuse`` if given.

        Returns the load of the adopted replica if it is still loading. Refused before any change when the
        GPUs cannot hold it even after evicting every other replica touching them.
        """
        st_all = self.state
        now = self.loop.t
        # check before changing anything: free memory plus what evicting other replicas would free
        victims: dict[int, ReplicaState] = {}
        for g in gs:
            for rep in st_all.gpus[g].replicas.values():
                if rep is not reuse:
                    victims[id(rep)] = rep
        sleeps = self.sleeps
        need = kv_bytes + (0 if reuse is not None and not sleeps else spec.bytes_per_gpu)
        for g in gs:
            freed = sum(r.bytes_per_gpu for r in victims.values() if g in r.gpus)
            if st_all.gpus[g].free_bytes + freed < need:
                raise CapacityError(f"start {model} on {gs}: GPU {g} cannot hold {need} B "
                                    f"({st_all.gpus[g].free_bytes} B free, {freed} B of replicas to evict)")
        for rep in victims.values():  # evict whole replicas touching these GPUs
            self.drop(rep, f"claimed by {model}")
        job = None
        if reuse is not None:
            job = self.jobs.pop((model, gs), None)
            if job is not None:
                job.waiters = []  # the replica is claimed: no prewarm_done for it
            for g in gs:
                del st_all.gpus[g].replicas[model]
                if sleeps:  # woken: the weights come back onto the GPUs (copied in the load phase)
                    self.ledger.change(g, WEIGHTS, spec.bytes_per_gpu, now)
                else:
                    self.ledger.move(g, PREWARM, WEIGHTS, spec.bytes_per_gpu, now)
            self.sleepers.unbook(model, gs, now)
            self._tl("claim", model, gpus=gs, nbytes=spec.bytes_per_gpu)
        else:
            for g in gs:
                self.ledger.change(g, WEIGHTS, spec.bytes_per_gpu, now)
        for g in gs:
            self.ledger.change(g, KV, kv_bytes, now)
        return job

    def release(self, st: InstanceState, spec: ModelSpec, kv_held: int, keep: bool) -> bool:
        """Free a stopped instance's GPUs; its weights stay as a replica (asleep with sleep mode) if
        ``keep`` and there is room for them. Returns whether they were kept."""
        now = self.loop.t
        sleeps = self.sleeps
        if keep and sleeps and not self.sleepers.fits(spec, st.gpus):
            keep = False  # no pinned host memory left for it to sleep in: the weights are dropped
        for g in st.gpus:
            gpu = self.state.gpus[g]
            if kv_held:
                self.ledger.change(g, KV, -kv_held, now)
            gpu.instances.remove(st.instance_id)
        if keep and sleeps:  # the engine goes to sleep: its weights move to pinned host memory
            for g in st.gpus:
                self.ledger.change(g, WEIGHTS, -spec.bytes_per_gpu, now)
            self.sleepers.book(spec, st.gpus, ready=True, t=now)
        elif keep:
            rep = ReplicaState(model=st.model, gpus=st.gpus, bytes_per_gpu=spec.bytes_per_gpu, ready=True, since_s=now)
            for g in st.gpus:
                self.ledger.move(g, WEIGHTS, PREWARM, spec.bytes_per_gpu, now)
                self.state.gpus[g].replicas[st.model] = rep
        else:
            for g in st.gpus:
                self.ledger.change(g, WEIGHTS, -spec.bytes_per_gpu, now)
        return keep
