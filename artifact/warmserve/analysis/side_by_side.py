"""Measured and simulated side by side, for every point of a real-engine reproduction.

A real run (``results/real/<backend>-<preset>/measured/<experiment>/<run>``)
has a twin of the same name under ``twin-<hardware>/``: the same config
replayed by the discrete-event twin with the profile the real run used (the
machine's calibration on GPUs, ``cpu-testbed`` on the CPU). This table puts
their headline metrics next to each other so a reader sees, for every figure
made from real engines, how far the twin's version of it would be -- the
sim-vs-real check (``warmserve.analysis.sim_vs_real``) generalised from one
workload to every experiment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from warmserve.analysis.figures import replace_text
from warmserve.analysis.sim_vs_real import GOAL

# summary.json "overall" keys compared, with their table label and unit scale
METRICS = {
    "ttft_p50": ("TTFT p50 (s)", 1.0),
    "ttft_p99": ("TTFT p99 (s)", 1.0),
    "tpot_mean": ("TPOT mean (ms)", 1e3),
    "slo_attainment": ("SLO attainment", 1.0),
    "gpu_seconds": ("GPU-seconds", 1.0),
}


def pairs(measured: Path, twin: Path) -> list[tuple[str, Path, Path | None]]:
    """(experiment/run, measured dir, twin dir or None) for every finished measured run."""
    out = []
    for s in sorted(measured.glob("*/*/summary.json")):
        run = s.parent
        key = f"{run.parent.name}/{run.name}"
        t = twin / key
        out.append((key, run, t if (t / "summary.json").is_file() else None))
    return out


def _overall(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text()).get("overall", {})


def table(measured: Path, twin: Path) -> pd.DataFrame:
    """One row per (run, metric): measured, simulated, (sim - real) / real."""
    rows = []
    for key, m, t in pairs(measured, twin):
        mo, to = _overall(m), (_overall(t) if t is not None else {})
        exp, run = key.split("/", 1)
        rows.append({"experiment": exp, "run": run, "metric": "requests ok / all",
                     "measured": f"{mo.get('ok', 0)}/{mo.get('requests', 0)}",
                     "simulated": f"{to.get('ok', 0)}/{to.get('requests', 0)}" if to else "–", "diff": np.nan})
        for k, (label, scale) in METRICS.items():
            a, b = mo.get(k), to.get(k)
            a = float(a) * scale if isinstance(a, int | float) else np.nan
            b = float(b) * scale if isinstance(b, int | float) else np.nan
            d = (b - a) / a if a and np.isfinite(a) and np.isfinite(b) else np.nan
            rows.append({"experiment": exp, "run": run, "metric": label, "measured": a, "simulated": b, "diff": d})
    return pd.DataFrame(rows, columns=["experiment", "run", "metric", "measured", "simulated", "diff"])


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    x = float(v)  # type: ignore[arg-type]  # a number here: str and None were handled above
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def render(df: pd.DataFrame, *, measured_label: str, twin_label: str) -> str:
    """Markdown: one section per experiment, one line per run, measured | simulated per metric."""
    lines = ["# Measured and simulated, side by side", "",
             f"**measured** = {measured_label}; **simulated** = {twin_label}. "
             "diff = (simulated − measured) / measured.",
             "Every real point's twin replays the same config (workload, seed, system, cluster, profile).", ""]
    if df.empty:
        return "\n".join([*lines, "No finished real runs.", ""])
    num = df[df["diff"].notna()]
    if len(num):
        within = int((num["diff"].abs() <= GOAL).sum())
        lines += [f"{within} of {len(num)} metric pairs are within {GOAL:.0%}.".replace("%", " %"), ""]
    for exp, g in df.groupby("experiment", sort=False):
        labels = list(dict.fromkeys(g.metric))
        head = ["run"] + [f"{m} meas / sim (diff)" for m in labels]
        lines += [f"## {exp}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for run, r in g.groupby("run", sort=False):
            cells = [run]
            for m in labels:
                x = r[r.metric == m].iloc[0]
                d = "" if not np.isfinite(x["diff"]) else f" ({x['diff']:+.0%})"
                cells.append(f"{_fmt(x.measured)} / {_fmt(x.simulated)}{d}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write(measured: Path, twin: Path, tables: Path, *, measured_label: str, twin_label: str) -> Path:
    """``<tables>/side_by_side.csv`` and ``.md``; returns the markdown's path."""
    tables.mkdir(parents=True, exist_ok=True)
    df = table(measured, twin)
    replace_text(tables / "side_by_side.csv", df.to_csv(index=False))
    replace_text(tables / "side_by_side.md", render(df, measured_label=measured_label, twin_label=twin_label))
    return tables / "side_by_side.md"
