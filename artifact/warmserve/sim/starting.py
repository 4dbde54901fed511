"""The twin's start state machine: from a booked start to a serving engine.

``SimBackend.start_instance`` checks the command, books the memory and makes
the ``Instance``; from there this module runs the start (costs from the
hardware profile's ``lifecycle`` block, computed in ``warmserve.sim.lifecycle``;
docs/lifecycle.md gives every value's source)::

    created --init--> load phase --post--> ready
    init = (process_start + cuda_context unless a pre-spawned worker serves it)
           + engine_attach                      if it adopts a resident replica (vmm)
           + sleep_wake                         if it wakes a sleeping replica (sleep)
           + engine_init + tp_comm (tp > 1)     otherwise
    (with ``worker_pool``, a worker is available if the node's pool, ``lifecycle.worker_pool_per_node``,
    has one; a used worker is replaced when the start it served ends, ready worker_refill_s (default
    process_start_s) later, as the testbed replenishes; an empty pool means a cold start.
    With ``lifecycle.prewarm_is_engine`` -- the CPU testbed -- a replica is a whole standby engine:
    its load begins process_start + engine_init after the prewarm, and adopting it costs
    engine_attach only.)
    load = weight load over the links (or the wait for an adopted replica still loading; a sleeping
           replica's copy from pinned host memory)
    post = mapping the KV blocks a first step can touch (adopted vmm replica; the rest of the KV
           cache is mapped in the background, lifecycle.kv_ramp) or kv_alloc (cold / worker)

Each start's fields live in its ``Start`` record, owned here (``StartMachine.starts``);
the outputs read the phase times from it to split a request's wait
(``warmserve.sim.outputs``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from warmserve.cluster.rules import start_kind
from warmserve.control.features import BackendFeatures
from warmserve.control.seam import ClusterState, GpuSet, InstancePhase, ModelSpec, StartKind
from warmserve.hardware import HardwareProfile
from warmserve.sim.events import EventLoop
from warmserve.sim.instance import Instance
from warmserve.sim.lifecycle import ADOPT, WAKE, kv_ramp, plan_start
from warmserve.sim.loading import Loader, LoadJob
from warmserve.sim.workers import WorkerPool


@dataclass(slots=True, eq=False)
class Start:
    """One instance's start (and the end of it): phase times and the state machine's working fields."""

    gpus: GpuSet
    kind: StartKind
    t_created: float
    t_load0: float = math.nan  # load phase begins
    t_load1: float = math.nan  # load phase ends (post begins)
    t_ready: float = math.nan
    keep: bool = False  # keep the weights as a replica when stopped
    job: LoadJob | None = None  # the weight load this start waits for
    post_s: float = 0.0  # init time after the load (mapping + KV allocation)
    reuse: bool = False  # adopted a resident replica (memory switching)
    wake: bool = False  # adopted a sleeping replica: its weights are copied back in the load phase
    refilled: bool = False  # the pre-spawned worker this start used has been replaced (the pool's)
    kv_mapped: int = 1 << 62  # KV blocks mapped so far (a vmm start maps the rest in the background)
    kv_ramp: list[tuple[float, int]] = field(default_factory=list)  # (s after ready, blocks mapped)


class StartMachine:
    """Runs every start through init -> load -> post -> ready and replaces used pre-spawned workers.

    ``tl`` writes a timeline row (the backend's); ``on_ready(inst)`` is called once an instance is
    ready and serving what waited for it (the backend finishes a stop or tells the controller).
    """

    def __init__(self, loop: EventLoop, state: ClusterState, hw: HardwareProfile, features: BackendFeatures,
                 loader: Loader, workers: WorkerPool, tl: Callable[..., None],
                 on_ready: Callable[[Instance], None]) -> None:
        self.loop = loop
        self.state = state
        self.hw = hw
        self.features = features
        self.loader = loader
        self.workers = workers
        self._tl = tl
        self.on_ready = on_ready
        self.starts: dict[int, Start] = {}  # instance id -> its start, for every instance ever

    def kind(self, gs: GpuSet, *, reuse: bool, warm: bool) -> StartKind:
        """What a start on ``gs`` begins from; takes a pre-spawned worker when one serves it."""
        # a bounded pool is refilled when this start ends (refill_worker)
        return start_kind(warm=warm, adopts=reuse, take_worker=lambda: self.features.worker_pool and self.workers.take(
            gs[0] // self.state.gpus_per_node))

    def slowdown(self, gs: GpuSet, model: str) -> float:
        """``lifecycle.busy_start_slowdown`` if another engine process runs on ``gs``'s node (an
        instance, or -- with ``prewarm_is_engine`` -- a standby replica of another placement), else 1."""
        f = self.hw.lifecycle.busy_start_slowdown
        if f == 1.0:
            return 1.0
        gpn = self.state.gpus_per_node
        node = gs[0] // gpn
        for gpu in self.state.gpus[node * gpn:(node + 1) * gpn]:
            if gpu.instances:
                return f
            if self.hw.lifecycle.prewarm_is_engine and any(
                    r.model != model or r.gpus != gs for r in gpu.replicas.values()):
                return f
        return 1.0

    def begin(self, inst: Instance, spec: ModelSpec, *, job: LoadJob | None, reuse: bool, blocks: int,
              block_bytes: int, busy: float) -> Start:
        """Record ``inst``'s start and schedule its first phase (``busy``: ``slowdown`` before it was booked)."""
        st = inst.st
        now = self.loop.t
        kind = st.start_kind
        life = self.starts[st.instance_id] = Start(st.gpus, kind, now, reuse=reuse)
        if kind is StartKind.WARM:
            life.t_load0 = life.t_load1 = now
            self.loop.at(now, self._ready, inst)
            return life
        lc = self.hw.lifecycle
        # the process (and CUDA context) exists: a pre-spawned worker, a standby or a sleeping engine
        fresh = not (kind is StartKind.WORKER or (reuse and (
            self.features.worker_pool or lc.prewarm_is_engine or lc.sleeps)))
        plan = plan_start(self.hw, spec, adopt=reuse, fresh_process=fresh, busy=busy)
        life.post_s = plan.post_s
        life.wake = plan.load == WAKE
        if reuse:
            life.job = job
        if plan.load == ADOPT and plan.first_kv_blocks is not None:
            life.kv_ramp = kv_ramp(lc, plan.first_kv_blocks, blocks, block_bytes)
            if life.kv_ramp:  # the first step may run once its blocks are mapped; the rest follow
                life.kv_mapped = plan.first_kv_blocks
                inst.set_kv_blocks(plan.first_kv_blocks)
        self.loop.at(now + plan.init_s, self._init_done, inst)
        return life

    def refill_worker(self, inst: Instance) -> None:
        """The start that used a pre-spawned worker ended (ready or stopped): replace it (once)."""
        life = self.starts[inst.iid]
        if life.kind is StartKind.WORKER and not life.refilled:
            life.refilled = True
            self.workers.replace(life.gpus[0] // self.state.gpus_per_node)

    # ---- the phases (loop callbacks) -------------------------------------------
    def _init_done(self, inst: Instance) -> None:
        if inst.st.phase is InstancePhase.STOPPED:
            return
        life = self.starts[inst.iid]
        life.t_load0 = self.loop.t
        if life.reuse:
            job = life.job
            after = self._wake if life.wake else self._load_done
            if job is None or job.done:
                after(inst)
            else:  # the replica is still loading (a sleeping one into host memory)
                job.waiters.append(lambda: after(inst))
        else:
            life.job = self.loader.start(inst.st.model, inst.st.gpus)
            life.job.waiters.append(lambda: self._load_done(inst))

    def _wake(self, inst: Instance) -> None:
        """A woken sleeping replica: copy its weights from pinned host memory onto the instance's GPUs."""
        if inst.st.phase is InstancePhase.STOPPED:
            return
        life = self.starts[inst.iid]
        life.job = self.loader.start(inst.st.model, inst.st.gpus, wake=True)
        life.job.waiters.append(lambda: self._load_done(inst))

    def _load_done(self, inst: Instance) -> None:
        if inst.st.phase is InstancePhase.STOPPED:
            return
        life = self.starts[inst.iid]
        life.t_load1 = self.loop.t
        self.loop.at(self.loop.t + life.post_s, self._ready, inst)

    def _ready(self, inst: Instance) -> None:
        st = inst.st
        if st.phase is InstancePhase.STOPPED:
            return
        life = self.starts[inst.iid]
        life.t_ready = st.ready_s = self.loop.t
        life.job = None
        for dt, blocks in life.kv_ramp:
            self.loop.at(self.loop.t + dt, self._kv_mapped, (inst, blocks))
        self.refill_worker(inst)
        if st.phase is InstancePhase.STARTING:
            st.phase = InstancePhase.READY
        self._tl("instance_ready", st.model, st.instance_id, st.gpus)
        inst.start_serving()
        self.on_ready(inst)

    def _kv_mapped(self, arg: tuple[Instance, int]) -> None:
        """Background KV mapping reached ``blocks``: they become usable (net of blocks lent)."""
        inst, blocks = arg
        if inst.st.phase is InstancePhase.STOPPED:
            return
        self.starts[inst.iid].kv_mapped = blocks
        inst.set_kv_blocks(min(blocks, inst.st.kv_blocks_total - inst.st.kv_blocks_lent))
        inst.start_serving()  # requests that waited for KV space may now be admitted
