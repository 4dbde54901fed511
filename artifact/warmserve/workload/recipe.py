"""The published per-model sampling recipe (docs/reference.md §2.3, §2.5, §2.7), vectorised.

For ``M`` models in config order, model ``i``:

* replays the first hour of day ``7 - M + i`` (Monday = 0): the rows with
  ``0 <= t - day*86400 <= 3600`` (both ends inclusive, as published), with
  ``t`` re-based to the start of that day;
* gets share ``(i+1)^-alpha / sum_j (j+1)^-alpha`` of ``N = int(3600*rps)``
  requests: ``n_i = int(N * share_i)``;
* draws from a pool that holds every hour row ``k = ceil(n_i/rows)`` times
  consecutively (``[r0]*k + [r1]*k + ...``), with
  ``random.Random(seed + i).sample(pool, n_i)``. ``Random.sample`` only ever
  indexes its population, so sampling ``range(k*rows)`` and mapping index
  ``j`` to row ``j // k`` picks exactly the published requests, in the same
  order, without building the pool; this one call stays in pure Python by
  design (bit-identity), everything around it is numpy;
* input tokens are capped at ``input_cap`` (1024), output tokens floored at
  ``output_floor`` (3).

A replayed hour with no rows is an ``InputError`` when its model must draw
requests; a model that draws ``n_i = 0`` from it gets none (the published code
divides by zero in both cases).

All models' samples are concatenated in model order and merged by a stable
sort on arrival. Ties of equal timestamps inside one source hour keep file
order here; the published code sorts the parsed CSV with pandas' default
(unstable) sort, so for rows with *identical* timestamps the published pool
order is unspecified (a handful of rows per hour at microsecond resolution).

``reshape_cv`` is the optional burstiness reshaping (docs/reference.md §2.5) and
``replay_slice`` what a run replays (2.7).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from warmserve.errors import InputError
from warmserve.workload.loader import DAY_S

HOUR_S = 3600.0
DAYS_PER_WEEK = 7


def shares(m: int, alpha: float) -> list[float]:
    """Power-law popularity over list position, computed with Python floats as published."""
    weights = [(i + 1) ** (-alpha) for i in range(m)]
    total = sum(weights)
    return [w / total for w in weights]


def counts(m: int, alpha: float, rps: float) -> list[int]:
    n_total = int(HOUR_S * rps)
    return [int(n_total * s) for s in shares(m, alpha)]


def replay_days(m: int) -> list[int]:
    """Day of the week each model replays: ``7 - M + i`` (docs/reference.md §2.3)."""
    start = max(0, DAYS_PER_WEEK - m)
    if start == 0:
        raise InputError(f"models: the recipe supports at most {DAYS_PER_WEEK - 1} models (day 7-M+i), got M={m}")
    return [start + i for i in range(m)]


def check_params(m: int, alpha: float, rps: float) -> None:
    if m < 1:
        raise InputError("models: need at least one model")
    if alpha < 0:
        raise InputError(f"alpha must be >= 0, got {alpha}")
    if not rps > 0:
        raise InputError(f"rps must be > 0, got {rps}")


def first_hour(t_s: np.ndarray, day: int) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, day-relative seconds) of the rows in the first hour of ``day`` (inclusive ends)."""
    rel = t_s - day * DAY_S
    lo = np.searchsorted(t_s, day * DAY_S - 1.0, side="left")  # a margin; the exact test is on ``rel``
    hi = np.searchsorted(t_s, day * DAY_S + HOUR_S + 1.0, side="right")
    idx = np.arange(lo, hi)
    keep = (rel[lo:hi] >= 0) & (rel[lo:hi] <= HOUR_S)
    return idx[keep], rel[lo:hi][keep]


@dataclass(slots=True)
class Draw:
    """What the recipe drew for one model (kept for the priors' scale)."""

    model: str
    n: int  # requests drawn
    rows: int  # rows in the source hour
    dup: int  # duplication factor k
    rows_idx: np.ndarray  # hour-row index of each drawn request, in sample order

    @property
    def pool(self) -> int:
        return self.rows * self.dup


