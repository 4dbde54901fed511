"""Capacity under the declared SLO: the searches' results over seeds, bounded ratios, and the SLO sweep.

The capacity of a (setting, system, seed) is found by search
(``warmserve.experiments.capacity_search``; ``results/capacity/searches.csv``):
the highest probed rate at which >= ``slo.attainment`` of all requests met
the SLO. A search result carries its bound -- ``exact``, ``at_least`` (met at
the ceiling), ``below`` (missed at the floor), ``not_applicable`` (the system
cannot hold the setting's models) or ``failed`` -- and every table shows it.
``search_value`` turns a row into a ``seeds.Bounded`` so capacities and their
WarmServe / MuxServe-style ratio can be averaged over seeds with the bound
kept (``seeds.combine``): a ratio with a ">=" side is a ">=", and one with no
number says why ("cannot compute: ...").

The SLO sweep recomputes attainment from the probe runs' ``requests.parquet``
for other TTFT SLOs (``attainment_grid``); there the capacity is *bracketed
from the probed rates* (``capacity``: highest probed rate met with every lower
probed rate met), since the search placed its probes for the declared SLO only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from warmserve.analysis.labels import label
from warmserve.analysis.results import read_requests
from warmserve.analysis.seeds import Bounded, Combined, combine, divide, finite

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
    """A capacity bracketed from a set of probed rates, with what they can and cannot say."""

    rps: float | None  # highest rate met (None when none was)
    bound: Bound
    lowest: float  # the sweep's range, for the text
    highest: float
    nonmonotone: bool = False  # met again at some rate above a miss (reported, not used)

    def text(self) -> str:
        if self.bound == "below":
            return f"< {_g(self.lowest)} rps (SLO missed at every probed rate)"
        if self.bound == "at_least":
            return f">= {_g(self.highest)} rps (SLO met at every probed rate)"
        return f"{_g(self.rps)} rps" + (" (met again above a miss)" if self.nonmonotone else "")


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


def capacity(rates: list[float] | np.ndarray, attained: list[float] | np.ndarray, target: float) -> Capacity:
    """Capacity from (rate, attainment) pairs of one system, one setting, one SLO: the highest rate met with
    every lower rate met too (one lucky high-rate probe does not inflate it). ``target``: the share of requests
    that must meet the SLO, the declared ``slo.attainment`` (configs/run.yaml) read back from the runs."""
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


def capacities(grid: pd.DataFrame, target: float,
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


Ratio = Bounded  # a ratio of capacities is a bounded value (warmserve.analysis.seeds)


def as_bounded(c: Capacity, name: str) -> Bounded:
    """A grid capacity as a bounded value: exact '=', met at every rate '>=', missed at every rate '<=' the
    lowest probed rate (strictly below it, which a '<=' bound also states)."""
    if c.bound == "below":
        return Bounded(c.lowest, "<=", f"{name} meets the SLO at no probed rate (capacity < {_g(c.lowest)} rps)")
    return Bounded(c.rps, ">=" if c.bound == "at_least" else "=")


def capacity_ratio(num: Capacity, den: Capacity, num_name: str, den_name: str) -> Bounded:
    """How many times more requests ``num`` sustains than ``den``: a number, a bound, or why neither.

    A side missed at every probed rate is only an upper bound, one met at every
    probed rate only a lower bound; ``seeds.divide`` keeps what follows (e.g.
    ">= 8 rps / < 0.5 rps" is ">= 16x") and refuses same-direction bounds.
    """
    r = divide(as_bounded(num, num_name), as_bounded(den, den_name), num_name, den_name)
    if not r.computable:
        return Bounded(None, None, f"{r.reason} ({num_name}: {num.text()}; {den_name}: {den.text()})")
    return r


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


# ---------------------------------------------------------------- the searches (results/capacity/searches.csv)
SEARCH_COLUMNS = ["variant", "setting", "system", "seed", "capacity_rps", "bound", "upper_rps", "probes", "reason",
                  "text"]


def read_searches(path: str | Path) -> pd.DataFrame:
    """``searches.csv`` with ``probes`` parsed into [(rps, attainment), ...]; empty frame when absent."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=SEARCH_COLUMNS)
    df = pd.read_csv(path, keep_default_na=True)
    df["probes"] = [_parse_probes(p) for p in df.get("probes", pd.Series([""] * len(df)))]
    df["reason"] = df["reason"].fillna("").astype(str) if "reason" in df else ""
    # a named variant of the grid (e.g. lifecycle costs x2): "" for the plain capacity grid
    df["variant"] = df["variant"].fillna("").astype(str) if "variant" in df else ""
    df["seed"] = df["seed"].astype(int)
    return df


