"""Reactive autoscaling systems: the published autoscaler + router + launch rule, no prediction.

``AutoscalingPolicy`` is the base every non-static system shares (reference
docs/reference.md §5.4: "identical for WarmServe and the non-MuxServe baselines"). As a
system by itself it is

* ``reactive``          vanilla on-demand autoscaling: nothing prewarmed, every
                        start is a cold process start (features all false);
* ``worker_prewarm``    universal workers / pre-spawned engines only
                        (``worker_pool``), weights loaded on demand;
* ``warmserve_no_prediction``  memory switching and weights kept after stop
                        (implicit keep-alive), no forecaster, no proactive
                        prewarming (``WarmServePolicy`` with ``prewarm: false``).

Decisions per tick, in order: stop surplus instances, then start the
missing ones model by model in config order; once a start finds no GPUs,
no later model starts this tick (published). ``launch_for`` (a request is
waiting and nothing of its model is starting) uses the same GPU choice: the
launch rule named by ``launch_rule`` (``warmserve.control.launch.LAUNCH_RULES``).
Stops keep the weights as a prewarmed replica when the system's
``features.keep_weights_on_stop`` says so (``inputs.features``), the one place
that decides it.
"""

from __future__ import annotations

from warmserve.control.autoscaler import ScalingParams, scale_decision
from warmserve.control.launch import LAUNCH_RULES, choose_gpus
from warmserve.control.policy import PolicyContext, PolicyInputs, SystemPolicy
from warmserve.control.seam import Command, GpuSet, StartInstance, StopInstance


class AutoscalingPolicy(SystemPolicy):
    name = "reactive"

    def __init__(
        self,
        inputs: PolicyInputs,
        capacity: int,
        scale_out: float,
        scale_in: float,
        protect_s: float,
        scale_window_s: float,
        tick_interval_s: float,
        launch_rule: str,
        use_replicas: bool,
        name: str | None = None,
    ) -> None:
        self.inputs = inputs
        self.models = list(inputs.models)
        self.specs = inputs.models
        self.scaling = ScalingParams(capacity, scale_out, scale_in, protect_s, scale_window_s)
        self.instance_capacity = capacity
        self.tick_interval_s = tick_interval_s
        self.keep_weights_on_stop = inputs.features.keep_weights_on_stop
        self.launch_rule = launch_rule
        self._launch = LAUNCH_RULES.get(launch_rule)  # InputError naming system.policy.launch_rule if unknown
        self.use_replicas = use_replicas
        if name:
            self.name = name

    # ---- hooks for subclasses -------------------------------------------
    def replica_score(self, model: str, gpus: GpuSet) -> float:
        """Value of an existing prewarmed replica (0 without a planner)."""
        return 0.0

    def choose(self, model: str, ctx: PolicyContext, claimed: set[int]) -> GpuSet | None:
        return choose_gpus(ctx.state, model, claimed, self._launch, self.use_replicas, self.replica_score)

    # ---- SystemPolicy -----------------------------------------------------
    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        gpus = self.choose(model, ctx, set())
        return None if gpus is None else StartInstance(model, gpus)

    def on_tick(self, ctx: PolicyContext) -> list[Command]:
        return self.autoscale(ctx, set())

    def autoscale(self, ctx: PolicyContext, claimed: set[int]) -> list[Command]:
        """Stops and starts for every model; GPUs given to starts are added to ``claimed``."""
        out: list[Command] = []
        starts_blocked = False
        for m in self.models:
            load = ctx.load.sliding_mean(m, ctx.now, self.scaling.window_s)
            create, stop = scale_decision(load, ctx.serving(m), ctx.now, self.scaling)
            out += [StopInstance(iid, self.keep_weights_on_stop) for iid in stop]
            for _ in range(create if not starts_blocked else 0):
                gpus = self.choose(m, ctx, claimed)
                if gpus is None:
                    starts_blocked = True
                    break
                claimed.update(gpus)
                out.append(StartInstance(m, gpus))
        return out
