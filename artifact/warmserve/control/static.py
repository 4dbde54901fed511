"""The ``static`` system: dedicated GPUs per model, placed once, never scaled.

A reference point ("what if every model simply had its own GPUs"): at setup
it starts a fixed number of instances per model, then only routes
(least-loaded instance under ``instance_capacity`` in flight, the published
router). Counts come from ``instances`` (explicit, per model) or, when a
model is not listed, from the priors' peak: ``ceil(max prior_peak /
requests_per_instance)``, at least one (the published replica rule, reference
docs/reference.md §5.2, with the published 32 requests per instance).

Placement is first-fit: models with larger TP first (so TP groups stay
within nodes), each instance on the lowest-numbered free GPUs of the first
node that has ``tp`` of them, aligned to a multiple of ``tp`` when possible.
If the sized counts do not fit the cluster, the largest counts are reduced
one by one (never below one) and the reduction is reported in ``notes``; if
one instance per model does not fit, it is an input error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import attrgetter

from warmserve.control.policy import PolicyContext, PolicyInputs, SystemPolicy
from warmserve.control.seam import Command, InstancePhase, Request, StartInstance
from warmserve.errors import InputError

_INFLIGHT = attrgetter("inflight")
_SERVING = (InstancePhase.STARTING, InstancePhase.READY)


class StaticPolicy(SystemPolicy):
    name = "static"

    def __init__(self, inputs: PolicyInputs, instances: Mapping[str, int] | None,
                 requests_per_instance: int, instance_capacity: int, tick_interval_s: float) -> None:
        if requests_per_instance < 1 or instance_capacity < 1 or tick_interval_s <= 0:
            raise InputError("system.policy: requests_per_instance, instance_capacity >= 1 and tick_interval_s > 0")
        self.inputs = inputs
        self.instance_capacity = int(instance_capacity)
        self.tick_interval_s = float(tick_interval_s)
        self.notes: list[str] = []
        explicit = dict(instances or {})
        for m, n in explicit.items():
            if m not in inputs.models:
                raise InputError(f"system.policy.instances.{m}: not a configured model ({list(inputs.models)})")
            if int(n) < 1:
                raise InputError(f"system.policy.instances.{m}: must be >= 1, got {n}")
        peaks: dict[str, float] = {}
        if inputs.priors is not None and len(inputs.priors):
            for col in ("model", "prior_peak"):
                if col not in inputs.priors.columns:
                    raise InputError(f"priors: missing column '{col}'")
            peaks = inputs.priors.groupby("model", observed=True)["prior_peak"].max().to_dict()
        self.counts: dict[str, int] = {}
        for m in inputs.models:
            if m in explicit:
                self.counts[m] = int(explicit[m])
            else:
                self.counts[m] = max(1, math.ceil(float(peaks.get(m, 0.0)) / requests_per_instance))
        self.placement = self._place(fixed=set(explicit))

    def _place(self, fixed: set[str]) -> list[tuple[str, tuple[int, ...]]]:
        inp = self.inputs
        total = inp.nodes * inp.gpus_per_node
        counts = dict(self.counts)

        def need() -> int:
            return sum(counts[m] * inp.models[m].tp for m in counts)

        while True:
            plan = self._first_fit(counts)
            if plan is not None:
                break
            shrinkable = [m for m in counts if counts[m] > 1 and m not in fixed]
            if not shrinkable:
                raise InputError(
                    f"system.policy: {need()} GPUs needed for instances {counts}, cluster has {total} "
                    f"({inp.nodes} x {inp.gpus_per_node})")
            big = max(shrinkable, key=lambda m: (counts[m] * inp.models[m].tp, m))
            counts[big] -= 1
        if counts != self.counts:
            self.notes.append(f"static: sized counts {self.counts} reduced to {counts} to fit {total} GPUs")
            self.counts = counts
        return plan

    def _first_fit(self, counts: dict[str, int]) -> list[tuple[str, tuple[int, ...]]] | None:
        inp = self.inputs
        gpn = inp.gpus_per_node
        free = [[True] * gpn for _ in range(inp.nodes)]
        plan: list[tuple[str, tuple[int, ...]]] = []
        order = sorted(counts, key=lambda m: (-inp.models[m].tp, list(inp.models).index(m)))
        for m in order:
            tp = inp.models[m].tp
            for _ in range(counts[m]):
                got = None
                for node in range(inp.nodes):
                    aligned = [s for s in range(0, gpn - tp + 1, tp) if all(free[node][s:s + tp])]
                    if aligned:
                        local = list(range(aligned[0], aligned[0] + tp))
                    else:
                        avail = [g for g in range(gpn) if free[node][g]]
                        if len(avail) < tp:
                            continue
                        local = avail[:tp]
                    for g in local:
                        free[node][g] = False
                    got = tuple(node * gpn + g for g in local)
                    break
                if got is None:
                    return None
                plan.append((m, got))
        return plan

    def setup(self, ctx: PolicyContext) -> list[Command]:
        return [StartInstance(model=m, gpus=g) for m, g in self.placement]

    def pick_instance(self, request: Request, ctx: PolicyContext) -> int | None:
        """The published least-loaded router (same choice and tie-break as the base class).

        Static instances never stop, so every instance of the model serves; the
        minimum is taken by the builtin ``min`` over the state's per-model index
        (C speed), because the top model of a 1,000-GPU cluster has ~100 instances
        and this runs once per request.
        """
        insts = ctx.state.instances
        by_model = insts.by_model
        idle = insts.first_idle(request.model)
        if idle is not None:  # nothing in flight: least loaded, lowest id (tracked tables only)
            return idle.instance_id
        cands = by_model.get(request.model)
        if not cands:
            return None
        best = min(cands.values(), key=_INFLIGHT)  # first minimum = lowest id (ids ascend)
        if best.inflight >= self.instance_capacity or best.phase not in _SERVING:
            return super().pick_instance(request, ctx)  # rare: fall back to the full scan
        return best.instance_id