def _parse_probes(text: object) -> list[tuple[float, float]]:
    if not isinstance(text, str) or not text.strip():
        return []
    out = []
    for part in text.split(";"):
        r, _, a = part.partition(":")
        out.append((float(r), float(a)))
    return out


def search_value(row: pd.Series | dict) -> Bounded:
    """One search's capacity as a bounded value (req/s)."""
    bound, cap, up, why = row["bound"], finite(row["capacity_rps"]), finite(row["upper_rps"]), str(row["reason"])
    if bound == "exact" and cap is not None:
        return Bounded(cap, "=")
    if bound == "at_least" and cap is not None:
        return Bounded(cap, ">=", "met at the search ceiling")
    if bound == "below" and up is not None:
        return Bounded(up, "<=", f"missed the SLO at the floor ({up:g} rps)")
    if bound == "not_applicable":
        return Bounded(None, None, f"n/a: cannot hold the models ({why})")
    if bound == "failed":
        return Bounded(None, None, f"FAILED: {why}")
    return Bounded(None, None, f"unreadable search row (bound {bound!r})")


def search_text(row: pd.Series | dict) -> str:
    """One search's capacity as the table shows it: '9.51 rps', '>= 64 rps (ceiling)', '< 0.5 rps (floor)',
    'n/a: cannot hold the models (...)', 'FAILED: ...' (and a flag when its probes were not monotone)."""
    b = search_value(row)
    bound = row["bound"]
    if bound == "at_least":
        t = f">= {b.value:g} rps (ceiling)"
    elif bound == "below":
        t = f"< {b.value:g} rps (floor)"
    elif b.computable:
        t = f"{b.value:g} rps"
    else:
        t = b.reason
    return t + (" [probes not monotone]" if str(row.get("nonmonotone", "")).lower() == "true" else "")


def _combined_text(values: list[tuple[int, Bounded]], texts: list[tuple[int, str]], bounds: list[str],
                   unit: str) -> tuple[Combined, str]:
    """Combine per-seed values; when every seed has the same non-exact outcome, say it in the search's words."""
    comb = combine(values, unit=unit, texts=texts)
    if len(set(bounds)) == 1 and bounds[0] != "exact" and len({t for _, t in texts}) == 1:
        n = len(texts)
        return comb, f"{texts[0][1]} ({'1 seed' if n == 1 else f'all {n} seeds'})"
    return comb, comb.text(unit)


def probe_run(probes: pd.DataFrame, setting: str, system: str, seed: int, rps: float | None) -> pd.Series | None:
    """The probe run of a search at ``rps`` (None when there is none)."""
    if rps is None or probes.empty:
        return None
    m = probes[(probes["setting"] == setting) & (probes["system"] == system) & (probes["seed"] == seed)
               & np.isclose(probes["rps"].astype(float), rps)]
    return m.iloc[0] if len(m) else None


def _one_variant(searches: pd.DataFrame) -> None:
    """Tables are per grid variant: mixing e.g. lifecycle costs x0.5 and x2 in one mean would be meaningless."""
    if "variant" in searches and searches["variant"].nunique() > 1:
        raise AssertionError(f"searches of several variants {sorted(searches['variant'].unique())}: select one")


def capacity_table(searches: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, system): capacity over seeds (mean [range] with bounds), every seed's result, and the
    GPU-hours of the probe run at each seed's capacity rate (the budget that capacity cost)."""
    _one_variant(searches)
    rows = []
    for (setting, system), g in searches.groupby(["setting", "system"], sort=True):
        g = g.sort_values("seed")
        values = [(int(r.seed), search_value(r._asdict())) for r in g.itertuples(index=False)]
        texts = [(int(r.seed), search_text(r._asdict())) for r in g.itertuples(index=False)]
        comb, text = _combined_text(values, texts, list(g["bound"]), "rps")
        gpu = []
        for (seed, b), r in zip(values, g.itertuples(index=False), strict=True):
            run = probe_run(probes, setting, system, seed, b.value if r.bound in ("exact", "at_least") else None)
            if run is not None:
                gpu.append((seed, Bounded(float(run["gpu_seconds"]) / 3600, "=")))
            else:
                gpu.append((seed, Bounded(None, None, "no rate met the SLO" if r.bound in ("below",)
                                          else "no probe at the capacity rate")))
        gcomb = combine(gpu, unit="")
        rows.append({"setting": setting, "system": system, "seeds": ",".join(str(s) for s, _ in values),
                     "n_seeds": len(values), "capacity": comb, "capacity_text": text,
                     "per_seed": "; ".join(f"s{s}: {t}" for s, t in texts),
                     "gpu_hours": gcomb, "gpu_hours_text": gcomb.text("", 3) if gcomb.n else "n/a"})
    return pd.DataFrame(rows)


