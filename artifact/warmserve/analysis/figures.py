"""Figure conventions: seaborn style, PNG + PDF side by side, honest provenance in every title.

Every figure made from twin runs says "simulated, <hardware profile>" in its
title; a figure from the testbed says "measured, <machine>" (CPU model and cores or GPU name, count
and memory, from ``run.json``; stub engines say they are no measurement). ``provenance``
derives that text from the runs themselves, so a notebook cannot forget it.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from warmserve.config import REPO_ROOT  # noqa: E402


def figures_dir() -> Path:
    d = Path(os.environ.get("WARMSERVE_FIGURES", REPO_ROOT / "figures"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def tables_dir() -> Path:
    d = Path(os.environ.get("WARMSERVE_TABLES", REPO_ROOT / "results" / "tables"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def results_dir() -> Path:
    return Path(os.environ.get("WARMSERVE_RESULTS", REPO_ROOT / "results"))


def setup_style() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def provenance(runs: pd.DataFrame) -> str:
    """'simulated, a100-80gb profile, 2x8 GPUs' (or 'measured on ...') from the runs' configs."""
    if runs.empty:
        return "no runs"
    parts = []
    sim = runs.get("simulated")
    backends = sorted({str(b) for b in runs.get("backend", pd.Series(dtype=str)).dropna()})
    hws = sorted({str(h) for h in runs.get("hardware", pd.Series(dtype=str)).dropna()})
    clusters = sorted({str(c) for c in runs.get("cluster", pd.Series(dtype=str)).dropna()})
    if sim is not None and bool(sim.all()):
        parts.append(f"simulated, {'/'.join(hws)} profile")
    else:
        machines = sorted({str(m) for m in runs.get("machine", pd.Series(dtype=str)).dropna()})
        stub = runs.get("stub")
        what = "stub engines, no measurement" if stub is not None and bool(stub.fillna(False).any()) else "measured"
        parts.append(f"{what}, {'/'.join(machines)}" if machines else f"{what} on {'/'.join(backends)} ({'/'.join(hws)})")
    if clusters:
        parts.append("cluster " + "/".join(clusters))
    sources = sorted({str(s) for s in runs.get("source", pd.Series(dtype=str)).dropna()})
    if "synthetic" in sources:
        parts.append("synthetic Azure-2024-like week")
    return ", ".join(parts)


def save(fig: plt.Figure, name: str) -> list[Path]:
    """Write ``figures/<name>.png`` and ``.pdf``; returns the paths."""
    out = []
    for ext in ("png", "pdf"):
        p = figures_dir() / f"{name}.{ext}"
        tmp = p.with_name(f".{p.name}.tmp")
        fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150 if ext == "png" else None)
        os.replace(tmp, p)
        out.append(p)
    plt.close(fig)
    return out


def save_show(fig: plt.Figure, name: str) -> object:
    """``save`` then return the PNG as an IPython image, so a notebook shows exactly the saved file."""
    png = save(fig, name)[0]
    from IPython.display import Image

    return Image(filename=str(png))


def titled(fig: plt.Figure, title: str, prov: str) -> plt.Figure:
    """Put ``title`` and the provenance line ("simulated, <profile> ...") on the figure."""
    # placed above the axes (va=bottom at the top edge); savefig's tight bbox takes it in
    fig.suptitle(f"{title}\n({prov})", fontsize="medium", y=1.0, va="bottom")
    return fig


def replace_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a table."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_table(df: pd.DataFrame, name: str, *, title: str = "", note: str = "", reading: str = "") -> Path:
    """Write ``results/tables/<name>.csv`` and ``.md`` (title, provenance note, table, then ``reading``)."""
    d = tables_dir()
    replace_text(d / f"{name}.csv", df.to_csv(index=False))
    md = []
    if title:
        md.append(f"# {title}\n")
    if note:
        md.append(note.strip() + "\n")
    md.append(df.to_markdown(index=False, floatfmt=".3g"))
    if reading:
        md.append("\n" + reading.strip())
    replace_text(d / f"{name}.md", "\n".join(md) + "\n")
    return d / f"{name}.md"
