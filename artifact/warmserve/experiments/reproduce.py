"""The one-command reproduction behind ``run_all.sh``: every step, with progress and an ETA.

Steps: build the workloads (conv and code synthetic weeks, cached), run every
experiment of ``warmserve.experiments.catalog`` on the twin, execute every
notebook (figures/ and results/tables/). ``--quick`` (``QUICK=1``) runs the
reduced version CI runs: 10 % synthetic weeks, few sweep points, 5-minute
replays. Each step's wall time is recorded in ``results/.timings.json`` and
used as the next run's estimate; the first run uses the estimates below
(measured on the 2-core reference machine, see README).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass

from warmserve.config import REPO_ROOT
from warmserve.experiments import fmt_duration, read_timings, record_timing
from warmserve.experiments.catalog import CATALOG, QUICK_SCALE

# First-run estimates in seconds (full, quick): full measured by FORCE=1 run_all.sh on the 2-core machine at a load
# average of ~5 (README, "Reproduction time"), quick from CI; later runs use results/.timings.json.
ESTIMATES = {
    "workload conv": (83, 12), "workload code": (33, 10),
    "main": (315, 45), "capacity": (146, 30), "ablation": (105, 15), "sensitivity": (120, 45),
    "lifecycle": (178, 20), "timeline": (5, 5), "coldstart": (9, 8), "forecast": (41, 5), "notebooks": (43, 60),
}


@dataclass
class Step:
    name: str
    cmd: list[str]


def steps(quick: bool, force: bool) -> list[Step]:
    py = sys.executable
    out: list[Step] = []
    scale = [f"source.scale={QUICK_SCALE}"] if quick else []
    for trace in ("conv", "code"):
        out.append(Step(f"workload {trace}", [py, "-m", "warmserve.workload", "source=synthetic",
                                              f"source.trace={trace}", f"out=results/workload/{trace}", *scale]))
    flags = (["--quick"] if quick else []) + (["--force"] if force else [])
    for name in CATALOG:
        out.append(Step(name, [py, "-m", "warmserve.experiments", "run", name, *flags]))
    nb = [py, str(REPO_ROOT / "scripts" / "run_notebooks.py")]
    if quick:
        nb += ["-p", "scale", str(QUICK_SCALE)]
    out.append(Step("notebooks", nb))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m warmserve.experiments.reproduce")
    p.add_argument("--quick", action="store_true", help="reduced reproduction (CI): minutes, not the full sweep")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--only", nargs="*", default=None, help="run only these steps (names as printed)")
    a = p.parse_args(argv)
    mode = "quick" if a.quick else "full"
    timings = read_timings()
    plan = [s for s in steps(a.quick, a.force) if a.only is None or s.name in a.only]
    est = {s.name: float(timings.get(f"step:{s.name}@{mode}", ESTIMATES.get(s.name, (60, 20))[a.quick])) for s in plan}
    t0 = time.perf_counter()
    print(f"WarmServe reproduction ({mode}): {len(plan)} steps, estimated {fmt_duration(sum(est.values()))}",
          flush=True)
    for i, s in enumerate(plan, 1):
        left = sum(est[x.name] for x in plan[i - 1 :])
        print(f"\n[{i}/{len(plan)}] {s.name}  (est {fmt_duration(est[s.name])}, remaining ~{fmt_duration(left)}, "
              f"elapsed {fmt_duration(time.perf_counter() - t0)})", flush=True)
        ts = time.perf_counter()
        rc = subprocess.call(s.cmd, cwd=REPO_ROOT)
        took = time.perf_counter() - ts
        if rc != 0:
            print(f"\nstep '{s.name}' FAILED (exit {rc}) after {fmt_duration(took)}: {' '.join(s.cmd)}",
                  file=sys.stderr)
            return rc
        record_timing(f"step:{s.name}@{mode}", took)
        print(f"[{i}/{len(plan)}] {s.name} done in {fmt_duration(took)}", flush=True)
    print(f"\nreproduction ({mode}) finished in {fmt_duration(time.perf_counter() - t0)}: "
          "figures/ and results/tables/", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