def ratios_per_seed(searches: pd.DataFrame, num: str = "warmserve", den: str = "muxserve") -> pd.DataFrame:
    """Per (setting, seed): ``num`` / ``den`` capacity as a bounded ratio (a seed searched for one system
    only says so)."""
    _one_variant(searches)
    rows = []
    for (setting, seed), g in searches.groupby(["setting", "seed"], sort=True):
        by = {r.system: r._asdict() for r in g.itertuples(index=False)}
        if num not in by or den not in by:
            missing = ", ".join(label(s) for s in (num, den) if s not in by)
            r = Bounded(None, None, f"no search of {missing} at seed {seed}")
        else:
            r = divide(search_value(by[num]), search_value(by[den]), label(num), label(den))
        rows.append({"setting": setting, "seed": int(seed), "ratio": r, "ratio_text": r.text(),
                     "num_text": search_text(by[num]) if num in by else "no search",
                     "den_text": search_text(by[den]) if den in by else "no search"})
    return pd.DataFrame(rows, columns=["setting", "seed", "ratio", "ratio_text", "num_text", "den_text"])


def ratio_summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per setting: the per-seed ratios combined (mean [range], bound kept, seeds without a ratio named)."""
    rows = []
    for setting, g in per_seed.groupby("setting", sort=True):
        comb = combine([(int(r.seed), r.ratio) for r in g.itertuples(index=False)])
        rows.append({"setting": setting, "ratio": comb, "ratio_text": comb.text(),
                     "per_seed": "; ".join(f"s{r.seed}: {r.ratio_text}" for r in g.itertuples(index=False))})
    return pd.DataFrame(rows, columns=["setting", "ratio", "ratio_text", "per_seed"])


def slo_sweep(grid: pd.DataFrame, target: float, num: str = "warmserve", den: str = "muxserve") -> pd.DataFrame:
    """Per (setting, TTFT SLO, system): capacity bracketed from the probed rates, combined over seeds; and per
    (setting, SLO) the ``num``/``den`` ratio combined over seeds (system column ``"ratio"``). Every row is kept."""
    caps = capacities(grid, target, by=("setting", "seed", "slo_ttft_s", "slo_tpot_s", "system"))
    rows = []
    for (setting, slo), g in caps.groupby(["setting", "slo_ttft_s"], sort=True):
        for system, h in g.groupby("system", sort=True):
            vals = [(int(r.seed), as_bounded(r.capacity, label(system))) for r in h.itertuples(index=False)]
            texts = [(int(r.seed), r.capacity.text()) for r in h.itertuples(index=False)]
            comb, text = _combined_text(vals, texts, [r.capacity.bound for r in h.itertuples(index=False)], "rps")
            rows.append({"setting": setting, "slo_ttft_s": slo, "system": system, "combined": comb, "text": text,
                         "mean": comb.mean.value, "lo": comb.lo, "hi": comb.hi, "relation": comb.mean.relation})
        per_seed = []
        for seed, h in g.groupby("seed", sort=True):
            cs = dict(zip(h["system"], h["capacity"], strict=True))
            if num in cs and den in cs:
                per_seed.append((int(seed), capacity_ratio(cs[num], cs[den], label(num), label(den))))
            else:
                per_seed.append((int(seed), Bounded(None, None, f"seed {seed}: a system was not probed")))
        comb = combine(per_seed)
        rows.append({"setting": setting, "slo_ttft_s": slo, "system": "ratio", "combined": comb, "text": comb.text(),
                     "mean": comb.mean.value, "lo": comb.lo, "hi": comb.hi, "relation": comb.mean.relation})
    return pd.DataFrame(rows)
