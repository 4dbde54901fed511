"""``ClusterBook``: every change to what sits in GPU memory, for both backends.

The memory semantics written in ``warmserve.control.seam``, on the ``Ledger``:
a prewarmed replica is booked on its GPUs and dropped when evicted; a start
*claims* its GPUs -- other models' replicas there are evicted and a replica of
its own model on exactly those GPUs is adopted -- and books weights and KV; a
stop *releases* them, keeping the weights as a replica when asked to; lending
KV moves an instance's free blocks out of its books. Checks come before any
change, so a refused command (``CapacityError``) leaves the books as they were.

The book knows nothing of how a backend loads weights or runs engines: the
twin's loads and sleeping replicas (``warmserve.sim.residency``) and the
testbed's engine processes sit on top and call it. It also keeps, per
instance, the KV bytes booked for it, so ``check`` can recompute every GPU's
books from the state alone.
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.cluster.ledger import KV, PREWARM, RESERVED, WEIGHTS, Ledger
from warmserve.control.seam import CapacityError, ClusterState, GpuSet, InstanceState, ModelSpec, ReplicaState


class ClusterBook:
    """The state's memory books: replicas, claims, releases, lent KV and reservations."""

    __slots__ = ("state", "ledger", "kv_of", "reserved")

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.ledger = Ledger(state)
        self.kv_of: dict[int, int] = {}  # instance id -> KV bytes per GPU booked for it (net of lent blocks)
        self.reserved: dict[tuple[str, GpuSet], int] = {}  # replica -> bytes per GPU reserved beyond its weights

    # ---- replicas ------------------------------------------------------------
    def replica(self, model: str, gs: GpuSet) -> ReplicaState | None:
        """The replica of ``model`` on exactly ``gs``, if there is one."""
        if not gs or gs[0] < 0 or gs[-1] >= len(self.state.gpus):
            return None
        rep = self.state.gpus[gs[0]].replicas.get(model)
        return rep if rep is not None and rep.gpus == gs else None

    def check_room(self, what: str, gs: GpuSet, nbytes: int) -> None:
        """``CapacityError`` unless every GPU of ``gs`` has ``nbytes`` free."""
        for g in gs:
            free = self.state.gpus[g].free_bytes
            if free < nbytes:
                raise CapacityError(f"{what}: GPU {g} has {free} B free, needs {nbytes} B")

    def add_replica(self, spec: ModelSpec, gs: GpuSet, t: float, *, ready: bool = False, resident: bool = True,
                    reserve: int = 0) -> ReplicaState:
        """A replica of ``spec`` on ``gs``: its weights on each GPU (none if not ``resident``: they wait
        elsewhere, e.g. in pinned host memory), plus ``reserve`` bytes per GPU held until ``unreserve``.
        ``CapacityError`` (nothing changed) if it does not fit."""
        per_gpu = spec.bytes_per_gpu if resident else 0
        self.check_room(f"prewarm {spec.name}", gs, per_gpu + reserve)
        rep = ReplicaState(model=spec.name, gpus=gs, bytes_per_gpu=per_gpu, ready=ready, since_s=t)
        ledger = self.ledger
        for g in gs:
            if per_gpu:
                ledger.change(g, PREWARM, per_gpu, t)
            self.state.gpus[g].replicas[spec.name] = rep
        if reserve:
            for g in gs:
                ledger.change(g, RESERVED, reserve, t)
            self.reserved[(spec.name, gs)] = reserve
        return rep

    def unreserve(self, model: str, gs: GpuSet, t: float) -> None:
        """The replica's reservation is over (its engine slept down to its weights); idempotent."""
        nbytes = self.reserved.pop((model, gs), 0)
        if nbytes:
            for g in gs:
                self.ledger.change(g, RESERVED, -nbytes, t)

    def remove_replica(self, rep: ReplicaState, t: float) -> None:
        """Evict ``rep``: its weights and any reservation leave its GPUs."""
        for g in rep.gpus:
            del self.state.gpus[g].replicas[rep.model]
            if rep.bytes_per_gpu:
                self.ledger.change(g, PREWARM, -rep.bytes_per_gpu, t)
        self.unreserve(rep.model, rep.gpus, t)

    # ---- a start's claim, a stop's release -------------------------------------
    def claim(self, iid: int, spec: ModelSpec, gs: GpuSet, reuse: ReplicaState | None, kv_bytes: int, t: float,
              evict: Callable[[ReplicaState], None]) -> None:
        """Book ``gs`` for instance ``iid`` of ``spec`` with ``kv_bytes`` of KV per GPU, adopting ``reuse``
        (a replica of ``spec`` on exactly ``gs``) if given.

        Every other replica touching ``gs`` is evicted through ``evict`` (the backend's own eviction, which
        must end in ``remove_replica``). Refused before any change when the GPUs cannot hold the instance even
        after those evictions. The instance itself is put on its GPUs by ``add_instance``.
        """
        gpus = self.state.gpus
        victims: dict[int, ReplicaState] = {}
        for g in gs:
            for rep in gpus[g].replicas.values():
                if rep is not reuse:
                    victims[id(rep)] = rep
        reserved = self.reserved
        need = kv_bytes + spec.bytes_per_gpu
        if reuse is not None:
            need -= reuse.bytes_per_gpu + reserved.get((reuse.model, reuse.gpus), 0)
        for g in gs:
            freed = sum(r.bytes_per_gpu + reserved.get((r.model, r.gpus), 0) for r in victims.values() if g in r.gpus)
            if gpus[g].free_bytes + freed < need:
                raise CapacityError(f"start {spec.name} on {gs}: GPU {g} cannot hold {need} B "
                                    f"({gpus[g].free_bytes} B free, {freed} B of replicas to evict)")
        for rep in victims.values():  # evict whole replicas touching these GPUs
            evict(rep)
            if self.replica(rep.model, rep.gpus) is rep:
                raise RuntimeError(f"evicting {rep.model} on {rep.gpus} left it booked")
        ledger = self.ledger
        if reuse is not None:
            self.unreserve(reuse.model, reuse.gpus, t)
            extra = spec.bytes_per_gpu - reuse.bytes_per_gpu  # weights not yet on the GPUs (a sleeping replica's)
            for g in gs:
                del gpus[g].replicas[spec.name]
                if reuse.bytes_per_gpu:
                    ledger.move(g, PREWARM, WEIGHTS, reuse.bytes_per_gpu, t)
                if extra:
                    ledger.change(g, WEIGHTS, extra, t)
        else:
            for g in gs:
                ledger.change(g, WEIGHTS, spec.bytes_per_gpu, t)
        for g in gs:
            ledger.change(g, KV, kv_bytes, t)
        self.kv_of[iid] = kv_bytes

    def add_instance(self, st: InstanceState) -> None:
        """Put a claimed instance into the state and on its GPUs."""
        self.state.instances[st.instance_id] = st
        for g in st.gpus:
            self.state.gpus[g].instances.append(st.instance_id)

    def holds(self, st: InstanceState) -> bool:
        """Whether ``st``'s GPUs are still booked for it (not yet released)."""
        return st.instance_id in self.kv_of

    def release(self, st: InstanceState, keep: bool, t: float) -> ReplicaState | None:
        """Free a stopped instance's GPUs; with ``keep`` its weights stay there as a ready replica (unless
        one of its model is already on them). Returns that replica, or None if the weights left."""
        spec = self.state.models[st.model]
        kv_held = self.kv_of.pop(st.instance_id)
        ledger = self.ledger
        gpus = self.state.gpus
        for g in st.gpus:
            if kv_held:
                ledger.change(g, KV, -kv_held, t)
            gpus[g].instances.remove(st.instance_id)
        if keep and all(st.model not in gpus[g].replicas for g in st.gpus):
            rep = ReplicaState(model=st.model, gpus=st.gpus, bytes_per_gpu=spec.bytes_per_gpu, ready=True, since_s=t)
            for g in st.gpus:
                ledger.move(g, WEIGHTS, PREWARM, spec.bytes_per_gpu, t)
                gpus[g].replicas[st.model] = rep
            return rep
        for g in st.gpus:
            ledger.change(g, WEIGHTS, -spec.bytes_per_gpu, t)
        return None

    # ---- KV lending ------------------------------------------------------------
    def lend_kv(self, st: InstanceState, blocks: int, used_blocks: int, block_bytes: int, t: float) -> int:
        """Set the blocks of ``st`` lent to prewarming as near ``blocks`` as possible; returns the change.

        Blocks are lent only from free ones (``used_blocks`` hold live sequences: lending never preempts)
        and returned only as far as the GPUs have the memory free again (not while a replica holds it).
        """
        bb = block_bytes
        target = max(0, int(blocks))
        if target > st.kv_blocks_lent:
            free = st.kv_blocks_total - st.kv_blocks_lent - used_blocks
            d = min(target - st.kv_blocks_lent, max(free, 0))
        else:
            room = min(self.state.gpus[g].free_bytes for g in st.gpus) // bb
            d = -min(st.kv_blocks_lent - target, room)
        for g in st.gpus:
            self.ledger.change(g, KV, -d * bb, t)
        self.kv_of[st.instance_id] -= d * bb
        st.kv_blocks_lent += d
        return d

    # ---- cross-check -------------------------------------------------------------
    def check(self) -> None:
        """The ledger balances and matches what the state says is on each GPU (tests call it)."""
        self.ledger.check()
        models = self.state.models
        for g, held in zip(self.state.gpus, self.ledger.held, strict=True):
            want = [0] * len(held)
            for iid in g.instances:
                want[WEIGHTS] += models[self.state.instances[iid].model].bytes_per_gpu
                want[KV] += self.kv_of[iid]
            for rep in g.replicas.values():
                want[PREWARM] += rep.bytes_per_gpu
                want[RESERVED] += self.reserved.get((rep.model, rep.gpus), 0)
            if want != held:
                raise CapacityError(f"GPU {g.gpu}: ledger {held} but the state holds {want}")
