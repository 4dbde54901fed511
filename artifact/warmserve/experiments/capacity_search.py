"""Capacity found by search: the highest request rate a system serves within the declared SLO.

A fixed rate grid only brackets a capacity, and a coarse one (2, 4, 8, 12, ...)
brackets it badly; a grid that stops while a system still meets the SLO never
finds it at all. So, like DistServe's goodput search, each (setting, system,
seed) gets its own search over the total request rate ``r``:

1. probe ``start_rps``; if the SLO is met, double until a miss or the
   ceiling; if not, halve until a hit or below the floor;
2. bisect geometrically between the highest rate met (``lo``) and the lowest
   missed (``hi``) until ``hi / lo <= 1 + resolution``.

Met means at least ``slo.attainment`` of *all* requests finished ``ok`` within
both the TTFT and TPOT SLO of ``configs/run.yaml`` (``summary.json``
``slo_attainment``). The result is ``lo`` with its bound: ``exact`` (capacity
in ``[lo, hi)``), ``at_least`` (met at the ceiling: reported as ">= ceiling"),
``below`` (missed at the floor), or ``not_applicable`` (the system cannot hold
the setting's models at all, e.g. ``static`` with more models than GPUs), or
``failed`` (a run crashed: reported, never hidden). The search assumes
attainment falls with the rate; by construction its own probes cannot reveal a
violation (every later probe lies between the highest hit and the lowest
miss), so the SLO sweep figure shows each probe's attainment for a reader to
check.

Every probe is an ordinary run directory (``results/capacity/<setting>-
<system>-s<seed>-rps<r>``), so the notebooks read the same files as for any
sweep, an interrupted search resumes from the finished probes, and the SLO
sweep figure recomputes attainment for other SLOs from the probes' request
logs. Searches run in a process pool; each search is sequential by nature.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from omegaconf import OmegaConf

from warmserve.config import REPO_ROOT, configs_dir
from warmserve.errors import InputError
from warmserve.experiments import fmt_duration

Bound = Literal["exact", "at_least", "below", "not_applicable", "failed"]


@dataclass(frozen=True)
class SearchSpec:
    """How to search (``configs/capacity_search.yaml``)."""

    start_rps: float
    floor_rps: float
    ceiling_rps: float
    resolution: float  # stop when hi / lo <= 1 + resolution
    target: float  # share of requests that must meet the SLO
    rps_decimals: int  # rates are rounded to this many decimals (stable run names)

    def __post_init__(self) -> None:
        if not 0 < self.floor_rps <= self.start_rps <= self.ceiling_rps:
            raise InputError("search: need 0 < floor_rps <= start_rps <= ceiling_rps")
        if not self.resolution > 0:
            raise InputError("search.resolution: must be > 0")
        if not 0 < self.target <= 1:
            raise InputError("search.target: must be in (0, 1]")


@dataclass
class Search:
    """The outcome of one search: the capacity, its bound and every probe made."""

    capacity_rps: float | None
    bound: Bound
    upper_rps: float | None  # lowest rate missed (exact) or None
    probes: list[tuple[float, float]] = field(default_factory=list)  # (rps, attainment) in probe order
    reason: str = ""

    def text(self) -> str:
        if self.bound == "not_applicable":
            return f"n/a ({self.reason})"
        if self.bound == "failed":
            return f"FAILED ({self.reason})"
        if self.bound == "below":
            return f"< {self.upper_rps:g} rps"
        if self.bound == "at_least":
            return f">= {self.capacity_rps:g} rps (ceiling)"
        return f"{self.capacity_rps:g} rps"


def find_capacity(probe: Callable[[float], float], spec: SearchSpec) -> Search:
    """The search itself, over any ``probe(rps) -> attainment`` (pure: tested on known curves)."""
    seen: dict[float, float] = {}
    order: list[tuple[float, float]] = []

    def met(r: float) -> bool:
        r = round(r, spec.rps_decimals)
        if r not in seen:
            seen[r] = float(probe(r))
            order.append((r, seen[r]))
        return math.isfinite(seen[r]) and seen[r] >= spec.target

    def done(cap: float | None, bound: Bound, hi: float | None) -> Search:
        return Search(cap, bound, hi, order)

    lo: float | None = None
    hi: float | None = None
    r = spec.start_rps
    if met(r):
        lo = r
        while hi is None:
            if lo >= spec.ceiling_rps:
                return done(lo, "at_least", None)
            nxt = min(lo * 2, spec.ceiling_rps)
            if met(nxt):
                lo = round(nxt, spec.rps_decimals)
            else:
                hi = round(nxt, spec.rps_decimals)
    else:
        hi = r
        while lo is None:
            nxt = round(hi / 2, spec.rps_decimals)
            if nxt < spec.floor_rps:
                return done(None, "below", hi)
            if met(nxt):
                lo = nxt
            else:
                hi = nxt
    while hi / lo > 1 + spec.resolution:
        mid = round(math.sqrt(lo * hi), spec.rps_decimals)
        if mid in (lo, hi):  # the rounding grid is exhausted
            break
        if met(mid):
            lo = mid
        else:
            hi = mid
    return done(lo, "exact", hi)


# ---------------------------------------------------------------- running it
@dataclass(frozen=True)
class Task:
    setting: str
    system: str
    seed: int
    overrides: tuple[str, ...]  # extra run overrides (e.g. quick mode's replay_s, a variant's knobs)
    out_root: str
    force: bool
    variant: str = ""  # a named set of extra overrides (e.g. lifecycle costs x2), part of the run names

    def run_dir(self, rps: float) -> Path:
        tag = f"{self.variant}-" if self.variant else ""
        return Path(self.out_root) / f"{tag}{self.setting}-{self.system}-s{self.seed}-rps{rps:g}"


def _search_one(task: Task, spec: SearchSpec) -> dict[str, Any]:
    """Run one search in this (worker) process; a config the system cannot hold is recorded."""
    from warmserve.experiments.points import (
        run_point,  # imported in the worker: Hydra state per process
    )

    base = [f"+setting={task.setting}", f"system={task.system}", f"seed={task.seed}",
            "workload=conv", "trace=false", *task.overrides]

    def probe(rps: float) -> float:
        s = run_point([*base, f"workload.rps={rps}"], task.run_dir(rps), force=task.force)
        att = s.get("overall", {}).get("slo_attainment")
        return float("nan") if att is None else float(att)

    t0 = time.perf_counter()
    try:
        res = find_capacity(probe, spec)
    except InputError as exc:  # e.g. static cannot place one instance of every model
        res = Search(None, "not_applicable", None, reason=str(exc).splitlines()[0])
    except Exception as exc:  # a crashed run: recorded and reported loudly, the other searches go on
        res = Search(None, "failed", None, reason=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    row = {"variant": task.variant, "setting": task.setting, "system": task.system, "seed": task.seed, **asdict(res),
           "text": res.text(), "wall_s": round(time.perf_counter() - t0, 2)}
    row["probes"] = [list(p) for p in res.probes]
    return row


def load_spec(quick: bool, block: str = "capacity", path: Path | None = None) -> tuple[SearchSpec, dict[str, Any]]:
    """The search spec and one grid (``block``: ``capacity`` or a sensitivity block such as
    ``lifecycle``) from ``configs/capacity_search.yaml`` (or ``path``, a file of the same shape: the
    real-engine reproduction writes one per machine preset)."""
    raw = OmegaConf.load(path or configs_dir() / "capacity_search.yaml")
    run_cfg = OmegaConf.load(configs_dir() / "run.yaml")
    if block not in raw.blocks:
        raise InputError(f"capacity search: unknown block '{block}'; choose one of {sorted(raw.blocks)}")
    mode = raw.blocks[block].quick if quick else raw.blocks[block].full
    spec = SearchSpec(start_rps=float(mode.start_rps), floor_rps=float(mode.floor_rps),
                      ceiling_rps=float(mode.ceiling_rps), resolution=float(mode.resolution),
                      target=float(run_cfg.slo.attainment), rps_decimals=int(raw.rps_decimals))
    variants = mode.get("variants") or {"": []}
    grid = {"settings": list(mode.settings), "systems": list(mode.systems), "seeds": [int(s) for s in mode.seeds],
            "overrides": [str(o) for o in mode.get("overrides", [])],
            "variants": {str(k): [str(o) for o in v] for k, v in variants.items()},
            "out": str(raw.blocks[block].out)}
    return spec, grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m warmserve.experiments.capacity_search",
                                description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="reduced search (CI): coarser, shorter replays, fewer seeds")
    p.add_argument("--force", action="store_true", help="rerun finished probes")
    p.add_argument("--jobs", type=int, default=2, help="searches run in parallel (processes)")
    p.add_argument("--block", default="capacity",
                   help="which grid of configs/capacity_search.yaml (capacity, lifecycle)")
    p.add_argument("--out", default=None, help="output directory (default: the block's `out`)")
    p.add_argument("--spec", type=Path, default=None, help="a grid file instead of configs/capacity_search.yaml")
    a = p.parse_args(argv)
    spec, grid = load_spec(a.quick, a.block, a.spec)
    out_root = a.out or str(REPO_ROOT / grid["out"])
    tasks = [Task(st, sy, sd, (*grid["overrides"], *vo), out_root, a.force, vn)
             for vn, vo in grid["variants"].items()
             for st in grid["settings"] for sy in grid["systems"] for sd in grid["seeds"]]
    print(f"capacity search ({a.block}): {len(tasks)} searches ({len(grid['variants'])} variants x "
          f"{len(grid['settings'])} settings x {len(grid['systems'])} systems x {len(grid['seeds'])} seeds), "
          f"resolution {spec.resolution:.0%}, ceiling {spec.ceiling_rps:g} rps, {a.jobs} processes", flush=True)
    t0 = time.perf_counter()
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futs = {pool.submit(_search_one, t, spec): t for t in tasks}
        for i, fut in enumerate(as_completed(futs), 1):
            row = fut.result()
            rows.append(row)
            print(f"  [{i}/{len(tasks)}] {row['variant'] + ' ' if row['variant'] else ''}{row['setting']:10s} "
                  f"{row['system']:14s} seed {row['seed']}: {row['text']:28s} "
                  f"{len(row['probes'])} probes, {row['wall_s']:.1f} s  "
                  f"(elapsed {fmt_duration(time.perf_counter() - t0)})",
                  flush=True)
    out = Path(out_root)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows).sort_values(["variant", "setting", "system", "seed"], ignore_index=True)
    df["probes"] = df["probes"].map(lambda ps: ";".join(f"{r:g}:{att:.4f}" for r, att in ps))
    tmp = out / ".searches.csv.tmp"
    df.to_csv(tmp, index=False)
    tmp.replace(out / "searches.csv")
    print(f"capacity search done in {fmt_duration(time.perf_counter() - t0)}: {out / 'searches.csv'}")
    failed = df[df["bound"] == "failed"]
    for r in failed.itertuples():
        print(f"FAILED search {r.setting} {r.system} seed {r.seed}: {r.reason}")
    return 1 if len(failed) else 0


def lifecycle(argv: list[str] | None = None) -> int:
    """The ``lifecycle`` grid (start-up costs scaled, both prewarm mechanisms): the catalog's entry point."""
    return main([*(argv or []), "--block", "lifecycle"])


if __name__ == "__main__":
    raise SystemExit(main())
