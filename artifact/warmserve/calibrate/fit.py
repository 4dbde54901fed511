"""Fitting the twin's latency form to measurements (pure functions; unit-tested).

The twin's iteration model (``warmserve.sim``)::

    prefill (ms)     = prefill_base_ms + prefill_per_token_ms * prompt_tokens
    decode step (ms) = decode_base_ms + decode_per_seq_ms * batch + decode_per_ctx_token_ms * context_tokens

Least squares with non-negative coefficients (``scipy.optimize.nnls``): a
negative slope fitted to noisy timings would make the twin faster for larger
batches, which is never physical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls


def fit_prefill(tokens: Sequence[float], ms: Sequence[float]) -> dict[str, float]:
    a = np.column_stack([np.ones(len(tokens)), np.asarray(tokens, float)])
    coef, _ = nnls(a, np.asarray(ms, float))
    return {"prefill_base_ms": round(float(coef[0]), 4), "prefill_per_token_ms": round(float(coef[1]), 7)}


def fit_decode(batch: Sequence[float], ctx_tokens: Sequence[float], ms: Sequence[float]) -> dict[str, float]:
    a = np.column_stack([np.ones(len(batch)), np.asarray(batch, float), np.asarray(ctx_tokens, float)])
    coef, _ = nnls(a, np.asarray(ms, float))
    return {"decode_base_ms": round(float(coef[0]), 4), "decode_per_seq_ms": round(float(coef[1]), 6),
            "decode_per_ctx_token_ms": round(float(coef[2]), 8)}


def bandwidth_GBps(nbytes: float, seconds: float) -> float:
    """Bytes per second in GB/s (1e9), as the hardware profiles state links."""
    if seconds <= 0:
        raise ValueError(f"non-positive duration {seconds}")
    return nbytes / seconds / 1e9


def split_start(cold_s: float, worker_s: float, load_s: float) -> dict[str, float]:
    """Map measured start times onto the twin's lifecycle terms.

    cold   = process_start + engine_init + load   (a fresh server process)
    worker = engine_init + load                   (vLLM already imported)
    so process_start = cold - worker and engine_init = worker - load (each floored at 0).
    """
    return {"process_start_s": round(max(0.0, cold_s - worker_s), 3),
            "engine_init_s": round(max(0.0, worker_s - load_s), 3)}
