"""Seeds: every point runs with several workload seeds; tables give mean and range, effects must beat the range.

The seed changes the workload sample (configs/workload/*.yaml ``seed: null``
follows the run seed), so one run per point shows one draw, not the system.
This module is the one place that turns the runs of a point into

* ``spread``: mean, min, max and the number of seeds per metric (a seed whose
  metric is missing is counted and shown as "k of n seeds", never dropped);
* ``Bounded``: a value that may only be a bound (capacity "< floor", ">=
  ceiling", a ratio with such a side) or none at all, with the reason, and
  ``combine`` which averages bounded per-seed values while keeping the bound
  (a mean of exact and ">=" values is itself only a ">=");
* ``beyond_range``: whether two points differ by more than seed noise, the
  test ablation and sensitivity rows use before they call an effect real.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Relation = Literal["=", ">=", "<="]


def finite(x: Any) -> float | None:
    """``x`` as a finite float, else None (NaN, None, text)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def spread(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], seed: str = "seed") -> pd.DataFrame:
    """Per group of ``by``: ``n_seeds``, ``seeds`` ("1,2,3") and ``<m>_mean|_min|_max|_n`` for each metric.

    ``<m>_n`` is the number of seeds with a finite value, so a table can say
    "2 of 3 seeds" where a run lacked the metric (e.g. no request got a first token).
    """
    rows = []
    if df.empty:
        cols = [*by, "n_seeds", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "min", "max", "n")]
        return pd.DataFrame(columns=cols)
    for key, g in df.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, object] = dict(zip(by, key, strict=True))
        seeds = sorted({int(s) for s in g[seed].dropna()}) if seed in g else []
        row["n_seeds"] = len(g)
        row["seeds"] = ",".join(str(s) for s in seeds)
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").to_numpy(float) if m in g else np.array([])
            v = v[np.isfinite(v)]
            row[f"{m}_n"] = len(v)
            row[f"{m}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{m}_min"] = float(v.min()) if len(v) else float("nan")
            row[f"{m}_max"] = float(v.max()) if len(v) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _g(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def _num(v: float, unit: str, digits: int) -> str:
    """A ratio as '2.15x'; anything else as '9.51 rps' (``unit`` after a space, if any)."""
    if unit == "x":
        return f"{v:.{digits}f}x"
    return f"{v:.{digits + 1}g}" + (f" {unit}" if unit else "")


def mean_range(mean: float, lo: float, hi: float, n: int, n_total: int | None = None, *, digits: int = 3,
               unit: str = "") -> str:
    """'1.23 [1.10, 1.40]' (mean [min, max] over seeds); one seed: '1.23 (1 seed)'; none: 'n/a'.

    When fewer seeds have the value than ran (``n < n_total``) it says so: "(2 of 3 seeds)".
    """
    u = f" {unit}" if unit else ""
    if n == 0 or not math.isfinite(mean):
        return "n/a" + (f" (0 of {n_total} seeds)" if n_total else "")
    of = f" ({n} of {n_total} seeds)" if n_total is not None and n < n_total else ""
    if n == 1:
        return f"{_g(mean, digits)}{u} (1 seed)" if not of else f"{_g(mean, digits)}{u}{of}"
    return f"{_g(mean, digits)}{u} [{_g(lo, digits)}, {_g(hi, digits)}]{of}"


def values_range(values: Sequence[Any], *, unit: str = "") -> str:
    """``mean_range`` of raw per-seed values (one per run); non-finite ones count as seeds without the value."""
    v = [x for x in (finite(a) for a in values) if x is not None]
    if not v:
        return "n/a"
    return mean_range(sum(v) / len(v), min(v), max(v), len(v), len(values), unit=unit)


def cell(row: pd.Series | dict, metric: str, *, digits: int = 3, unit: str = "") -> str:
    """``mean_range`` of one metric of a ``spread`` row."""
    return mean_range(row[f"{metric}_mean"], row[f"{metric}_min"], row[f"{metric}_max"], int(row[f"{metric}_n"]),
                      int(row["n_seeds"]), digits=digits, unit=unit)


# ------------------------------------------------------------------ bounded values
@dataclass(frozen=True)
class Bounded:
    """A number that may be only a bound, or none with the reason (a ratio, a capacity)."""

    value: float | None
    relation: Relation | None
    reason: str = ""

    @property
    def computable(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def text(self, unit: str = "x", digits: int = 2) -> str:
        if not self.computable:
            return f"cannot compute: {self.reason}"
        prefix = {"=": "", ">=": ">= ", "<=": "<= "}[self.relation or "="]
        assert self.value is not None  # computable
        return prefix + _num(self.value, unit, digits)


def divide(num: Bounded, den: Bounded, num_name: str, den_name: str) -> Bounded:
    """``num / den`` with bounds propagated; a side without a value, or bounds that point the same way
    on both sides (">= a / >= b"), gives no number and says why."""
    if not num.computable:
        return Bounded(None, None, f"{num_name}: {num.reason}")
    if not den.computable:
        return Bounded(None, None, f"{den_name}: {den.reason}")
    assert num.value is not None and den.value is not None
    if den.value <= 0:
        return Bounded(None, None, f"{den_name} is 0")
    rn, rd = num.relation or "=", den.relation or "="
    # num/den grows with num and shrinks with den: >= over <= is >=, <= over >= is <=
    if rn == "=" and rd == "=":
        rel: Relation | None = "="
    elif rn in ("=", ">=") and rd in ("=", "<="):
        rel = ">="
    elif rn in ("=", "<=") and rd in ("=", ">="):
        rel = "<="
    else:
        return Bounded(None, None, f"{num_name} {rn} {num.value:g} and {den_name} {rd} {den.value:g}: "
                                   "bounds in the same direction bound no ratio")
    return Bounded(num.value / den.value, rel)


@dataclass(frozen=True)
class Combined:
    """Bounded per-seed values combined: mean and range (each with the common bound), and every seed's text."""

    mean: Bounded
    lo: float | None
    hi: float | None
    n: int  # seeds with a value
    n_total: int
    per_seed: tuple[tuple[int, str], ...]  # (seed, text) for every seed, computable or not
    values: tuple[tuple[int, Bounded], ...] = ()

    def text(self, unit: str = "x", digits: int = 2) -> str:
        if not self.mean.computable:
            return self.mean.text(unit, digits)
        body = self.mean.text(unit, digits)
        if self.n > 1:
            r_unit = "x" if unit == "x" else ""
            assert self.lo is not None and self.hi is not None  # a computable mean over seeds has a range
            body += f" [{_num(self.lo, r_unit, digits)}, {_num(self.hi, r_unit, digits)}]"
        seeds = f"{self.n} of {self.n_total} seeds" if self.n < self.n_total else (
            "1 seed" if self.n == 1 else f"{self.n} seeds")
        out = f"{body} ({seeds})"
        have = {s for s, b in self.values if b.computable}
        missing = [f"seed {s}: {t}" for s, t in self.per_seed if s not in have]
        return out + ("; " + "; ".join(missing) if missing else "")


def combine(values: Sequence[tuple[int, Bounded]], *, unit: str = "x", digits: int = 2,
            texts: Sequence[tuple[int, str]] | None = None) -> Combined:
    """Mean and range over seeds of bounded values.

    All exact: a plain mean. Exact and ">=" mixed: the mean is a ">=" (each
    seed's true value is at least its number), likewise "<=". ">=" and "<="
    mixed: no mean, the reason says so and every seed is listed. Seeds without
    a value are listed with their reason, never dropped. ``texts`` overrides how
    each seed is written (e.g. a capacity search's own words).
    """
    per_seed = tuple(texts) if texts is not None else tuple((int(s), b.text(unit, digits)) for s, b in values)
    ok = [(s, b) for s, b in values if b.computable]
    n_total = len(values)
    if not ok:
        reasons = "; ".join(f"seed {s}: {b.reason}" for s, b in values) or "no seeds"
        return Combined(Bounded(None, None, reasons), None, None, 0, n_total, per_seed, tuple(values))
    rels = {b.relation or "=" for _, b in ok}
    if {">=", "<="} <= rels:
        listing = ", ".join(f"seed {s}: {t}" for s, t in per_seed)
        return Combined(Bounded(None, None, f"seeds bound it in opposite directions ({listing})"), None, None,
                        len(ok), n_total, per_seed, tuple(values))
    rel: Relation = ">=" if ">=" in rels else "<=" if "<=" in rels else "="
    vals = np.array([b.value for _, b in ok], float)
    return Combined(Bounded(float(vals.mean()), rel), float(vals.min()), float(vals.max()), len(ok), n_total,
                    per_seed, tuple(values))


# ------------------------------------------------------------------ effects vs noise
Verdict = Literal["beyond seed range", "within seed range", "one seed: cannot tell from noise", "no value"]


def beyond_range(a: Sequence[float], b: Sequence[float]) -> Verdict:
    """Do two points differ by more than seed noise? Yes when their [min, max] ranges over seeds do not
    overlap (conservative: needs >= 2 seeds on each side, else the noise is unknown)."""
    va = [x for x in (finite(v) for v in a) if x is not None]
    vb = [x for x in (finite(v) for v in b) if x is not None]
    if not va or not vb:
        return "no value"
    if len(va) < 2 or len(vb) < 2:
        return "one seed: cannot tell from noise"
    if max(va) < min(vb) or max(vb) < min(va):
        return "beyond seed range"
    return "within seed range"


def levels_differ(groups: Sequence[Sequence[float]]) -> Verdict:
    """Across several levels (e.g. forecast-error levels): does any pair differ beyond seed noise?"""
    verdicts = [beyond_range(a, b) for i, a in enumerate(groups) for b in groups[i + 1:]]
    if not verdicts:
        return "no value"
    for v in ("beyond seed range", "within seed range", "one seed: cannot tell from noise"):
        if v in verdicts:
            return v
    return "no value"
