"""A tiny stand-in backend for policy tests: keeps ``ClusterState`` honest, no latency model.

It enforces the seam's memory rules (``CapacityError`` on any oversubscription
or double booking), so a policy that passes here never asks the twin for the
impossible. Timing is crude and fixed: starts take ``start_s`` (``hit_s``
when a replica of the model on exactly those GPUs is adopted), prewarms take
``prewarm_s``, a request takes ``service_s`` once its instance is ready.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from warmserve.cluster.rules import kv_block_bytes
from warmserve.config import load_yaml
from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import PolicyInputs
from warmserve.control.seam import (
    Backend,
    CapacityError,
    Clock,
    ClusterState,
    GpuState,
    InstancePhase,
    InstanceState,
    ModelSpec,
    ReplicaState,
    Request,
    RequestStatus,
    StartKind,
)
from warmserve.hardware import load_profile

GIB = 2**30


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        self._q: list[tuple[float, int, Callable[[], None]]] = []
        self._n = itertools.count()

    def now(self) -> float:
        return self.t

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._q, (self.t + delay_s, next(self._n), fn))

    def run_until(self, until: float) -> None:
        while self._q and self._q[0][0] <= until:
            t, _, fn = heapq.heappop(self._q)
            self.t = t
            fn()
        self.t = until


class FakeBackend(Backend):
    def __init__(
        self,
        models: dict[str, ModelSpec],
        nodes: int,
        gpus_per_node: int,
        capacity_bytes: int = 72 * GIB,
        block_tokens: int = 256,
        start_s: float = 10.0,
        hit_s: float = 1.0,
        prewarm_s: float = 2.0,
        service_s: float = 3.0,
    ) -> None:
        self.clock = FakeClock()
        gpus = [GpuState(gpu=g, node=g // gpus_per_node, capacity_bytes=capacity_bytes)
                for g in range(nodes * gpus_per_node)]
        self.state = ClusterState(nodes=nodes, gpus_per_node=gpus_per_node, gpus=gpus, models=dict(models))
        self.block_tokens = block_tokens
        self.start_s, self.hit_s, self.prewarm_s, self.service_s = start_s, hit_s, prewarm_s, service_s
        self.sink: Controller | None = None
        self._ids = itertools.count()
        self._kv_bytes: dict[int, int] = {}  # per-GPU bytes of an instance's KV
        self.log: list[tuple] = []
        self.finished: dict[int, RequestStatus] = {}
        self._requests: dict[int, Request] = {}
        self.commands: list[str] = []

    # ---- helpers --------------------------------------------------------
    def _block_bytes(self, model: str) -> int:
        return kv_block_bytes(self.state.models[model], self.block_tokens)  # as both backends count it

    def _use(self, g: int, delta: int) -> None:
        gpu = self.state.gpus[g]
        gpu.used_bytes += delta
        if gpu.used_bytes > gpu.capacity_bytes or gpu.used_bytes < 0:
            raise CapacityError(f"GPU {g} would hold {gpu.used_bytes} of {gpu.capacity_bytes} bytes")

    def _drop_replica(self, model: str, gpus: tuple[int, ...]) -> None:
        for g in gpus:
            rep = self.state.gpus[g].replicas.pop(model, None)
            if rep is not None:
                self._use(g, -rep.bytes_per_gpu)

    # ---- verbs ----------------------------------------------------------
    def start_instance(self, model: str, gpus: tuple[int, ...], mem_fraction: float = 1.0,
                       compute_share: float | None = None) -> int:
        self.commands.append("start")
        spec = self.state.models[model]
        if len(gpus) != spec.tp or len({g // self.state.gpus_per_node for g in gpus}) != 1:
            raise CapacityError(f"bad GPU set {gpus} for {model}")
        hit = all(self.state.gpus[g].replicas.get(model) is not None
                  and self.state.gpus[g].replicas[model].gpus == gpus for g in gpus)
        for g in gpus:
            gpu = self.state.gpus[g]
            if mem_fraction >= 1.0 and gpu.instances:
                raise CapacityError(f"GPU {g} already runs instances {gpu.instances}")
            for m, rep in list(gpu.replicas.items()):
                if not (hit and m == model):
                    self._drop_replica(m, rep.gpus)
        iid = next(self._ids)
        footprint = int(self.state.gpus[gpus[0]].capacity_bytes * mem_fraction)
        kv = footprint - spec.bytes_per_gpu
        if kv <= 0:
            raise CapacityError(f"{model} does not fit in {footprint} bytes")
        for g in gpus:
            if hit:
                self.state.gpus[g].replicas.pop(model)
                self._use(g, kv)
            else:
                self._use(g, footprint)
            self.state.gpus[g].instances.append(iid)
        self._kv_bytes[iid] = kv
        inst = InstanceState(
            instance_id=iid,
            model=model,
            gpus=gpus,
            phase=InstancePhase.STARTING,
            start_kind=StartKind.PREWARMED if hit else StartKind.COLD,
            created_s=self.clock.now(),
            kv_blocks_total=kv // self._block_bytes(model),
            mem_fraction=mem_fraction,
        )
        self.state.instances[iid] = inst
        self.log.append(("start", self.clock.now(), model, gpus, hit))
        self.clock.call_later(self.hit_s if hit else self.start_s, lambda: self._ready(iid))
        return iid

    def _ready(self, iid: int) -> None:
        inst = self.state.instances[iid]
        if inst.phase != InstancePhase.STARTING:
            return
        inst.phase = InstancePhase.READY
        inst.ready_s = self.clock.now()
        self._pending_service(iid)
        assert self.sink is not None
        self.sink.on_instance_ready(iid)

    def _pending_service(self, iid: int) -> None:
        for rid, (where, started) in list(self._where.items()):
            if where == iid and not started:
                self._where[rid] = (iid, True)
                self.clock.call_later(self.service_s, lambda rid=rid: self._finish(rid))

    def stop_instance(self, instance_id: int, keep_weights: bool = False) -> None:
        self.commands.append("stop")
        inst = self.state.instances[instance_id]
        if inst.phase not in (InstancePhase.READY, InstancePhase.STARTING):
            raise CapacityError(f"stop of instance {instance_id} in phase {inst.phase}")
        inst.phase = InstancePhase.STOPPING
        self._keep[instance_id] = keep_weights  # as the backends: only the verb's argument counts
        if inst.inflight == 0:
            self._stopped(instance_id)

    def _stopped(self, iid: int) -> None:
        inst = self.state.instances[iid]
        spec = self.state.models[inst.model]
        keep = self._keep.pop(iid, False)
        for g in inst.gpus:
            gpu = self.state.gpus[g]
            gpu.instances.remove(iid)
            lent_bytes = inst.kv_blocks_lent * self._block_bytes(inst.model)
            self._use(g, -(self._kv_bytes[iid] - lent_bytes))
            if keep:
                gpu.replicas[inst.model] = ReplicaState(inst.model, inst.gpus, spec.bytes_per_gpu, True,
                                                        self.clock.now())
            else:
                self._use(g, -spec.bytes_per_gpu)
        inst.phase = InstancePhase.STOPPED
        assert self.sink is not None
        self.sink.on_instance_stopped(iid)

    def prewarm(self, model: str, gpus: tuple[int, ...]) -> None:
        self.commands.append("prewarm")
        spec = self.state.models[model]
        for g in gpus:
            if model in self.state.gpus[g].replicas:
                raise CapacityError(f"{model} twice on GPU {g}")
            if any(self.state.instances[i].model == model for i in self.state.gpus[g].instances):
                raise CapacityError(f"{model} replica on a GPU running {model}")
        for g in gpus:
            self._use(g, spec.bytes_per_gpu)
            self.state.gpus[g].replicas[model] = ReplicaState(model, gpus, spec.bytes_per_gpu, False, self.clock.now())
        self.log.append(("prewarm", self.clock.now(), model, gpus))

        def done() -> None:
            rep = self.state.gpus[gpus[0]].replicas.get(model)
            if rep is not None and rep.gpus == gpus:
                for g in gpus:
                    self.state.gpus[g].replicas[model].ready = True
                assert self.sink is not None
                self.sink.on_prewarm_done(model, gpus)

        self.clock.call_later(self.prewarm_s, done)

    def evict(self, model: str, gpus: tuple[int, ...]) -> None:
        self.commands.append("evict")
        self._drop_replica(model, gpus)

    def dispatch(self, request_id: int, instance_id: int) -> None:
        inst = self.state.instances[instance_id]
        if inst.phase not in (InstancePhase.READY, InstancePhase.STARTING):
            raise CapacityError(f"dispatch to instance {instance_id} in phase {inst.phase}")
        inst.inflight += 1
        self._where[request_id] = (instance_id, False)
        if inst.phase == InstancePhase.READY:
            self._where[request_id] = (instance_id, True)
            self.clock.call_later(self.service_s, lambda: self._finish(request_id))

    def lend_kv(self, instance_id: int, blocks: int) -> int:
        self.commands.append("lend")
        inst = self.state.instances[instance_id]
        bb = self._block_bytes(inst.model)
        blocks = max(0, min(blocks, inst.kv_blocks_total))
        delta = (blocks - inst.kv_blocks_lent) * bb
        for g in inst.gpus:
            self._use(g, -delta)
        inst.kv_blocks_lent = blocks
        return blocks

    # ---- replay ---------------------------------------------------------
    def _finish(self, rid: int) -> None:
        iid, _ = self._where.pop(rid)
        inst = self.state.instances[iid]
        inst.inflight -= 1
        req = self._requests[rid]
        self.finished[rid] = RequestStatus.OK
        assert self.sink is not None
        self.sink.on_finish(rid, req.model, iid, RequestStatus.OK)
        if inst.phase == InstancePhase.STOPPING and inst.inflight == 0:
            self._stopped(iid)

    def replay(self, workload: pd.DataFrame, controller: Controller, until_s: float) -> None:
        self.sink = controller
        self._where: dict[int, tuple[int, bool]] = {}
        self._keep: dict[int, bool] = {}
        controller.start()
        for row in workload.itertuples(index=False):
            req = Request(int(row.request_id), float(row.arrival_s), str(row.model), int(row.input_tokens),
                          int(row.output_tokens))
            self._requests[req.request_id] = req
            self.clock.call_later(req.arrival_s - self.clock.now(), lambda req=req: controller.on_arrival(req))
        self.clock.run_until(until_s)
        controller.stop()


# ---------------------------------------------------------------- systems as configured
def policy_kwargs(system: str, **over: Any) -> dict[str, Any]:
    """``configs/system/<system>.yaml``'s policy keys (no ``_target_`` / forecaster), updated by ``over``:
    tests build policies with the configured values, never with a second copy of them."""
    cfg = OmegaConf.to_container(load_yaml("system", system).policy, resolve=True)
    assert isinstance(cfg, dict)
    cfg.pop("_target_")
    cfg.pop("forecaster", None)
    cfg.update(over)
    return cfg


def policy_inputs(models: dict[str, ModelSpec], nodes: int, gpus_per_node: int, *, system: str = "warmserve",
                  hardware: str | None = "a100-80gb", window_s: float = 300.0, seed: int = 42,
                  **data: Any) -> PolicyInputs:
    """``PolicyInputs`` for a test: the typed ``hardware`` profile and ``system``'s configured features."""
    return PolicyInputs(models=models, nodes=nodes, gpus_per_node=gpus_per_node,
                        hardware=None if hardware is None else load_profile(load_yaml("hardware", hardware)),
                        features=BackendFeatures.from_config(load_yaml("system", system).features),
                        window_s=window_s, seed=seed, **data)
