"""What a *system* (WarmServe, a baseline, an ablation) is: a set of pure decisions.

A ``SystemPolicy`` answers four questions over a ``PolicyContext`` (the live
``ClusterState`` the backend maintains plus the load statistics the controller
keeps) and returns ``Command`` values; the ``Controller`` applies them. A
policy never calls a backend and never knows which backend it runs on.

* ``setup``          commands to issue once before the replay (static placement);
* ``pick_instance``  which instance serves a request now (``None`` = not now);
* ``launch_for``     start a new instance for a model whose requests wait
                     (``None`` = cannot or will not);
* ``on_tick``        periodic planning (autoscaling, forecasting, prewarming,
                     KV lending), every ``tick_interval_s``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pandas as pd

from warmserve.control.features import BackendFeatures
from warmserve.control.load import LoadTracker
from warmserve.control.seam import (
    ClusterState,
    Command,
    InstancePhase,
    InstanceState,
    ModelSpec,
    Request,
    StartInstance,
)
from warmserve.hardware import HardwareProfile


@dataclass(slots=True)
class PolicyInputs:
    """What a system is built from (passed as ``inputs=`` when Hydra instantiates
    ``cfg.system``; every system config has a ``_target_`` class taking it).

    ``priors``     the replayed hour's forecast priors, one row per (model, window):
                   columns ``model, window, prior_mean, prior_peak`` (``history.parquet``);
    ``week_load``  per-model load over the whole history week, one row per (model, window):
                   columns ``model, window, mean, peak`` plus whatever the workload layer
                   documents in ``warmserve.workload.schema``; None if unavailable;
    ``workload``   the replayed requests (workload columns, docs/design.md §4); only the ``oracle``
                   forecaster may look at it;
    ``hardware``   the typed hardware profile (``warmserve.hardware.load_profile`` of
                   ``configs/hardware``); None only for callers that build no policy reading
                   hardware (forecaster studies);
    ``features``   the system's ``features:`` block; the policy's stop commands carry
                   ``features.keep_weights_on_stop`` (its one home: backends honour only the verb's argument);
    ``window_s``   forecast window length (``window_s`` of ``configs/run.yaml``);
    ``seed``       the run's seed.
    """

    models: dict[str, ModelSpec]
    nodes: int
    gpus_per_node: int
    hardware: HardwareProfile | None
    features: BackendFeatures
    window_s: float
    seed: int
    priors: pd.DataFrame | None = None
    week_load: pd.DataFrame | None = None
    workload: pd.DataFrame | None = None


@dataclass(slots=True)
class PolicyContext:
    """Everything a decision may read. Built once by the controller, updated in place."""

    state: ClusterState
    load: LoadTracker
    pending: dict[str, deque[Request]] = field(default_factory=dict)  # waiting at the front door
    now: float = 0.0

    def serving(self, model: str) -> list[InstanceState]:
        """Instances of ``model`` that accept requests (starting or ready)."""
        return self.state.instances_of(model, (InstancePhase.STARTING, InstancePhase.READY))

    def starting(self, model: str) -> int:
        return len(self.state.instances_of(model, (InstancePhase.STARTING,)))


class SystemPolicy:
    """Base class: a system that never scales (override what the system decides)."""

    name: str = "base"
    # set by every subclass from its configs/system/*.yaml (no default here to shadow the YAML)
    tick_interval_s: float  # controller tick period
    instance_capacity: int  # requests per instance for routing (reference BATCH_SIZE)

    def setup(self, ctx: PolicyContext) -> list[Command]:
        return []

    def pick_instance(self, request: Request, ctx: PolicyContext) -> int | None:
        """Least-loaded serving instance with fewer than ``instance_capacity`` in flight.

        This is the published router (docs/reference.md §1.3 step 3); ties go to
        the lowest instance id so runs are deterministic.

        Fast path: when the state keeps an idle index (``InstanceTable.first_idle``,
        the twin does), an instance with nothing in flight is the answer
        whenever one exists -- the same choice, without scanning the model's
        instances.
        """
        if self.instance_capacity > 0:
            idle = ctx.state.instances.first_idle(request.model)
            if idle is not None:
                return idle.instance_id
        best: InstanceState | None = None
        for inst in ctx.serving(request.model):
            if inst.inflight >= self.instance_capacity:
                continue
            if best is None or (inst.inflight, inst.instance_id) < (best.inflight, best.instance_id):
                best = inst
        return None if best is None else best.instance_id

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        return None

    def on_tick(self, ctx: PolicyContext) -> list[Command]:
        return []

    def forecast_snapshot(self) -> dict[str, tuple[float, float]]:
        """Latest (mean, peak) concurrency forecast per model, for the run's timeline.

        Systems without a forecaster return an empty dict.
        """
        return {}
