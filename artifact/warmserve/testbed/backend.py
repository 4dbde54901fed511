"""``TestbedBackend``: the seam's ``Backend`` verbs acting on real engine processes.

The controller calls the verbs synchronously on the asyncio loop thread; each
verb updates ``ClusterState`` at once (the controller must see its own
decision) and spawns a task that does the slow, real work (start a process,
wait for ``/health``, drain, kill). Completion comes back through the
``EventSink`` exactly as on the twin.

"GPUs" on the CPU testbed are *slots*: a set of cores (``cores`` in the
config, given to each engine as ``VLLM_CPU_OMP_THREADS_BIND``) with a memory
budget (``capacity_bytes``) that the policies plan against. Memory accounting
in ``ClusterState`` follows the seam (weights, KV share, replicas) and goes
through the cluster book shared with the twin (``warmserve.cluster``: its
ledger, checks and KV sizes); an instance's KV share there is its whole share
beside the weights (the engine's KV cache and overheads), and a standby engine
starting awake holds a reservation in the book until it sleeps. The real
resident memory of each process is sampled separately into the utilisation log.

Every start records its ``Mechanism`` (see ``warmserve.testbed.mechanisms``).

On GPUs (``device: cuda``) each engine is sized by its own plan
(``warmserve.testbed.gpu_engine``): its memory share, KV cache and TP degree; every
engine has sleep mode so it can become a prewarmed replica; an engine stopped with
``keep_weights`` sleeps (KV cache freed) and wakes only its weights; and no engine
starts or wakes its KV cache on a GPU until every engine evicted or stopped there has
exited (their memory is not free before). Sleep level 2 discards weights, so the
replica reloads them (``reload_weights``) before it counts as prewarmed.

Composed of one-job pieces: ``Launcher`` (ports, pre-spawned pool, launches),
``GpuLifecycle`` (plans, stops per GPU, sleep to weights), ``Fleet`` (each instance's
and replica's engine), ``TaskSet`` (background tasks) and ``TimelineLog``. Requests are
the front door's (``warmserve.testbed.frontdoor``): ``dispatch`` tells its ``dispatch_listener``.

Longer than ~400 lines because each verb and its asynchronous half (start and bring-up,
stop and drain, prewarm and standby bring-up) belong together; their memory accounting and
command checks are the cluster book's (``warmserve.cluster``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Protocol

import aiohttp

from warmserve.cluster.book import ClusterBook
from warmserve.cluster.rules import (
    check_gpus,
    check_kv_blocks,
    check_prewarm,
    check_start,
    kv_block_bytes,
    kv_blocks_for_share,
    kv_bytes_for_share,
    share_bytes,
    start_kind,
)
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
    StartKind,
)
from warmserve.testbed.clock import WallClock
from warmserve.testbed.engines import EngineError, EngineProcess
from warmserve.testbed.fleet import Fleet, InstanceRuntime, Standby
from warmserve.testbed.gpu_lifecycle import GpuLifecycle
from warmserve.testbed.launcher import Launcher
from warmserve.testbed.mechanisms import EngineFactory, Mechanism, SleepModeClient
from warmserve.testbed.settings import TestbedSettings
from warmserve.testbed.tasks import TaskSet
from warmserve.testbed.timeline import TimelineLog


class DispatchListener(Protocol):
    """Who waits for routing decisions (the front door): told synchronously inside ``dispatch``."""

    def on_dispatch(self, request_id: int, instance_id: int, start_kind: str, mechanism: str) -> None: ...


class TestbedBackend(Backend):
    """Real engines on the wall clock. Use ``async with`` (or ``open``/``close``)."""

    clock: WallClock  # the seam's Clock, with the wall clock's start/cancel_all

    def __init__(
        self,
        settings: TestbedSettings,
        factory: EngineFactory,
        models: dict[str, ModelSpec],
        nodes: int,
        gpus_per_node: int,
        clock: WallClock,
    ) -> None:
        if len(settings.slot_cores) != nodes * gpus_per_node:
            raise ValueError(f"need {nodes * gpus_per_node} slot core sets, got {len(settings.slot_cores)}")
        self.settings = settings
        self.factory = factory
        self.clock = clock
        gpus = [GpuState(gpu=g, node=g // gpus_per_node, capacity_bytes=settings.capacity_bytes)
                for g in range(nodes * gpus_per_node)]
        self.state = ClusterState(nodes=nodes, gpus_per_node=gpus_per_node, gpus=gpus, models=dict(models))
        self.book = ClusterBook(self.state)  # every memory change and its checks (shared with the twin)
        self.sink: EventSink | None = None
        self.dispatch_listener: DispatchListener | None = None
        self.events = TimelineLog(clock)
        self.timeline_rows = self.events.rows  # read by the runner and tests
        self.counters: dict[str, int] = {"kv_lend_unsupported": 0, "prewarm_refused": 0, "ports_skipped": 0}
        self._ids = itertools.count()  # instance ids and engine names, one counter
        self.tasks = TaskSet()
        self.fleet = Fleet(self.state)
        self.launcher = Launcher(settings, factory, self.state, self._ids, lambda: self.session)
        self.gpu = GpuLifecycle(settings, factory, self.state, self.launcher.ports, lambda: self.session,
                                self.tasks.spawn)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # ---- lifecycle -------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    async def open(self) -> None:
        """Fill the pre-spawned pool (waits until each has imported its engine module)."""
        await self.launcher.fill_pool()

    async def close(self) -> None:
        """Stop every engine and task; frees all ports. Idempotent, safe after Ctrl-C."""
        if self._closed:
            return
        self._closed = True
        self.clock.cancel_all()
        self.tasks.cancel_all()
        await self.launcher.stop_all(self.fleet.engines())
        if self._session is not None:
            await self._session.close()
        self.counters["ports_skipped"] = len(self.launcher.ports.skipped)

    async def __aenter__(self) -> TestbedBackend:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def live_engines(self) -> list[EngineProcess]:
        return self.fleet.live_engines() + self.launcher.live_pool()

    async def wait_deployed(self) -> None:
        """Wait until every instance started and every replica prewarmed so far is up (the setup
        phase before t = 0, as the twin's ``setup_ready``); failures are reported by their tasks."""
        await asyncio.gather(*(self.fleet.wait_ready(i) for i in list(self.state.instances)),
                             *(sb.ready.wait() for sb in list(self.fleet.standby.values())))

    # ---- helpers ---------------------------------------------------------
    def _release_gpus(self, inst: InstanceState, keep: bool = False) -> bool:
        """Free ``inst``'s GPUs (once), its weights staying as a replica if ``keep``; returns whether kept."""
        if not self.book.holds(inst):
            return False
        return self.book.release(inst, keep, self.clock.now()) is not None

    # ---- Backend verbs ---------------------------------------------------
    def start_instance(self, model: str, gpus: GpuSet, mem_fraction: float = 1.0,
                       compute_share: float | None = None) -> int:
        # compute_share is not enforced here: the engines run without MPS (the policy notes it in run.json)
        spec, gpus = check_gpus(self.state, model, gpus)
        check_start(self.state, model, gpus, mem_fraction, compute_share)
        per_gpu = share_bytes(self.settings.capacity_bytes, mem_fraction)
        plan = self.gpu.plan(model, per_gpu)
        if plan is not None and plan.kv_bytes < self.gpu.min_kv(model):
            raise CapacityError(f"{model}: a share of {per_gpu} B per GPU leaves {plan.kv_bytes} B of KV cache, "
                                f"less than one max_model_len sequence needs ({self.gpu.min_kv(model)} B)")
        if plan is None:  # CPU: the same rule as the twin's
            check_kv_blocks(model, mem_fraction, kv_blocks_for_share(
                spec, self.settings.capacity_bytes, mem_fraction, self.settings.kv_block_tokens,
                self.settings.kv_cache_bytes), self.settings.max_model_len, self.settings.kv_block_tokens)
        standby = self.fleet.standby.get((model, gpus)) if self.settings.adopt_replicas else None
        if standby is not None and plan is not None and standby.kv_bytes > plan.kv_bytes:
            standby = None  # its KV cache, fixed at its start, is larger than this instance's share
        reuse = self.book.replica(model, gpus) if standby is not None else None
        iid = next(self._ids)
        now = self.clock.now()
        # other replicas on these slots are evicted (the published eviction point), a non-adoptable one of
        # this model too; the replica adopted (and any start-up reservation of its engine) becomes the instance's
        self.book.claim(iid, spec, gpus, reuse, max(0, per_gpu - spec.bytes_per_gpu), now,
                        lambda r: self.evict(r.model, r.gpus, reason="not adoptable" if r.model == model else None,
                                             at=now))
        if reuse is not None:
            self.fleet.standby.pop((model, gpus))
        else:
            standby = None
        kind = start_kind(warm=False, adopts=standby is not None, take_worker=self.launcher.has_prespawned)
        if kind is StartKind.PREWARMED:
            mech = Mechanism.SLEEP_WAKE if self.settings.device == "cuda" else Mechanism.STANDBY_ENGINE
        else:
            mech = Mechanism.PRESPAWNED_PROCESS if kind is StartKind.WORKER else Mechanism.PROCESS_START
        bb = kv_block_bytes(spec, self.settings.kv_block_tokens)
        if plan is not None:  # GPU: the engine's own KV cache (a standby's was fixed when it started)
            kv_bytes = standby.kv_bytes if standby is not None else plan.kv_bytes
            blocks = kv_bytes // bb
        else:  # what the engine really allocates from its share (capped by a fixed KV cache, if given)
            blocks = kv_blocks_for_share(spec, self.settings.capacity_bytes, mem_fraction,
                                         self.settings.kv_block_tokens, self.settings.kv_cache_bytes)
            kv_bytes = kv_bytes_for_share(spec, self.settings.capacity_bytes, mem_fraction,
                                          self.settings.kv_cache_bytes)
        inst = InstanceState(instance_id=iid, model=model, gpus=gpus, phase=InstancePhase.STARTING,
                             start_kind=kind, created_s=now, kv_blocks_total=blocks,
                             mem_fraction=mem_fraction)
        self.book.add_instance(inst)
        rt = InstanceRuntime(engine=None, mechanism=mech, start_mono=time.monotonic(), plan=plan, kv_bytes=kv_bytes)
        self.fleet.rt[iid] = rt
        self.events.record("instance_start", model=model, instance_id=iid, gpus=tuple(gpus),
                           bytes=per_gpu * len(gpus), mechanism=mech.value, start_kind=kind.value)
        rt.task = self.tasks.spawn(self._bring_up(iid, standby))
        return iid

    async def _bring_up(self, iid: int, standby: Standby | None) -> None:
        inst = self.state.instances[iid]
        rt = self.fleet.rt[iid]
        try:
            if standby is not None:
                await standby.ready.wait()
                if standby.error or standby.engine is None:
                    raise EngineError(f"prewarmed replica failed: {standby.error}")
                rt.engine = standby.engine
                if self.settings.device == "cuda":
                    await self.gpu.exited_on(inst.gpus)  # the evicted replicas' memory is free only once they exit
                    await SleepModeClient(self.session, rt.engine.spec.url).wake_up(["kv_cache"])
            elif rt.mechanism is Mechanism.PRESPAWNED_PROCESS and (p := self.launcher.take_prespawned()) is not None:
                try:
                    await self.gpu.exited_on(inst.gpus)
                    rt.engine = await self.launcher.launch(self.launcher.name("e", inst.model), inst.model, inst.gpus,
                                                           extra=self.gpu.plan_args(rt.plan), prespawned=p)
                finally:
                    # replenish once this start is over, not during it: on a CPU box the new process's
                    # import (a core at 100 % for ~12 s) would slow the very start it replaces
                    if not self._closed:
                        self.launcher.replenish()
            else:
                rt.mechanism = Mechanism.PROCESS_START
                inst.start_kind = StartKind.COLD
                await self.gpu.exited_on(inst.gpus)
                rt.engine = await self.launcher.launch(self.launcher.name("e", inst.model), inst.model, inst.gpus,
                                                       extra=self.gpu.plan_args(rt.plan))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any start failure is reported, never lost
            self._fail(iid, f"start failed: {exc}")
            return
        if inst.phase is InstancePhase.STOPPING:  # stopped while starting: as on the twin, it serves what
            inst.ready_s = self.clock.now()  # was dispatched to it and the waiting stop drains it
            rt.ready.set()
            return
        if inst.phase is not InstancePhase.STARTING:
            return
        inst.phase = InstancePhase.READY
        inst.ready_s = self.clock.now()
        rt.ready.set()
        self.events.record("instance_ready", model=inst.model, instance_id=iid, gpus=inst.gpus,
                           mechanism=rt.mechanism.value, detail=f"{time.monotonic() - rt.start_mono:.3f}")
        if self.sink is not None:
            self.sink.on_instance_ready(iid)
        await self._watch(iid)

    async def _watch(self, iid: int) -> None:
        """Notice an engine that dies while serving (a crash, an OOM kill, a test's SIGKILL)."""
        rt = self.fleet.rt[iid]
        while rt.engine is not None and rt.engine.alive():
            if self.state.instances[iid].phase not in (InstancePhase.READY, InstancePhase.STOPPING):
                return
            await asyncio.sleep(0.2)
        self.fail_if_exited(iid)

    def fail_if_exited(self, instance_id: int) -> bool:
        """Fail a serving (or draining) instance whose engine exited without the backend stopping it;
        True if it was failed now. The watch polls this; the front door asks at once on a broken connection."""
        rt = self.fleet.rt[instance_id]
        if rt.retiring or rt.engine is None or rt.engine.alive():
            return False
        if self.state.instances[instance_id].phase not in (InstancePhase.READY, InstancePhase.STOPPING):
            return False
        code = rt.engine.proc.returncode if rt.engine.proc else None
        self._fail(instance_id, f"engine exited with code {code}")
        return True

    def _fail(self, iid: int, why: str) -> None:
        inst = self.state.instances[iid]
        rt = self.fleet.rt[iid]
        inst.phase = InstancePhase.FAILED
        rt.error = why
        rt.ready.set()  # wake waiters; they see the error
        self._release_gpus(inst)
        if rt.engine is not None:
            self.gpu.stop_engine(rt.engine, inst.gpus, 1.0)
        self.events.record("instance_failed", model=inst.model, instance_id=iid, gpus=inst.gpus,
                           mechanism=rt.mechanism.value, detail=why.splitlines()[0][:300])
        if self.sink is not None:
            self.sink.on_instance_stopped(iid)

    def stop_instance(self, instance_id: int, keep_weights: bool = False) -> None:
        inst = self.state.instances[instance_id]
        if inst.phase not in (InstancePhase.STARTING, InstancePhase.READY):
            return
        inst.phase = InstancePhase.STOPPING
        self.events.record("instance_stopping", model=inst.model, instance_id=instance_id, gpus=inst.gpus)
        self.tasks.spawn(self._drain_and_stop(instance_id, keep_weights))  # the policy decides keep_weights

    async def _drain_and_stop(self, iid: int, keep_weights: bool) -> None:
        inst = self.state.instances[iid]
        rt = self.fleet.rt[iid]
        await rt.ready.wait()
        while inst.inflight > 0 and inst.phase is InstancePhase.STOPPING:
            await asyncio.sleep(0.05)
        if inst.phase is not InstancePhase.STOPPING:
            return  # failed meanwhile; _fail reported it
        rt.retiring = True
        keep = keep_weights and rt.engine is not None and rt.engine.alive() and all(
            inst.model not in self.state.gpus[g].replicas for g in inst.gpus)
        if keep and self.settings.device == "cuda":
            assert rt.engine is not None
            try:  # the kept engine must give back its KV cache: the ledger credits it weights only
                await self.gpu.sleep_to_weights(rt.engine)
            except Exception as exc:  # noqa: BLE001 - cannot sleep: stop it instead, and say so
                keep = False
                self.events.record("keep_weights_failed", model=inst.model, instance_id=iid, gpus=inst.gpus,
                                   detail=str(exc).splitlines()[0][:200])
        keep = self._release_gpus(inst, keep)  # the weights stay as a ready replica if kept
        if keep:
            sb = Standby(model=inst.model, gpus=inst.gpus, engine=rt.engine, kv_bytes=rt.kv_bytes)
            sb.ready.set()
            self.fleet.standby[(inst.model, inst.gpus)] = sb
            rt.engine = None
        elif rt.engine is not None:
            await self.gpu.stop_engine(rt.engine, inst.gpus)
        inst.phase = InstancePhase.STOPPED
        self.events.record("instance_stop", model=inst.model, instance_id=iid, gpus=inst.gpus,
                           detail="kept_weights" if keep else None)
        if self.sink is not None:
            self.sink.on_instance_stopped(iid)

    def prewarm(self, model: str, gpus: GpuSet) -> None:
        spec, gpus = check_gpus(self.state, model, gpus)
        check_prewarm(self.state, model, gpus)
        self.book.check_room(f"prewarm {model}", gpus, spec.bytes_per_gpu)
        if len(self.live_engines()) + self.fleet.starting_without_engine() >= self.settings.max_engines:
            # a CPU replica is a whole engine process: refuse rather than exhaust host memory
            self.counters["prewarm_refused"] += 1
            self.events.record("prewarm_refused", model=model, gpus=gpus,
                               detail=f"max_engines={self.settings.max_engines}")
            return
        kv, reserved = 0, 0
        if self.settings.gpu is not None:
            # a standby engine starts awake (weights + KV + overheads) before it sleeps to its weights: its KV
            # cache is what a whole-GPU instance would get, or what the free memory allows now (fixed for its life)
            full = self.gpu.plan(model, self.settings.capacity_bytes)
            assert full is not None
            room = min(self.state.gpus[g].free_bytes for g in gpus) - spec.bytes_per_gpu
            kv = min(full.kv_bytes, room - self.settings.gpu.overhead_bytes)
            if kv < self.gpu.min_kv(model):
                self.counters["prewarm_refused"] += 1
                self.events.record("prewarm_refused", model=model, gpus=gpus,
                                   detail=f"{room} B free beside the weights: too little to start an engine")
                return
            reserved = kv + self.settings.gpu.overhead_bytes
        self.book.add_replica(spec, gpus, self.clock.now(), reserve=reserved)
        sb = Standby(model=model, gpus=gpus, kv_bytes=kv)
        self.fleet.standby[(model, gpus)] = sb
        mech = Mechanism.SLEEP_WAKE if self.settings.device == "cuda" else Mechanism.STANDBY_ENGINE
        self.events.record("prewarm_start", model=model, gpus=gpus, bytes=spec.bytes_per_gpu * len(gpus),
                           mechanism=mech.value)
        sb.task = self.tasks.spawn(self._bring_up_standby(sb))

    async def _bring_up_standby(self, sb: Standby) -> None:
        try:
            plan = None
            if self.settings.gpu is not None:
                spec = self.state.models[sb.model]
                reserved = self.book.reserved.get((sb.model, sb.gpus), 0)  # none once adopted
                plan = self.gpu.plan(sb.model, spec.bytes_per_gpu + reserved, sb.kv_bytes)
            await self.gpu.exited_on(sb.gpus)
            sb.engine = await self.launcher.launch(self.launcher.name("s", sb.model), sb.model, sb.gpus,
                                                   extra=self.gpu.plan_args(plan))
            if plan is not None:  # sleep (drop weights+KV), then bring back only the weights = a prewarmed replica
                await self.gpu.sleep_to_weights(sb.engine)
                self.book.unreserve(sb.model, sb.gpus, self.clock.now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            sb.error = str(exc)
            sb.ready.set()
            if self.fleet.standby.get((sb.model, sb.gpus)) is sb:
                self.evict(sb.model, sb.gpus, reason=f"prewarm failed: {str(exc).splitlines()[0][:200]}")
            return
        sb.ready.set()
        for g in sb.gpus:
            r = self.state.gpus[g].replicas.get(sb.model)
            if r is not None:
                r.ready = True
        self.events.record("prewarm_done", model=sb.model, gpus=sb.gpus)
        if self.sink is not None:
            self.sink.on_prewarm_done(sb.model, sb.gpus)

    def evict(self, model: str, gpus: GpuSet, reason: str | None = None, at: float | None = None) -> None:
        """``at``: the time to book it at (a start's claim evicts at the time the claim books the rest)."""
        gpus = tuple(sorted(gpus))
        spec = self.state.models[model]
        rep = self.book.replica(model, gpus)
        if rep is not None:  # its weights and any start-up reservation leave the GPUs
            self.book.remove_replica(rep, self.clock.now() if at is None else at)
        sb = self.fleet.standby.pop((model, gpus), None)
        if sb is not None:
            if sb.task is not None and not sb.task.done():
                sb.task.cancel()
            if sb.engine is not None:
                self.gpu.stop_engine(sb.engine, gpus)
        self.events.record("evict", model=model, gpus=gpus, bytes=spec.bytes_per_gpu * len(gpus), detail=reason)

    def dispatch(self, request_id: int, instance_id: int) -> None:
        inst = self.state.instances[instance_id]
        inst.inflight += 1
        if self.dispatch_listener is not None:
            # classify now, synchronously: by the time the front door resumes the start may be done
            warm = inst.phase is InstancePhase.READY
            self.dispatch_listener.on_dispatch(
                request_id, instance_id, StartKind.WARM.value if warm else inst.start_kind.value,
                Mechanism.ROUTED.value if warm else self.fleet.rt[instance_id].mechanism.value)

    def lend_kv(self, instance_id: int, blocks: int) -> int:
        if blocks > 0:
            self.counters["kv_lend_unsupported"] += 1
        return 0
