"""Replica demand and replica scores from forecasts (docs/reference.md §5.2).

For each model with forecast mean ``avg`` and peak ``peak`` in-flight
requests, ``n`` serving instances and instance capacity ``C`` (32):

* foundation replicas ``nF = max(ceil(avg / C) - n, 0)``;
* burst replicas      ``nB = max(ceil(peak / C) - n - nF, 0)``;
* the cold-start cost of the model ``cold = bytes_per_gpu / bandwidth``
  (seconds to copy one TP shard over the host-to-device link);
* replica ``i`` of the ``nF + nB`` wanted ones scores
  ``exp(-i / (nF + nB)) * cold``, times the burst factor ``peak / avg`` for
  burst replicas (``i >= nF``).

A score is the cold-start time a replica is expected to save, discounted by
rank: the first replica of a model is likelier to be used than its fifth.

Fixes against the published code (docs/reference.md §10.3):

* the burst factor divided by the predicted average and crashed the planner
  thread when it was 0; here ``avg <= 0`` gives a neutral factor of 1 (with
  no average there is no burstiness to reward);
* forecasts are clamped at 0 first (a corrected prior can go negative,
  which the published code passed on unclamped).

Bandwidth: the published code assumes 32 GB/s (``PCIE_BANDWIDTH``, with GiB
in the numerator); systems pass either that constant or the hardware
profile's ``pcie_h2d_GBps``. Scores are only compared with each other, so the
unit convention does not change any decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from warmserve.control.seam import ModelSpec

GIB = 2**30


@dataclass(frozen=True, slots=True)
class ReplicaDemand:
    """What one model wants prewarmed this window, best replica first."""

    model: str
    foundation: int
    burst: int
    scores: tuple[float, ...]  # len == foundation + burst, non-increasing except at the burst boundary

    @property
    def total(self) -> int:
        return self.foundation + self.burst

    def score(self, rank: int) -> float:
        """Score of the ``rank``-th replica of the model (0 beyond the demand)."""
        return self.scores[rank] if 0 <= rank < len(self.scores) else 0.0


def replica_counts(avg: float, peak: float, instances: int, capacity: int) -> tuple[int, int]:
    """``(nF, nB)``: foundation and burst replicas still wanted beyond ``instances``."""
    avg, peak = max(0.0, avg), max(0.0, peak)
    nf = max(math.ceil(avg / capacity) - instances, 0)
    nb = max(math.ceil(peak / capacity) - instances - nf, 0)
    return nf, nb


def burst_factor(avg: float, peak: float) -> float:
    """``peak / avg``; 1 when the forecast average is not positive (published: ZeroDivisionError)."""
    avg, peak = max(0.0, avg), max(0.0, peak)
    return peak / avg if avg > 0 else 1.0


def cold_start_s(spec: ModelSpec, bandwidth_GBps: float) -> float:
    """Seconds to copy one TP shard of ``spec`` over a ``bandwidth_GBps`` link.

    The published formula ``bytes / tp / 2^30 / 32``: GiB in the numerator over a
    GB/s bandwidth (see the module doc; scores are only compared with each other).
    """
    if bandwidth_GBps <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth_GBps}")
    return spec.bytes_per_gpu / GIB / bandwidth_GBps


def replica_scores(cold: float, nf: int, nb: int, factor: float) -> tuple[float, ...]:
    """Scores of the ``nf + nb`` wanted replicas (rank-decayed cold-start seconds)."""
    total = nf + nb
    return tuple(math.exp(-i / total) * cold * (factor if i >= nf else 1.0) for i in range(total))


def model_demand(
    spec: ModelSpec, avg: float, peak: float, instances: int, capacity: int, bandwidth_GBps: float
) -> ReplicaDemand:
    nf, nb = replica_counts(avg, peak, instances, capacity)
    scores = replica_scores(cold_start_s(spec, bandwidth_GBps), nf, nb, burst_factor(avg, peak))
    return ReplicaDemand(spec.name, nf, nb, scores)
