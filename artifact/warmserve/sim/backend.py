"""``SimBackend``: the seam's ``Backend`` on a discrete-event twin of a GPU cluster.

It is the single source of truth about the cluster (``self.state``): every
memory change goes through the cluster book (``warmserve.cluster``, shared
with the testbed, as are the command checks), every weight load is a ``Flow``
over shared links, every instance is an ``Instance`` batching at iteration
granularity. This module holds the seam's verbs and the memory semantics
written in ``seam.py`` (claiming GPUs for a start, keeping weights on a
stop); the rest of the twin's run is in the modules it drives:

``starting``    the start state machine (init -> load -> post -> ready), each start's ``Start`` record
``kv_lending``  ``lend_kv``: an instance's free KV blocks lent to prewarming
``replay``      arrivals fed to the controller, ends counted, end-of-run timeouts
``outputs``     the request log / timeline / utilisation, built from the ``TwinRecord`` filled here

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

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from warmserve.cluster.book import ClusterBook
from warmserve.cluster.rules import (
    check_gpus,
    check_kv_blocks,
    check_prewarm,
    check_start,
    kv_block_bytes,
    kv_blocks_for_share,
)
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
)
from warmserve.hardware import check_models_fit, cluster_shape, load_profile
from warmserve.metrics.schema import gpus_str, timeline_row
from warmserve.run.protocol import ReplayInfo
from warmserve.sim.events import EventLoop
from warmserve.sim.instance import Instance
from warmserve.sim.kv_lending import lend_kv
from warmserve.sim.lifecycle import SleepingReplicas, sleep_prewarm_delay_s
from warmserve.sim.links import LinkNetwork
from warmserve.sim.loading import Loader
from warmserve.sim.outputs import TwinRecord, build_request_log, build_timeline, build_utilization
from warmserve.sim.replay import Arrivals, close_requests
from warmserve.sim.requests import RequestTable
from warmserve.sim.residency import Residency
from warmserve.sim.starting import StartMachine
from warmserve.sim.workers import WorkerPool

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
        self.state.instances.track_idle()  # routers skip scans (seam.InstanceTable)
        self.book = ClusterBook(self.state)
        self.ledger = self.book.ledger
        self.net = LinkNetwork(self.loop, self.hw, nodes)
        self.loader = Loader(self.net, self.state, self.hw, self.features, self._tl)
        self.insts: dict[int, Instance] = {}  # every instance ever
        lg = self.ledger
        self.record = TwinRecord(gpus=nodes * gpn, gpus_per_node=gpn, mem_t=lg.log_t, mem_gpu=lg.log_gpu,
                                 mem_cat=lg.log_cat, mem_delta=lg.log_delta)  # what the outputs are built from
        self.timeline_rows = self.record.timeline_rows
        self.sink: EventSink | None = None
        self.req: RequestTable | None = None
        self._next_iid = 0
        lc = self.hw.lifecycle
        self.workers = WorkerPool(self.loop, nodes, lc.worker_pool_per_node,
                                  lc.process_start_s if lc.worker_refill_s is None else lc.worker_refill_s)
        self.sleepers = SleepingReplicas(self.book, self.hw, self.features)  # sleep mode's pinned host memory
        self.host = self.sleepers.host
        self.residency = Residency(self.loop, self.book, self.loader, self.sleepers, lc.sleeps, self._tl)
        self.jobs = self.residency.jobs  # loading replicas
        self.starter = StartMachine(self.loop, self.state, self.hw, self.features, self.loader, self.workers,
                                    self._tl, self._started)
        self.starts = self.starter.starts  # instance id -> its start record (the outputs read it)
        self.record.starts = self.starts
        self.arrivals = Arrivals(self.loop)
        self._setup = False
        self._colocated = 0
        self._share: dict[int, float] = {}  # instance id -> SM share (instances started with one)
        self.end_s = 0.0
        self._block_bytes = {m: kv_block_bytes(s, self.hw.engine.kv_block_tokens) for m, s in models.items()}
        self._lat = {m: self.hw.latency_of(s) for m, s in models.items()}

    # ---- helpers -------------------------------------------------------------
    def _tl(self, kind: str, model: str = "", iid: int = -1, gpus: GpuSet = (), nbytes: int = 0, blocks: int = 0,
            start_kind: str = "", detail: str = "") -> None:
        self.timeline_rows.append(timeline_row(self.loop.t, kind, model, iid, gpus_str(gpus), nbytes, blocks,
                                               start_kind, detail))

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
        spec, gs = check_gpus(self.state, model, gpus)
        check_prewarm(self.state, model, gs)
        lc = self.hw.lifecycle
        rep = self.residency.book_replica(spec, gs)
        self._tl("prewarm_start", model, gpus=gs, nbytes=spec.bytes_per_gpu, detail=lc.prewarm_mechanism)
        if self._setup and self.setup_ready:
            # Deployed before the replay, like setup instances: the published manager prewarms
            # from start-up and the replay begins ~60 s after it answers (docs/reference.md §9).
            self._prewarm_done(rep)
            return
        if lc.sleeps:
            job = self.loader.start(model, gs, delay_s=sleep_prewarm_delay_s(self.hw, spec), to_host=True)
        else:
            engine_start = (lc.process_start_s + lc.engine_init_s) * self.starter.slowdown(gs, model) \
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
        rep = self.book.replica(model, tuple(sorted(gpus)))
        if rep is not None:
            self.residency.drop(rep, "evict")

    # ---- instances -----------------------------------------------------------
    def start_instance(self, model: str, gpus: GpuSet, mem_fraction: float = 1.0,
                       compute_share: float | None = None) -> int:
        spec, gs = check_gpus(self.state, model, gpus)
        check_start(self.state, model, gs, mem_fraction, compute_share)
        st_all = self.state
        now = self.loop.t
        reuse = self.book.replica(model, gs) if self.features.memory_switching else None
        bb = self._block_bytes[model]
        lim = self.hw.engine
        # the engine may be given a fixed KV cache (--kv-cache-memory-bytes)
        blocks = kv_blocks_for_share(spec, st_all.gpus[gs[0]].capacity_bytes, mem_fraction, lim.kv_block_tokens,
                                     lim.kv_cache_bytes)
        check_kv_blocks(model, mem_fraction, blocks, lim.max_model_len, lim.kv_block_tokens)
        iid = self._next_iid
        job = self.residency.claim(iid, spec, gs, reuse, blocks * bb)
        self._next_iid += 1
        busy_slow = self.starter.slowdown(gs, model)  # before this instance is on the books
        kind = self.starter.kind(gs, reuse=reuse is not None, warm=self._setup and self.setup_ready)
        st = InstanceState(instance_id=iid, model=model, gpus=gs, phase=InstancePhase.STARTING, start_kind=kind,
                           created_s=now, kv_blocks_total=blocks, mem_fraction=mem_fraction)
        self.book.add_instance(st)
        if mem_fraction < 1:
            self._colocated += 1
        rec = self.record
        inst = Instance(st, self._lat[model], lim, self.loop, self.req, self.arrivals.req_done,  # type: ignore[arg-type]
                        (rec.seg_inst, rec.seg_t0, rec.seg_t1), self._drained, self._preempted,
                        st_all.instances.note_idle)
        inst.set_kv_blocks(blocks)
        self.insts[iid] = inst
        if compute_share is not None:
            self._share[iid] = compute_share
        if mem_fraction < 1 or self._colocated or compute_share is not None:
            self._update_slow(gs)
        self._tl("instance_start", model, iid, gs, spec.bytes_per_gpu, blocks, str(kind))
        self.starter.begin(inst, spec, job=job, reuse=reuse is not None, blocks=blocks, block_bytes=bb,
                           busy=busy_slow)
        return iid

    def _started(self, inst: Instance) -> None:
        """``inst`` is ready (the start machine's ``on_ready``): finish a stop that waited, or tell the controller."""
        st = inst.st
        if st.phase is InstancePhase.STOPPING and inst.empty():
            self._finish_stop(inst)
        elif st.phase is InstancePhase.READY and self.sink is not None:
            self.sink.on_instance_ready(st.instance_id)

    def stop_instance(self, instance_id: int, keep_weights: bool = False) -> None:
        st = self.state.instances.get(instance_id)
        if st is None or st.phase not in _SERVING:
            return  # already stopping or stopped: idempotent
        inst = self.insts[instance_id]
        life = self.starts[instance_id]
        was = st.phase
        st.phase = InstancePhase.STOPPING
        life.keep = keep_weights  # the policy decides (features.keep_weights_on_stop -> its StopInstance)
        self._tl("instance_stopping", st.model, instance_id, st.gpus)
        if was is InstancePhase.STARTING and st.inflight == 0:
            if life.job is not None and not life.job.done:
                self.loader.cancel(life.job)
                life.keep = False  # weights incomplete
            self._finish_stop(inst)
        elif was is InstancePhase.READY and inst.empty():
            self._finish_stop(inst)

    def _drained(self, inst: Instance) -> None:
        if inst.st.phase is InstancePhase.STOPPING and not math.isnan(self.starts[inst.iid].t_ready):
            self._finish_stop(inst)

    def _finish_stop(self, inst: Instance) -> None:
        st = inst.st
        life = self.starts[st.instance_id]
        spec = self.state.models[st.model]
        keep = self.residency.release(st, spec, life.keep and (life.reuse or not math.isnan(life.t_load1)))
        if st.mem_fraction < 1:
            self._colocated -= 1
        self._share.pop(st.instance_id, None)
        self._update_slow(st.gpus)
        st.phase = InstancePhase.STOPPED
        self.starter.refill_worker(inst)  # stopped before it was ready
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
        return lend_kv(self.book, st, self.insts[instance_id], self.starts[instance_id].kv_mapped,
                       self._block_bytes[st.model], blocks, self.loop.t, self._tl)

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

    def _preempted(self, inst: Instance, row: int) -> None:
        self._tl("preempt", inst.st.model, inst.st.instance_id, inst.st.gpus)

    # ---- the run -------------------------------------------------------------
    def replay(self, workload: pd.DataFrame, controller: Any, until_s: float, *,
               on_start: Callable[[], None] | None = None,
               progress: Callable[[float], None] | None = None) -> ReplayInfo:
        self.req = self.record.requests = req = RequestTable(workload, {m: i for i, m in enumerate(self.state.models)})
        self.sink = controller
        self.arrivals.begin(req, controller)
        self._setup = True  # setup instances start warm (and setup prewarms are ready): see start_instance
        controller.start()
        self._setup = False
        if on_start is not None:
            on_start()
        n = self.arrivals.run(until_s, progress, self.progress_every_s)
        controller.stop()
        self.end_s = self.record.end_s = self.loop.t
        unfinished = close_requests(req, controller.pending_requests(), self.insts.values())
        return ReplayInfo(end_s=self.end_s, requests=n, unfinished=unfinished, events=self.loop.events,
                          extra={"bytes_loaded": self.net.bytes_moved, "instances": len(self.insts)})

    # ---- outputs -------------------------------------------------------------
    def request_log(self) -> pd.DataFrame:
        return build_request_log(self.record)

    def timeline(self) -> pd.DataFrame:
        return build_timeline(self.record)

    def utilization(self, interval_s: float) -> pd.DataFrame:
        return build_utilization(self.record, interval_s)

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
