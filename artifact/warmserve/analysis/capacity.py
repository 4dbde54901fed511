"""Capacity under an SLO, recomputed from request logs, and ratios that say when they are only bounds.

Capacity of a system = the highest swept request rate ``r`` such that at ``r``
and at every lower swept rate at least ``target`` (99 %) of all requests met
the SLO (finished ``ok``, TTFT <= ``ttft_s``, TPOT <= ``tpot_s``; the
definition of ``warmserve.metrics.summary``). Requiring every lower rate too
keeps one lucky high-rate run from inflating a capacity. A sweep only brackets
the true capacity, so a result carries its bound:

* ``exact``    met up to ``r``, missed at the next swept rate (true capacity in [r, next));
* ``at_least`` met at every swept rate: capacity >= the highest one;
* ``below``    missed already at the lowest swept rate: capacity < it.

A ratio of two capacities is a number only when both are ``exact``; with one
``at_least`` it is a bound; with a ``below`` (or both ``at_least``) it cannot
be computed from the sweep, and ``Ratio`` says why instead of inventing one.
Attainment is recomputed from ``requests.parquet`` so the SLO can be swept post
hoc without rerunning anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from warmserve.analysis.labels import label
from warmserve.analysis.results import read_requests

Bound = Literal["exact", "at_least", "below"]


def attainment(requests: pd.DataFrame, ttft_s: float, tpot_s: float) -> float:
    """Share of all requests that finished ok within both SLOs (TPOT of a 1-token request is met)."""
    if not len(requests):
        return float("nan")
    ok = np.asarray(requests["status"], dtype=object) == "ok"
    ttft = requests["ttft_s"].to_numpy(float)
    tpot = requests["tpot_s"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        met = ok & (ttft <= ttft_s) & (~np.isfinite(tpot) | (tpot <= tpot_s))
    return float(met.mean())


def attainment_grid(overall: pd.DataFrame, ttft_slos: list[float], tpot_s: float,
                    keys: tuple[str, ...] = ("system", "trace", "rps")) -> pd.DataFrame:
    """Attainment of every run for every TTFT SLO (TPOT SLO fixed): one row per (run, SLO)."""
    rows = []
    for run in overall.itertuples(index=False):
        req = read_requests(run.path, ("status", "ttft_s", "tpot_s"))
        for slo in ttft_slos:
            row = {k: getattr(run, k) for k in keys}
            row.update(run=run.run, slo_ttft_s=float(slo), slo_tpot_s=float(tpot_s),
                       attainment=attainment(req, slo, tpot_s), requests=len(req))
            rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Capacity:
    """A capacity read off a swept grid of rates, with what the grid can and cannot say."""

    rps: float | None  # highest rate met (None when none was)
    bound: Bound
    lowest: float  # the sweep's range, for the text
    highest: float
    nonmonotone: bool = False  # met again at some rate above a miss (reported, not used)

    def text(self) -> str:
        if self.bound == "below":
            return f"< {_g(self.lowest)} rps (SLO missed at every swept rate)"
        if self.bound == "at_least":
            return f">= {_g(self.highest)} rps (SLO met at every swept rate)"
        return f"{_g(self.rps)} rps" + (" (met again above a miss)" if self.nonmonotone else "")


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


def capacity(rates: list[float] | np.ndarray, attained: list[float] | np.ndarray, target: float = 0.99) -> Capacity:
    """Capacity from (rate, attainment) pairs of one system, one setting, one SLO."""
    if len(rates) == 0:
        raise ValueError("capacity: no swept rates")
    order = np.argsort(np.asarray(rates, float))
    r = np.asarray(rates, float)[order]
    a = np.asarray(attained, float)[order]
    met = np.where(np.isfinite(a), a >= target, False)
    lo, hi = float(r[0]), float(r[-1])
    if not met[0]:
        return Capacity(None, "below", lo, hi, nonmonotone=bool(met.any()))
    first_miss = int(np.argmin(met)) if not met.all() else len(met)
    if first_miss == len(met):
        return Capacity(hi, "at_least", lo, hi)
    return Capacity(float(r[first_miss - 1]), "exact", lo, hi, nonmonotone=bool(met[first_miss:].any()))


def capacities(grid: pd.DataFrame, target: float = 0.99,
               by: tuple[str, ...] = ("trace", "slo_ttft_s", "slo_tpot_s", "system")) -> pd.DataFrame:
    """One row per group of ``by``: the capacity object and its text."""
    rows = []
    if grid.empty:
        return pd.DataFrame(columns=[*by, "capacity", "capacity_rps", "bound", "capacity_text"])
    for key, g in grid.groupby(list(by), sort=True):
        c = capacity(g["rps"].to_numpy(float), g["attainment"].to_numpy(float), target)
        rows.append(dict(zip(by, key, strict=True), capacity=c, capacity_rps=c.rps, bound=c.bound,
                         capacity_text=c.text()))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Ratio:
    """``num / den`` of two capacities: a value with a relation, or the reason it has none."""

    value: float | None
    relation: Literal["=", ">=", "<="] | None
    reason: str = ""

    @property
    def computable(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def text(self) -> str:
        if not self.computable:
            return f"cannot compute: {self.reason}"
        prefix = {"=": "", ">=": ">= ", "<=": "<= "}[self.relation or "="]
        return f"{prefix}{self.value:.2f}x"


def capacity_ratio(num: Capacity, den: Capacity, num_name: str, den_name: str) -> Ratio:
    """How many times more requests ``num`` sustains than ``den`` on the same sweep."""
    if den.bound == "below":
        return Ratio(None, None, f"{den_name} meets the SLO at no swept rate (capacity < {_g(den.lowest)} rps); "
                                 f"{num_name}: {num.text()}")
    if num.bound == "below":
        return Ratio(None, None, f"{num_name} meets the SLO at no swept rate (capacity < {_g(num.lowest)} rps); "
                                 f"{den_name}: {den.text()}")
    assert num.rps is not None and den.rps is not None
    if num.bound == "at_least" and den.bound == "at_least":
        return Ratio(None, None, f"both meet the SLO at every swept rate up to {_g(num.highest)} rps; "
                                 "sweep higher rates")
    value = num.rps / den.rps
    if num.bound == "at_least":
        return Ratio(value, ">=", f"{num_name} meets the SLO at every swept rate")
    if den.bound == "at_least":
        return Ratio(value, "<=", f"{den_name} meets the SLO at every swept rate")
    return Ratio(value, "=")


def ratio_table(caps: pd.DataFrame, num: str = "warmserve", den: str = "muxserve",
                by: tuple[str, ...] = ("trace", "slo_ttft_s", "slo_tpot_s")) -> pd.DataFrame:
    """Per group of ``by``: the ``num``/``den`` capacity ratio (``Ratio``) and its text."""
    rows = []
    if caps.empty:
        return pd.DataFrame(columns=[*by, "ratio", "ratio_value", "relation", "ratio_text", "num_capacity",
                                     "den_capacity"])
    for key, g in caps.groupby(list(by), sort=True):
        cs = dict(zip(g["system"], g["capacity"], strict=True))
        row = dict(zip(by, key, strict=True))
        if num not in cs or den not in cs:
            missing = [s for s in (num, den) if s not in cs]
            r = Ratio(None, None, f"no runs of {', '.join(missing)}")
        else:
            r = capacity_ratio(cs[num], cs[den], label(num), label(den))
        row.update(ratio=r, ratio_value=r.value, relation=r.relation, ratio_text=r.text(),
                   num_capacity=cs[num].text() if num in cs else "no runs",
                   den_capacity=cs[den].text() if den in cs else "no runs")
        rows.append(row)
    return pd.DataFrame(rows)


def largest(ratios: pd.DataFrame) -> pd.Series | None:
    """The row with the largest computable ratio (an exact value wins a tie with a bound); None if none."""
    ok = ratios[[isinstance(r, Ratio) and r.computable for r in ratios["ratio"]]]
    if ok.empty:
        return None
    exact_first = ok.assign(_exact=[r.relation == "=" for r in ok["ratio"]])
    return exact_first.sort_values(["ratio_value", "_exact"], ascending=False).iloc[0].drop("_exact")
