"""The published autoscaler (docs/reference.md §5.4), shared by WarmServe and its ablations.

Every tick, per model, with ``n`` serving instances (ready + starting),
capacity ``C`` (32) and ``L`` the time-weighted mean in-flight count over the
last ``window_s`` (5 s) at the front door:

* ``L < scale_in * C * n``  -> keep ``ceil(L / scale_in / C)`` instances: stop
  the surplus among *ready* instances older than ``protect_s`` (5 s), those
  with the fewest in-flight requests first (ties: lower instance id);
* ``L > scale_out * C * n`` -> start ``ceil(L / scale_out / C) - n`` instances.

Scale-in to zero thus happens ``window_s`` after a model goes idle; WarmServe
keeps the stopped instance's weights as a prewarmed replica (implicit
keep-alive, a backend feature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from warmserve.control.seam import InstancePhase, InstanceState


@dataclass(frozen=True, slots=True)
class ScalingParams:
    """The autoscaler's knobs; values (and their sources) live in ``configs/system/*.yaml``."""

    capacity: int  # BATCH_SIZE (docs/reference.md §5.1)
    scale_out: float  # SCALE_UPPER_BOUND
    scale_in: float  # SCALE_LOWER_BOUND
    protect_s: float  # PROTECT_PERIOD
    window_s: float  # SCALE_WINDOW

    def __post_init__(self) -> None:
        if self.capacity < 1 or not 0 < self.scale_in < self.scale_out <= 1 or self.protect_s < 0 or self.window_s <= 0:
            raise ValueError(f"impossible scaling parameters {self}")


def scale_decision(load: float, serving: list[InstanceState], now: float, p: ScalingParams) -> tuple[int, list[int]]:
    """``(instances to start, instance ids to stop)`` for one model."""
    n = len(serving)
    cap = p.capacity * n
    if n > 0 and load < p.scale_in * cap:
        keep = math.ceil(load / p.scale_in / p.capacity)
        surplus = n - keep
        eligible = [
            i for i in serving if i.phase == InstancePhase.READY and now - i.created_s > p.protect_s
        ]
        eligible.sort(key=lambda i: (i.inflight, i.instance_id))
        return 0, [i.instance_id for i in eligible[: max(surplus, 0)]]
    if load > p.scale_out * cap:
        return math.ceil(load / p.scale_out / p.capacity) - n, []
    return 0, []
