"""A measurement policy for the cold-start experiment: one start of a given kind per model.

The paper's cold-start micro-benchmark (docs/reference.md §8.3, ``EXPR_1_1``) sends one
short request to each of 7B/13B/70B and reports its TTFT. ``ProbePolicy``
stages the cluster so that the request meets exactly one start kind:

* ``warm``       an instance of every model is started at setup;
* ``prewarmed``  every model's weights are prewarmed at setup (needs the
                 backend feature ``memory_switching``);
* ``worker``     nothing is staged; the backend has a worker pool
                 (``features.worker_pool``), so the start loads weights only;
* ``cold``       nothing is staged and no worker pool: a full cold start.

The kind comes from the system config (``configs/system/probe_*.yaml``); the
backend decides physically what the start costs. Instances are never
stopped, so each model's probe request is independent of the others (they
are spaced apart in the probe workload and land on disjoint GPUs).
"""

from __future__ import annotations

from warmserve.control.launch import first_fit, idle_choice, prewarmed_choice
from warmserve.control.policy import PolicyContext, PolicyInputs, SystemPolicy
from warmserve.control.seam import Command, GpuSet, Prewarm, StartInstance

KINDS = ("warm", "prewarmed", "worker", "cold")


class ProbePolicy(SystemPolicy):
    """Stage one start kind for every model, then serve with the published router."""

    name = "probe"

    def __init__(self, inputs: PolicyInputs, kind: str, *, capacity: int, tick_interval_s: float) -> None:
        """``inputs`` is the instantiate contract; the probe stages from the live ClusterState only."""
        if kind not in KINDS:
            raise ValueError(f"probe kind must be one of {KINDS}, got '{kind}'")
        self.kind = kind
        self.instance_capacity = capacity
        self.tick_interval_s = tick_interval_s
        self.name = f"probe_{kind}"

    def _disjoint_placement(self, ctx: PolicyContext) -> list[tuple[str, GpuSet]]:
        """First-fit, disjoint GPU sets for every model (largest TP first so they pack)."""
        claimed: set[int] = set()
        out = []
        for spec in sorted(ctx.state.models.values(), key=lambda s: (-s.tp, s.name)):
            gpus = idle_choice(ctx.state, spec.tp, claimed, first_fit, None)
            if gpus is None:
                raise ValueError(f"probe: no {spec.tp} idle GPUs left for {spec.name}")
            claimed.update(gpus)
            out.append((spec.name, gpus))
        return out

    def setup(self, ctx: PolicyContext) -> list[Command]:
        if self.kind == "warm":
            return [StartInstance(m, g) for m, g in self._disjoint_placement(ctx)]
        if self.kind == "prewarmed":
            return [Prewarm(m, g) for m, g in self._disjoint_placement(ctx)]
        return []

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        gpus = prewarmed_choice(ctx.state, model, set())
        if gpus is None:
            gpus = idle_choice(ctx.state, ctx.state.models[model].tp, set(), first_fit, None)
        return None if gpus is None else StartInstance(model, gpus)
