"""Compute sharing on one GPU: how much slower an instance runs with a share of its SMs.

MuxServe colocates LLMs on the same GPUs and gives each an SM share through
NVIDIA MPS (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``). Its own profile of Llama
models on A100-80GB (``examples/placement/llama.json`` in
github.com/hao-ai-lab/MuxServe, docs/muxserve.md §2) shows the two phases
react very differently: prefill is compute-bound and slows almost in
proportion to the SMs taken away, decode is memory-bandwidth-bound and barely
notices until the share is small. We model an iteration's time at share ``s``
as a power law fitted to that profile, per TP degree::

    prefill time = base prefill time * o * s ** -prefill_exponent[tp]
    decode time  = base decode time  * o * s ** -decode_exponent[tp]

``o`` is the oversubscription of the busiest GPU the instance runs on: the
sum of the shares of every instance on it when that sum exceeds 1 (MPS then
time-slices the SMs among the clients), else 1. An instance started without
a share holds the whole GPU (``s = 1``), so *k* share-less instances on one
GPU each run *k* times slower: plain time-slicing, which is what the CPU
testbed profile (exponents 1) expects.

Both the twin (``warmserve.sim``) and the MuxServe-style placement read this
one model, so the policy's throughput estimate and the simulated slowdown
agree. It is pure arithmetic over the hardware profile's ``compute_sharing``
block; it knows nothing of either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from warmserve.errors import InputError

TP_KEYS = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class ShareModel:
    """Per-TP power-law exponents of iteration time against SM share (``compute_sharing`` block)."""

    prefill_exponent: Mapping[int, float]
    decode_exponent: Mapping[int, float]

    @staticmethod
    def from_config(cfg: Mapping[str, Any] | None, where: str) -> ShareModel:
        """Validate a hardware profile's ``compute_sharing`` block (``InputError`` names the field)."""
        if not isinstance(cfg, Mapping):
            raise InputError(f"{where}: missing section 'compute_sharing'")
        out: dict[str, dict[int, float]] = {}
        for phase in ("prefill_exponent", "decode_exponent"):
            per_tp = cfg.get(phase)
            if not isinstance(per_tp, Mapping):
                raise InputError(f"{where}.compute_sharing: missing field '{phase}'")
            vals: dict[int, float] = {}
            for tp in TP_KEYS:
                key = f"tp{tp}"
                try:
                    v = float(per_tp[key])
                except KeyError:
                    raise InputError(f"{where}.compute_sharing.{phase}: missing field '{key}'") from None
                except (TypeError, ValueError):
                    raise InputError(f"{where}.compute_sharing.{phase}.{key}: not a number: {per_tp[key]!r}") from None
                if not 0 <= v <= 1:
                    # > 1 would make a phase slow down faster than its share of SMs shrinks
                    raise InputError(f"{where}.compute_sharing.{phase}.{key}: must be in [0, 1], got {v}")
                vals[tp] = v
            out[phase] = vals
        return ShareModel(out["prefill_exponent"], out["decode_exponent"])

    def _exp(self, table: Mapping[int, float], tp: int) -> float:
        if tp not in table:
            raise InputError(f"compute_sharing has no exponent for tp{tp} (has {sorted(table)})")
        return table[tp]

    def factors(self, share: float, tp: int, oversubscription: float = 1.0) -> tuple[float, float]:
        """``(prefill, decode)`` iteration-time multipliers of an instance of TP ``tp`` at SM share ``share``."""
        if not 0 < share <= 1:
            raise ValueError(f"compute share must be in (0, 1], got {share}")
        o = max(1.0, oversubscription)
        return (o * share ** -self._exp(self.prefill_exponent, tp),
                o * share ** -self._exp(self.decode_exponent, tp))


def oversubscription(shares_per_gpu: Iterable[Iterable[float | None]]) -> float:
    """``o`` of an instance: the largest sum of shares over its GPUs (``None`` = the whole GPU), at least 1."""
    worst = 1.0
    for shares in shares_per_gpu:
        worst = max(worst, sum(1.0 if s is None else s for s in shares))
    return worst