def draw(model: str, rows: int, n: int, seed: int) -> Draw:
    """The published ``Random(seed).sample`` over a pool of ``rows`` rows each repeated ``k`` times."""
    if n > 0 and rows == 0:
        raise InputError(f"model {model}: the source hour it replays has no rows to sample {n} requests from")
    dup = math.ceil(n / rows) if rows else 1
    dup = max(dup, 1)
    picks = random.Random(seed).sample(range(rows * dup), n)
    return Draw(model=model, n=n, rows=rows, dup=dup, rows_idx=np.asarray(picks, dtype=np.int64) // dup)


def assemble(
    hours: list[pd.DataFrame],
    draws: list[Draw],
    input_cap: int,
    output_floor: int,
) -> pd.DataFrame:
    """Concatenate each model's drawn rows (sample order), cap/floor tokens, stable-sort by arrival."""
    parts_t, parts_in, parts_out, parts_m = [], [], [], []
    for hour, d in zip(hours, draws, strict=True):
        parts_t.append(hour["t_s"].to_numpy()[d.rows_idx])
        parts_in.append(np.minimum(hour["input_tokens"].to_numpy()[d.rows_idx], input_cap))
        parts_out.append(np.maximum(hour["output_tokens"].to_numpy()[d.rows_idx], output_floor))
        parts_m.append(np.full(d.n, d.model, dtype=object))
    t = np.concatenate(parts_t) if parts_t else np.empty(0)
    order = np.argsort(t, kind="stable")
    return pd.DataFrame(
        {
            "request_id": np.arange(len(t), dtype=np.int64),
            "arrival_s": t[order].astype(np.float64),
            "model": pd.array(np.concatenate(parts_m)[order] if parts_m else [], dtype="str"),
            "input_tokens": np.concatenate(parts_in)[order].astype(np.int64) if parts_in else np.empty(0, np.int64),
            "output_tokens": np.concatenate(parts_out)[order].astype(np.int64) if parts_out else np.empty(0, np.int64),
        }
    )


def reshape_cv(requests: pd.DataFrame, cv: float, seed: int) -> pd.DataFrame:
    """Gamma inter-arrival reshaping of the merged sequence to a target CV (docs/reference.md §2.5).

    First and last arrival are kept; ``cv == 0`` spaces requests equally;
    otherwise ``n-1`` gaps ~ Gamma(shape=1/cv^2, scale=mean_gap*cv^2) from
    ``numpy.random.default_rng(seed)`` (published: seed 42 fixed), rescaled to
    the original span and accumulated. Models and lengths keep their order.
    """
    if cv < 0:
        raise InputError(f"cv must be >= 0 (or null to keep arrivals), got {cv}")
    n = len(requests)
    if n < 3:
        return requests
    t = requests["arrival_s"].to_numpy()
    first, last = float(t[0]), float(t[-1])
    span = last - first
    if cv == 0:
        new = np.linspace(first, last, n)
    else:
        mean_gap = span / (n - 1)
        gaps = np.random.default_rng(seed).gamma(1.0 / cv**2, mean_gap * cv**2, size=n - 1)
        gaps *= span / gaps.sum()
        new = np.concatenate([[first], first + np.cumsum(gaps)])
        # the rounded partial sums can pass ``last`` by an ulp near the end (very small gaps at high
        # CV); clip, so pinning the last arrival never puts it before the one ahead of it
        np.minimum(new, last, out=new)
        new[-1] = last
    out = requests.copy()
    out["arrival_s"] = new
    return out


def replay_slice(requests: pd.DataFrame, replay_s: float, output_cap: int) -> pd.DataFrame:
    """What a run replays: requests with ``arrival_s < replay_s``, output tokens capped at ``output_cap``.

    The published replayer (docs/reference.md §2.7) keeps arrival < 1200 s too, but its
    loop drops the *last* request when no request reaches 1200 s (an
    off-by-one that only bites short workloads); here nothing below
    ``replay_s`` is dropped. The published replayer also sends each request
    at ``arrival - first_arrival``; ``arrival_s`` here is already measured
    from the start of the replayed hour, so the (millisecond) shift is not
    applied. ``request_id`` is kept (it is a prefix of the workload). Input lengths are floored
    at 1 token (a real prompt is never empty; the trace has rows with ``ContextTokens = 0``).
    """
    if replay_s <= 0:
        raise InputError(f"replay_s must be > 0, got {replay_s}")
    if output_cap < 1:
        raise InputError(f"output_cap must be >= 1, got {output_cap}")
    out = requests.loc[requests["arrival_s"].to_numpy() < replay_s].copy()
    out["output_tokens"] = np.minimum(out["output_tokens"].to_numpy(), output_cap).astype(np.int64)
    # The published client sends max(input - 8, 1) filler tokens plus the chat template, so even a
    # trace row with ContextTokens = 0 reaches the engine as a >= 1-token prompt (docs/reference.md §2.7).
    out["input_tokens"] = np.maximum(out["input_tokens"].to_numpy(), 1).astype(np.int64)
    return out.reset_index(drop=True)
