"""``SimBackend``: the seam's ``Backend`` on a discrete-event twin of a GPU cluster.

It is the single source of truth about the cluster (``self.state``): every
memory change goes through the ``Ledger``, every weight load is a ``Flow``
over shared links, every instance is an ``Instance`` batching at iteration
granularity. Verbs follow the memory semantics written in ``seam.py``.

Start lifecycle (costs from the hardware profile's ``lifecycle`` block, computed in
``warmserve.sim.lifecycle``; docs/lifecycle.md gives every value's source)::

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

The request log's TTFT split attributes a request's wait to ``load`` and
``init`` only where it overlaps those phases of the instance that served it;
the rest before its prefill is ``queue``.

Simplifications (documented, deliberate): a stopped-while-starting instance
with requests finishes starting and drains them; the slowdown of instances
sharing GPUs (their SM shares, ``warmserve.control.mps``) is sampled when an
iteration starts; lent KV blocks are taken only from free
blocks, so lending never preempts by itself.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from warmserve.control.features import BackendFeatures
from warmserve.control.mps import oversubscription
from warmserve.control.seam import (
    Backend,
    CapacityError,
    ClusterState,
    EventSink,
    GpuSet,
    GpuState,
    InstancePhase,
    InstanceState,
    ModelSpec,
    ReplicaState,
    Request,
    RequestStatus,
    StartKind,
    min_kv_blocks,
)
from warmserve.metrics.schema import gpus_str
from warmserve.run.protocol import ReplayInfo
from warmserve.sim.events import EventLoop
from warmserve.sim.instance import Instance
from warmserve.sim.ledger import KV, PREWARM, WEIGHTS, Ledger
from warmserve.sim.lifecycle import (
    ADOPT,
    WAKE,
    SleepingReplicas,
    kv_ramp,
    plan_start,
    sleep_prewarm_delay_s,
)
from warmserve.sim.links import LinkNetwork
from warmserve.sim.loading import Loader, LoadJob
from warmserve.sim.outputs import build_request_log, build_timeline, build_utilization
from warmserve.sim.profile import check_models_fit, cluster_shape, load_profile
from warmserve.sim.requests import FAILED, OK, PENDING, TIMEOUT, RequestTable
from warmserve.sim.workers import WorkerPool

_NEW = object.__new__
_SET_REQUEST = tuple(Request.__dict__[f].__set__  # the slots' own setters (see _request)
                     for f in ("request_id", "arrival_s", "model", "input_tokens", "output_tokens"))


def _request(request_id: int, arrival_s: float, model: str, input_tokens: int, output_tokens: int) -> Request:
    """A ``Request`` equal to ``Request(...)``, built without the frozen dataclass ``__init__``.

    One is made per arrival (10^7 at internet scale) and the generated frozen
    ``__init__`` (one ``object.__setattr__`` call per field) costs about twice
    as much as setting the slots directly.
    """
    r = _NEW(Request)
    s0, s1, s2, s3, s4 = _SET_REQUEST
    s0(r, request_id)
    s1(r, arrival_s)
    s2(r, model)
    s3(r, input_tokens)
    s4(r, output_tokens)
    return r


_STATUS = {OK: RequestStatus.OK, FAILED: RequestStatus.FAILED, TIMEOUT: RequestStatus.TIMEOUT}
_SERVING = (InstancePhase.STARTING, InstancePhase.READY)
_STARTING = InstancePhase.STARTING
_READY = InstancePhase.READY


class SimBackend(Backend):
    """The twin. Constructed by the runner (see ``warmserve.run.protocol``)."""

    def __init__(self, *, models: dict[str, ModelSpec], cluster: Any, hardware: Any,
                 features: BackendFeatures | None = None, seed: int = 0, setup_ready: bool = True,
                 progress_every_s: float = 60.0) -> None:
        self.hw = load_profile(hardware)
        nodes, gpn = cluster_shape(cluster)
        check_models_fit(self.hw, models, gpn)
        self.features = features or BackendFeatures()
        self.seed = seed  # the twin is deterministic and draws no random numbers
        self.setup_ready = setup_ready
        self.progress_every_s = progress_every_s
        self.loop = EventLoop()
        self.clock = self.loop
        pool = self.hw.pool_bytes
        self.state = ClusterState(
            nodes=nodes, gpus_per_node=gpn,
            gpus=[GpuState(gpu=g, node=g // gpn, capacity_bytes=pool) for g in range(nodes * gpn)],
            models=dict(models),
        )
        self.state.instances.track_idle()  # type: ignore[attr-defined]  # routers skip scans (seam.InstanceTable)
        self.ledger = Ledger(self.state)
        self.net = LinkNetwork(self.loop, self.hw, nodes)
        self.loader = Loader(self.net, self.state, self.hw, self.features, self._tl)
        self.insts: dict[int, Instance] = {}  # every instance ever, for the outputs
        self.jobs: dict[tuple[str, GpuSet], LoadJob] = {}  # loading replicas
        self.timeline_rows: list[tuple] = []
        self.seg_inst = array("q")
        self.seg_t0 = array("d")
        self.seg_t1 = array("d")
        self.sink: EventSink | None = None
        self.req: RequestTable | None = None
        self._next_iid = 0
        lc = self.hw.lifecycle
        self.workers = WorkerPool(self.loop, nodes, lc.worker_pool_per_node,
                                  lc.process_start_s if lc.worker_refill_s is None else lc.worker_refill_s)
        self.sleepers = SleepingReplicas(self.state, self.hw, self.features)  # sleep mode's pinned host memory
        self.host = self.sleepers.host
        self._setup = False
        self._colocated = 0
        self._share: dict[int, float] = {}  # instance id -> SM share (instances started with one)
        self._ended = 0
        self._delivered = 0
        self._n = 0
        self._arrive_cb = self._arrive  # bound once: one arrival event per request
        self.end_s = 0.0
        self._block_bytes = {m: -(-s.kv_bytes_per_token // s.tp) * self.hw.engine.kv_block_tokens
                             for m, s in models.items()}
        self._lat = {m: self.hw.latency_of(s) for m, s in models.items()}

    # ---- helpers -------------------------------------------------------------
    def _tl(self, kind: str, model: str = "", iid: int = -1, gpus: GpuSet = (), nbytes: int = 0, blocks: int = 0,
            start_kind: str = "", detail: str = "") -> None:
        self.timeline_rows.append((self.loop.t, kind, model, iid, gpus_str(gpus), nbytes, blocks, start_kind,
                                   detail, math.nan, math.nan))

    def _check_gpus(self, model: str, gpus: GpuSet) -> tuple[ModelSpec, GpuSet]:
        spec = self.state.models.get(model)
        if spec is None:
            raise CapacityError(f"unknown model {model!r}")
        gs = tuple(sorted(int(g) for g in gpus))
        n = len(self.state.gpus)
        if len(gs) != spec.tp or len(set(gs)) != len(gs) or gs[0] < 0 or gs[-1] >= n:
            raise CapacityError(f"{model}: GPU set {gs} is not {spec.tp} distinct GPUs of 0..{n - 1}")
        gpn = self.state.gpus_per_node
        if gs[0] // gpn != gs[-1] // gpn:
            raise CapacityError(f"{model}: GPU set {gs} spans nodes")
        return spec, gs

    def _require(self, gs: GpuSet, nbytes: int, what: str) -> None:
        for g in gs:
            if self.state.gpus[g].free_bytes < nbytes:
                raise CapacityError(f"{what}: GPU {g} has {self.state.gpus[g].free_bytes} B free, needs {nbytes} B")

    def _slow(self, inst: Instance) -> tuple[float, float]:
        """(prefill, decode) iteration-time factors of ``inst`` from its SM share and its GPUs' load."""
        share = self._share.get(inst.st.instance_id)
        o = oversubscription([self._share.get(i) for i in self.state.gpus[g].instances] for g in inst.st.gpus)
        return self.hw.compute_sharing.factors(1.0 if share is None else share, len(inst.st.gpus), o)

    def _update_slow(self, gs: GpuSet) -> None:
        """Compute-sharing factors of every instance on these GPUs (apply from its next iteration)."""
        for g in gs:
            for iid in self.state.gpus[g].instances:
                inst = self.insts[iid]
                inst.slow_prefill, inst.slow = self._slow(inst)

    # ---- replicas ------------------------------------------------------------
    def prewarm(self, model: str, gpus: GpuSet) -> None:
        spec, gs = self._check_gpus(model, gpus)
        for g in gs:
            gpu = self.state.gpus[g]
            if model in gpu.replicas:
                raise CapacityError(f"prewarm {model} on {gs}: GPU {g} already holds a replica of it")
            if any(self.state.instances[i].model == model for i in gpu.instances):
                raise CapacityError(f"prewarm {model} on {gs}: GPU {g} runs an instance of it")
        lc = self.hw.lifecycle
        if lc.sleeps:  # a sleeping engine: its weights wait in the node's pinned host memory, not on the GPUs
            rep = self.sleepers.book(spec, gs, ready=False, t=self.loop.t)
        else:
            self._require(gs, spec.bytes_per_gpu, f"prewarm {model}")
            rep = ReplicaState(model=model, gpus=gs, bytes_per_gpu=spec.bytes_per_gpu, ready=False,
                               since_s=self.loop.t)
            for g in gs:
                self.ledger.change(g, PREWARM, spec.bytes_per_gpu, self.loop.t)
                self.state.gpus[g].replicas[model] = rep
        self._tl("prewarm_start", model, gpus=gs, nbytes=spec.bytes_per_gpu, detail=lc.prewarm_mechanism)
        if self._setup and self.setup_ready:
            # Deployed before the replay, like setup instances: the published manager prewarms
            # from start-up and the replay begins ~60 s after it answers (docs/reference.md §9).
            self._prewarm_done(rep)
            return
        if lc.sleeps:
            job = self.loader.start(model, gs, delay_s=sleep_prewarm_delay_s(self.hw, spec), to_host=True)
        else:
            engine_start = (lc.process_start_s + lc.engine_init_s) * self._start_slowdown(gs, model) \
                if lc.prewarm_is_engine else 0.0
            job = self.loader.start(model, gs, delay_s=engine_start)
        self.jobs[(model, gs)] = job
        job.waiters.append(lambda: self._prewarm_done(rep))

    def _prewarm_done(self, rep: ReplicaState) -> None:
        self.jobs.pop((rep.model, rep.gpus), None)
        rep.ready = True
        rep.since_s = self.loop.t
        self._tl("prewarm_done", rep.model, gpus=rep.gpus, nbytes=rep.bytes_per_gpu)
        if self.sink is not None:
            self.sink.on_prewarm_done(rep.model, rep.gpus)

    def evict(self, model: str, gpus: GpuSet) -> None:
        gs = tuple(sorted(gpus))
        if not gs or gs[-1] >= len(self.state.gpus):
            return
        rep = self.state.gpus[gs[0]].replicas.get(model)
        if rep is not None and rep.gpus == gs:
            self._drop_replica(rep, "evict")

    def _drop_replica(self, rep: ReplicaState, why: str) -> None:
        job = self.jobs.pop((rep.model, rep.gpus), None)
        if job is not None:
            self.loader.cancel(job)
        for g in rep.gpus:
            del self.state.gpus[g].replicas[rep.model]
            if rep.bytes_per_gpu:
                self.ledger.change(g, PREWARM, -rep.bytes_per_gpu, self.loop.t)
        self.sleepers.unbook(rep.model, rep.gpus, self.loop.t)
        self._tl("evict", rep.model, gpus=rep.gpus, nbytes=rep.bytes_per_gpu, detail=why)

    # ---- instances -----------------------------------------------------------
    def start_instance(self, model: str, gpus: GpuSet, mem_fraction: float = 1.0,
                       compute_share: float | None = None) -> int:
        spec, gs = self._check_gpus(model, gpus)
        if not 0 < mem_fraction <= 1:
            raise CapacityError(f"start {model}: mem_fraction {mem_fraction} not in (0, 1]")
        if compute_share is not None and not 0 < compute_share <= 1:
            raise CapacityError(f"start {model}: compute_share {compute_share} not in (0, 1]")
        st_all = self.state
        for g in gs:
            others = [st_all.instances[i] for i in st_all.gpus[g].instances]
            if sum(o.mem_fraction for o in others) + mem_fraction > 1 + 1e-9:
                raise CapacityError(f"start {model} on {gs}: GPU {g} is taken by instances {[o.instance_id for o in others]}")
            if any(o.model == model for o in others):
                raise CapacityError(f"start {model} on {gs}: GPU {g} already runs an instance of it")
        now = self.loop.t
        reuse: ReplicaState | None = None
        if self.features.memory_switching:
            cand = st_all.gpus[gs[0]].replicas.get(model)
            if cand is not None and cand.gpus == gs:
                reuse = cand
        pool = st_all.gpus[gs[0]].capacity_bytes
        bb = self._block_bytes[model]
        blocks = (int(mem_fraction * pool) - spec.bytes_per_gpu) // bb
        lim = self.hw.engine
        if lim.kv_cache_bytes is not None:  # the engine is given a fixed KV cache (--kv-cache-memory-bytes)
            blocks = min(blocks, lim.kv_cache_bytes // bb)
        if blocks < min_kv_blocks(lim.max_model_len, lim.kv_block_tokens):
            raise CapacityError(f"start {model}: mem_fraction {mem_fraction} leaves {max(blocks, 0)} KV blocks")
        # check before changing anything: free memory plus what evicting other replicas would free
        victims: dict[int, ReplicaState] = {}
        for g in gs:
            for rep in st_all.gpus[g].replicas.values():
                if rep is not reuse:
                    victims[id(rep)] = rep
        sleeps = self.hw.lifecycle.sleeps
        need = blocks * bb + (0 if reuse is not None and not sleeps else spec.bytes_per_gpu)
        for g in gs:
            freed = sum(r.bytes_per_gpu for r in victims.values() if g in r.gpus)
            if st_all.gpus[g].free_bytes + freed < need:
                raise CapacityError(f"start {model} on {gs}: GPU {g} cannot hold {need} B "
                                    f"({st_all.gpus[g].free_bytes} B free, {freed} B of replicas to evict)")
        for rep in victims.values():  # evict whole replicas touching these GPUs
            self._drop_replica(rep, f"claimed by {model}")
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
            self.ledger.change(g, KV, blocks * bb, now)
        busy_slow = self._start_slowdown(gs, model)  # before this instance is on the books
        if self._setup and self.setup_ready:
            kind = StartKind.WARM
        elif reuse is not None:
            kind = StartKind.PREWARMED
        elif self.features.worker_pool and self.workers.take(gs[0] // st_all.gpus_per_node):
            kind = StartKind.WORKER  # a bounded pool is refilled when this start ends (_refill_worker)
        else:
            kind = StartKind.COLD
        iid = self._next_iid
        self._next_iid += 1
        st = InstanceState(instance_id=iid, model=model, gpus=gs, phase=InstancePhase.STARTING, start_kind=kind,
                           created_s=now, kv_blocks_total=blocks, mem_fraction=mem_fraction)
        st_all.instances[iid] = st
        for g in gs:
            st_all.gpus[g].instances.append(iid)
        if mem_fraction < 1:
            self._colocated += 1
        inst = Instance(st, self._lat[model], lim, self.loop, self.req, self._req_done,  # type: ignore[arg-type]
                        (self.seg_inst, self.seg_t0, self.seg_t1), self._drained, self._preempted,
                        st_all.instances.note_idle)  # type: ignore[attr-defined]
        inst.set_kv_blocks(blocks)
        inst.reuse = reuse is not None
        self.insts[iid] = inst
        if compute_share is not None:
            self._share[iid] = compute_share
        if mem_fraction < 1 or self._colocated or compute_share is not None:
            self._update_slow(gs)
        self._tl("instance_start", model, iid, gs, spec.bytes_per_gpu, blocks, str(kind))
        lc = self.hw.lifecycle
        if kind is StartKind.WARM:
            inst.t_load0 = inst.t_load1 = now
            self.loop.at(now, self._ready, inst)
            return iid
        # the process (and CUDA context) exists: a pre-spawned worker, a standby or a sleeping engine
        fresh = not (kind is StartKind.WORKER or (reuse is not None and (
            self.features.worker_pool or lc.prewarm_is_engine or lc.sleeps)))
        plan = plan_start(self.hw, spec, adopt=reuse is not None, fresh_process=fresh, busy=busy_slow)
        inst.post_s = plan.post_s
        inst.wake = plan.load == WAKE
        if reuse is not None:
            inst.job = job
        if plan.load == ADOPT and plan.first_kv_blocks is not None:
            inst.kv_ramp = kv_ramp(lc, plan.first_kv_blocks, blocks, bb)
            if inst.kv_ramp:  # the first step may run once its blocks are mapped; the rest follow
                inst.kv_mapped = plan.first_kv_blocks
                inst.set_kv_blocks(plan.first_kv_blocks)
        self.loop.at(now + plan.init_s, self._init_done, inst)
        return iid

    def _start_slowdown(self, gs: GpuSet, model: str) -> float:
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

    def _refill_worker(self, inst: Instance) -> None:
        """The start that used a pre-spawned worker ended (ready or stopped): replace it (once)."""
        if inst.st.start_kind is StartKind.WORKER and not inst.refilled:
            inst.refilled = True
            self.workers.replace(inst.st.gpus[0] // self.state.gpus_per_node)

    def _init_done(self, inst: Instance) -> None:
        if inst.st.phase is InstancePhase.STOPPED:
            return
        inst.t_load0 = self.loop.t
        if inst.reuse:
            job = inst.job
            after = self._wake if inst.wake else self._load_done
            if job is None or job.done:
                after(inst)
            else:  # the replica is still loading (a sleeping one into host memory)
                job.waiters.append(lambda: after(inst))
        else:
            inst.job = self.loader.start(inst.st.model, inst.st.gpus)
            inst.job.waiters.append(lambda: self._load_done(inst))

    def _wake(self, inst: Instance) -> None:
        """A woken sleeping replica: copy its weights from pinned host memory onto the instance's GPUs."""
        if inst.st.phase is InstancePhase.STOPPED:
            return
        inst.job = self.loader.start(inst.st.model, inst.st.gpus, wake=True)
        inst.job.waiters.append(lambda: self._load_done(inst))

    def _kv_mapped(self, arg: tuple[Instance, int]) -> None:
        """Background KV mapping reached ``blocks``: they become usable (net of blocks lent)."""
        inst, blocks = arg
        if inst.st.phase is InstancePhase.STOPPED:
            return
        inst.kv_mapped = blocks
        inst.set_kv_blocks(min(blocks, inst.st.kv_blocks_total - inst.st.kv_blocks_lent))
        inst.start_serving()  # requests that waited for KV space may now be admitted

    def _load_done(self, inst: Instance) -> None:
        if inst.st.phase is InstancePhase.STOPPED:
            return
        inst.t_load1 = self.loop.t
        self.loop.at(self.loop.t + inst.post_s, self._ready, inst)

    def _ready(self, inst: Instance) -> None:
        st = inst.st
        if st.phase is InstancePhase.STOPPED:
            return
        inst.t_ready = st.ready_s = self.loop.t
        inst.job = None
        for dt, blocks in inst.kv_ramp:
            self.loop.at(self.loop.t + dt, self._kv_mapped, (inst, blocks))
        self._refill_worker(inst)
        if st.phase is InstancePhase.STARTING:
            st.phase = InstancePhase.READY
        self._tl("instance_ready", st.model, st.instance_id, st.gpus)
        inst.start_serving()
        if st.phase is InstancePhase.STOPPING and inst.empty():
            self._finish_stop(inst)
        elif st.phase is InstancePhase.READY and self.sink is not None:
            self.sink.on_instance_ready(st.instance_id)

    def stop_instance(self, instance_id: int, keep_weights: bool = False) -> None:
        st = self.state.instances.get(instance_id)
        if st is None or st.phase not in _SERVING:
            return  # already stopping or stopped: idempotent
        inst = self.insts[instance_id]
        was = st.phase
        st.phase = InstancePhase.STOPPING
        inst.keep = keep_weights or self.features.keep_weights_on_stop
        self._tl("instance_stopping", st.model, instance_id, st.gpus)
        if was is InstancePhase.STARTING and st.inflight == 0:
            if inst.job is not None and not inst.job.done:
                self.loader.cancel(inst.job)
                inst.keep = False  # weights incomplete
            self._finish_stop(inst)
        elif was is InstancePhase.READY and inst.empty():
            self._finish_stop(inst)

    def _drained(self, inst: Instance) -> None:
        if inst.st.phase is InstancePhase.STOPPING and not math.isnan(inst.t_ready):
            self._finish_stop(inst)

    def _finish_stop(self, inst: Instance) -> None:
        st = inst.st
        now = self.loop.t
        spec = self.state.models[st.model]
        bb = self._block_bytes[st.model]
        kv_held = (st.kv_blocks_total - st.kv_blocks_lent) * bb
        keep = inst.keep and (inst.reuse or not math.isnan(inst.t_load1))
        sleeps = self.hw.lifecycle.sleeps
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
        if st.mem_fraction < 1:
            self._colocated -= 1
        self._share.pop(st.instance_id, None)
        self._update_slow(st.gpus)
        st.phase = InstancePhase.STOPPED
        inst.t_stop = now
        self._refill_worker(inst)  # stopped before it was ready
        inst.gen += 1
        self._tl("instance_stop", st.model, st.instance_id, st.gpus, detail="kept_weights" if keep else "")
        if keep:
            self._tl("prewarm_done", st.model, gpus=st.gpus, nbytes=spec.bytes_per_gpu, detail="kept_on_stop")
        if self.sink is not None:
            self.sink.on_instance_stopped(st.instance_id)
        del self.state.instances[st.instance_id]  # the state is the live picture

    def lend_kv(self, instance_id: int, blocks: int) -> int:
        st = self.state.instances.get(instance_id)
        if st is None or st.phase is InstancePhase.STOPPED:
            return 0
        inst = self.insts[instance_id]
        bb = self._block_bytes[st.model]
        now = self.loop.t
        target = max(0, int(blocks))
        if target > st.kv_blocks_lent:
            free = st.kv_blocks_total - st.kv_blocks_lent - inst.used_blocks()
            d = min(target - st.kv_blocks_lent, max(free, 0))
            for g in st.gpus:
                self.ledger.change(g, KV, -d * bb, now)
        else:
            room = min(self.state.gpus[g].free_bytes for g in st.gpus) // bb
            d = -min(st.kv_blocks_lent - target, room)
            for g in st.gpus:
                self.ledger.change(g, KV, -d * bb, now)
        if d:
            st.kv_blocks_lent += d
            inst.set_kv_blocks(min(inst.kv_mapped, st.kv_blocks_total - st.kv_blocks_lent))
            self._tl("kv_reserve", st.model, instance_id, st.gpus, nbytes=st.kv_blocks_lent * bb,
                     blocks=st.kv_blocks_lent)
        return st.kv_blocks_lent

    # ---- requests ------------------------------------------------------------
    def dispatch(self, request_id: int, instance_id: int) -> None:
        st = self.state.instances.get(instance_id)
        if st is None or (st.phase is not _STARTING and st.phase is not _READY):
            raise CapacityError(f"dispatch of request {request_id} to instance {instance_id} which is not serving")
        req = self.req
        assert req is not None
        row = request_id if req.ids_are_rows else req.row(request_id)
        st.inflight += 1
        req.instance[row] = instance_id
        self.insts[instance_id].enqueue(row)

    def _arrive(self, row: int) -> None:
        """Arrival of workload row ``row``; schedules the next arrival (one heap entry at a time)."""
        req = self.req
        self._delivered += 1
        nxt = row + 1
        if nxt < req.n:  # type: ignore[union-attr]
            heapq.heappush(self.loop.heap, (req.arrival[nxt], next(self.loop.seq), self._arrive_cb, nxt))  # type: ignore[union-attr]
        self.sink.on_arrival(_request(req.ids[row], req.arrival[row], req.model_names[req.model[row]],  # type: ignore[union-attr]
                                      req.inp[row], req.out[row]))  # type: ignore[union-attr]

    def _req_done(self, inst: Instance, row: int, status: int) -> None:
        self._ended += 1
        if self._ended >= self._n and self._delivered >= self._n:
            self.loop.halt()  # every request ended: the replay is over after this event
        if self.sink is not None:
            st = inst.st
            self.sink.on_finish(self.req.ids[row], st.model, st.instance_id, _STATUS[status])  # type: ignore[union-attr]

    def _preempted(self, inst: Instance, row: int) -> None:
        self._tl("preempt", inst.st.model, inst.st.instance_id, inst.st.gpus)

    # ---- the run -------------------------------------------------------------
    def replay(self, workload: pd.DataFrame, controller: Any, until_s: float, *,
               on_start: Callable[[], None] | None = None,
               progress: Callable[[float], None] | None = None) -> ReplayInfo:
        self.req = req = RequestTable(workload, {m: i for i, m in enumerate(self.state.models)})
        self.sink = controller
        self._setup = True
        controller.start()
        self._setup = False
        if on_start is not None:
            on_start()
        n = self._n = req.n
        if n:
            self.loop.at(req.arrival[0], self._arrive_cb, 0)
        # the run ends when every request has ended (``_req_done`` halts the loop); with no requests
        # at all, after the first event (as a stop predicate that is always true)
        self.loop.run(until_s, None if n else (lambda: True), progress, self.progress_every_s)
        controller.stop()
        self.end_s = self.loop.t
        unfinished = 0
        for r in controller.pending_requests():
            row = req.row(r.request_id)
            req.status[row] = TIMEOUT
            unfinished += 1
        for inst in self.insts.values():
            for row in inst.abandon():
                req.status[row] = TIMEOUT
                unfinished += 1
        status = np.frombuffer(req.status, dtype=np.int8)
        undelivered = status == PENDING  # arrivals after until_s (none when until_s >= the last arrival)
        if undelivered.any():
            unfinished += int(undelivered.sum())
            status[undelivered] = TIMEOUT
        return ReplayInfo(end_s=self.end_s, requests=n, unfinished=unfinished, events=self.loop.events,
                          extra={"bytes_loaded": self.net.bytes_moved, "instances": len(self.insts)})

    # ---- outputs -------------------------------------------------------------
    def request_log(self) -> pd.DataFrame:
        assert self.req is not None, "replay() first"
        return build_request_log(self.req, self.insts)

    def timeline(self) -> pd.DataFrame:
        return build_timeline(self.timeline_rows)

    def utilization(self, interval_s: float) -> pd.DataFrame:
        return build_utilization(self, interval_s)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "sim",
            "simulated": True,
            "hardware_profile": self.hw.name,
            "hardware_placeholder": self.hw.placeholder,
            "features": self.features.as_dict(),
            "setup_ready": self.setup_ready,
            "nodes": self.state.nodes,
            "gpus_per_node": self.state.gpus_per_node,
        }
