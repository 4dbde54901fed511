"""WarmServe: forecast-driven prewarming on universal workers (docs/reference.md §4-§5).

Per tick (0.5 s), in order:

1. **Forecast.** When ``now`` crosses a window boundary (``inputs.window_s``
   from the replay start) the controller's ``LoadTracker.close_window`` gives
   each model's observed (mean, peak) in-flight count; the forecaster
   observes it and predicts the next window. (The observed load includes
   requests queued at the front door, as published.)
2. **Autoscale** (``AutoscalingPolicy``): stops keep weights as prewarmed
   replicas (``features.keep_weights_on_stop``); starts prefer GPUs that hold a replica
   of the model, else idle GPUs holding the fewest / least valuable replicas.
3. **KV-cache reservation** (``kv_reservation``): ready instances lend idle KV
   blocks to prewarming, and take them back when their load rises
   (``return_stale_kv``).
4. **Proactive prewarming**: replica demand and scores from the forecast
   (``demand``), placed into free memory by the placement named in
   ``placement`` (``warmserve.control.placement.PLACEMENTS``: ``evict_aware``
   or the published ``round_robin`` ablation; a new placement registers there
   and needs no change here), as ``Prewarm`` commands.

**Re-planning rule** (step 4). The plan is a pure function of the forecast,
the serving instances per model, the free bytes of every GPU and the
existing replicas (every replica change moves free bytes). The policy keeps
a fingerprint of those inputs (forecast window, (instance id, phase) pairs,
per-GPU free bytes, GPUs claimed this tick) and re-plans only when it
changed; an unchanged fingerprint means the same plan, which is already
applied. So a 24 h replay ticking every 0.5 s plans only when something
happened. Commands of steps 2-3 are folded into the planner's view (claimed
GPUs take no replicas, evicted replicas free their bytes, KV being returned
is not free), so one tick never oversubscribes memory.

The initial forecast (window 0, the prior) is planned in ``setup`` so
replicas can load before the first request, as the published manager
prewarms from start-up on.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from warmserve.cluster.rules import kv_block_bytes
from warmserve.control.autoscaling import AutoscalingPolicy
from warmserve.control.demand import ReplicaDemand, model_demand
from warmserve.control.forecaster import Forecaster, Prediction
from warmserve.control.kv_reservation import kv_commands
from warmserve.control.placement import PLACEMENTS, ModelDemand, PlacementOptions, PlacementView, Replica
from warmserve.control.policy import PolicyContext, PolicyInputs
from warmserve.control.seam import (
    Command,
    Evict,
    GpuSet,
    InstancePhase,
    InstanceState,
    LendKv,
    Prewarm,
    StartInstance,
)
from warmserve.errors import InputError


class WarmServePolicy(AutoscalingPolicy):
    name = "warmserve"

    def __init__(
        self,
        inputs: PolicyInputs,
        forecaster: Forecaster | None,
        prewarm: bool,
        placement: str,
        round_robin_published: bool,
        kv_reservation: bool,
        return_stale_kv: bool,
        score_bandwidth_GBps: float | None,
        **scaling: Any,  # AutoscalingPolicy's keyword arguments
    ) -> None:
        super().__init__(inputs, **scaling)
        self._place = PLACEMENTS.get(placement)  # InputError naming system.policy.placement if unknown
        if prewarm and forecaster is None:
            raise InputError("system.policy.forecaster: prewarming needs a forecaster (or set prewarm: false)")
        self.forecaster = forecaster if prewarm else None
        self.prewarm = prewarm
        self.placement = placement
        self.placement_options = PlacementOptions(round_robin_published=round_robin_published)
        self.kv_reservation = kv_reservation and prewarm  # published: KV prewarm requires prewarm
        self.return_stale_kv = return_stale_kv
        hw = inputs.hardware
        if score_bandwidth_GBps is None:
            if hw is None:
                raise InputError("system.policy.score_bandwidth_GBps is null but no hardware profile was given")
            score_bandwidth_GBps = hw.pcie_h2d_GBps
        self.bandwidth = float(score_bandwidth_GBps)
        if self.kv_reservation and hw is None:
            raise InputError("kv_reservation needs the hardware profile's engine.kv_block_tokens "
                             "and engine.max_model_len")
        self._block_tokens = hw.engine.kv_block_tokens if hw is not None else 0
        # blocks one maximum-length sequence needs: always kept free (kv_reservation module doc)
        self._min_free = -(-(hw.engine.max_model_len if hw is not None else 0) // (self._block_tokens or 1)) + 1
        self._forecast: dict[str, Prediction] = {}
        self._demand: dict[str, ReplicaDemand] = {}
        self._scores: dict[tuple[str, GpuSet], float] = {}
        self._fingerprint: object = None
        self._t0 = 0.0
        self._next_boundary = inputs.window_s
        self.plans = 0  # how many times step 4 ran (the re-planning rule's effect)
        if self.forecaster is not None:
            self.forecaster.fit(inputs)  # raises InputError naming the model on failure
            self._forecast = self.forecaster.predict()

    # ---- SystemPolicy -----------------------------------------------------
    def setup(self, ctx: PolicyContext) -> list[Command]:
        self._t0 = ctx.now
        self._next_boundary = ctx.now + self.inputs.window_s
        return self._plan(ctx, [], set()) if self.prewarm else []

    def forecast_snapshot(self) -> dict[str, tuple[float, float]]:
        return {m: (p.mean, p.peak) for m, p in self._forecast.items()}

    def replica_score(self, model: str, gpus: GpuSet) -> float:
        return self._scores.get((model, gpus), 0.0)

    def on_tick(self, ctx: PolicyContext) -> list[Command]:
        if self.forecaster is not None and ctx.now >= self._next_boundary:
            self.forecaster.observe(ctx.load.close_window(ctx.now))
            while self._next_boundary <= ctx.now:
                self._next_boundary += self.inputs.window_s
            self._forecast = self.forecaster.predict()
        claimed: set[int] = set()
        cmds = self.autoscale(ctx, claimed)
        if self.kv_reservation:
            cmds += kv_commands(ctx.state, self.instance_capacity, self.return_stale_kv, self._block_bytes,
                                self.replica_score, lambda inst: self._min_free)
        if self.prewarm:
            cmds += self._plan(ctx, cmds, claimed)
        return cmds

    # ---- planning ---------------------------------------------------------
    def _block_bytes(self, inst: InstanceState) -> int:
        return kv_block_bytes(self.specs[inst.model], self._block_tokens)  # as the backends count it

    def _plan(self, ctx: PolicyContext, cmds: list[Command], claimed: set[int]) -> list[Command]:
        st = ctx.state
        free = np.fromiter((g.free_bytes for g in st.gpus), dtype=np.int64, count=len(st.gpus))
        running = {m: len(st.instances_of(m, (InstancePhase.READY,))) for m in self.models}
        fp = (
            self.forecaster.window if self.forecaster else -1,
            tuple((i.instance_id, i.phase) for i in st.instances.values()),
            free.tobytes(),
            tuple(sorted(claimed)),
            tuple(c for c in cmds if isinstance(c, (Evict, LendKv))),
        )
        if fp == self._fingerprint:
            return []
        self._fingerprint = fp
        self.plans += 1
        self._demand = {
            m: model_demand(self.specs[m], p.mean, p.peak, running[m], self.instance_capacity, self.bandwidth)
            for m, p in self._forecast.items()
        }
        view = self._view(ctx, free, cmds, claimed)
        demand = [ModelDemand(m, self.specs[m].tp, self.specs[m].bytes_per_gpu, self._demand[m])
                  for m in self.models if m in self._demand]
        actions = self._place(view, demand, self.placement_options)
        for m, gpus in actions:
            rank = sum(1 for k in self._scores if k[0] == m)
            self._scores[(m, gpus)] = self._demand[m].score(rank)
        return [Prewarm(m, gpus) for m, gpus in actions]

    def _view(self, ctx: PolicyContext, free: np.ndarray, cmds: list[Command], claimed: set[int]) -> PlacementView:
        """The planner's picture after this tick's earlier commands take effect."""
        st = ctx.state
        free = free.copy()
        evicted = {(c.model, c.gpus) for c in cmds if isinstance(c, Evict)}
        for c in cmds:
            if isinstance(c, LendKv):
                inst = st.instances[c.instance_id]
                back = max(0, inst.kv_blocks_lent - c.blocks) * self._block_bytes(inst)
                for g in inst.gpus:
                    free[g] -= back
        started = {(c.model, c.gpus) for c in cmds if isinstance(c, StartInstance)}
        reps: dict[tuple[str, GpuSet], int] = {}
        for gpu in st.gpus:
            for m, r in gpu.replicas.items():
                reps[(m, r.gpus)] = r.bytes_per_gpu
        kept: list[tuple[str, GpuSet]] = []
        for key, size in reps.items():
            m, gpus = key
            if key in evicted or key in started or any(g in claimed for g in gpus):
                for g in gpus:  # evicted, or adopted by / evicted for a start: bytes come back
                    free[g] += size
                continue
            kept.append(key)
        for g in claimed:
            free[g] = -1
        present: dict[str, set[int]] = defaultdict(set)
        for inst in st.instances.values():
            if inst.phase in (InstancePhase.STARTING, InstancePhase.READY, InstancePhase.STOPPING):
                present[inst.model].update(inst.gpus)
        for c in cmds:
            if isinstance(c, StartInstance):
                present[c.model].update(c.gpus)
        # existing replicas get the scores of their rank in the current demand (lowest GPUs first)
        by_model: dict[str, list[GpuSet]] = defaultdict(list)
        for m, gpus in sorted(kept):
            by_model[m].append(gpus)
        replicas = []
        self._scores = {}
        for m, sets in by_model.items():
            d = self._demand.get(m)
            for rank, gpus in enumerate(sets):
                s = d.score(rank) if d else 0.0
                self._scores[(m, gpus)] = s
                replicas.append(Replica(m, gpus, s))
        return PlacementView(st.nodes, st.gpus_per_node, free, replicas, present)
