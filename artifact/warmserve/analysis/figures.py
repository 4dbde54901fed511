"""Figure conventions: seaborn style, PNG + PDF side by side, honest provenance in every title.

Every figure made from twin runs says "simulated, <hardware profile>" in its
title; a figure from the testbed says "measured, <machine>" (CPU model and cores or GPU name, count
and memory, from ``run.json``; stub engines say they are no measurement). ``provenance``
derives that text from the runs themselves, so a notebook cannot forget it.

Every save takes the runs it was drawn from (``runs=``, required so a notebook
cannot forget) and writes a ``<name>.json`` sidecar beside the output
(``analysis.lineage``): run directories, their git revisions and config
hashes, the notebook (``setup``) and the time. A committed table gets only a
deterministic "Drawn from ..." line, so regenerating it from the same runs
leaves git clean.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from warmserve.analysis import lineage  # noqa: E402
from warmserve.analysis.lineage import RunsLike, replace_text  # noqa: E402
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


def setup(notebook: str, *, allow_mixed_revisions: bool = False) -> None:
    """A notebook's first call: the style, and the lineage settings every later save records and obeys."""
    setup_style()
    lineage.configure(notebook, allow_mixed_revisions)


def _revision_counts(runs: pd.DataFrame) -> dict[str, int]:
    if "git_revision" in runs.columns:
        return lineage.revision_counts(runs["git_revision"])
    if "path" not in runs.columns:  # a frame not read from run directories: nothing to check
        return {}
    return lineage.revision_counts(r["git_revision"] for r in map(lineage.run_record, lineage.run_paths(runs)))


def provenance(runs: pd.DataFrame, *, allow_mixed_revisions: bool | None = None) -> str:
    """'simulated, a100-80gb profile, 2x8 GPUs' (or 'measured on ...') from the runs' configs.

    Runs of several git revisions raise ``lineage.MixedRevisions`` unless allowed
    (``setup``); allowed, the text says so, and with it every title and table note.
    """
    if runs.empty:
        return "no runs"
    mixed = lineage.check_revisions(_revision_counts(runs), allow_mixed_revisions)
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
        parts.append(f"{what}, {'/'.join(machines)}" if machines
                     else f"{what} on {'/'.join(backends)} ({'/'.join(hws)})")
    if clusters:
        parts.append("cluster " + "/".join(clusters))
    sources = sorted({str(s) for s in runs.get("source", pd.Series(dtype=str)).dropna()})
    if "synthetic" in sources:
        parts.append("synthetic Azure-2024-like week")
    if mixed:
        parts.append(mixed)
    return ", ".join(parts)


def _lineage(name: str, kind: str, outputs: list[Path], runs: RunsLike | None,
             inputs: Iterable[str | Path]) -> tuple[list[dict], dict]:
    """Run records and the sidecar document; raises before anything is written when revisions mix."""
    records = [lineage.run_record(p) for p in lineage.run_paths(runs)]
    return records, lineage.sidecar(name, kind, outputs, records, inputs)


def save(fig: plt.Figure, name: str, *, runs: RunsLike | None, inputs: Iterable[str | Path] = ()) -> list[Path]:
    """Write ``figures/<name>.png``, ``.pdf`` and the ``.json`` sidecar; returns the image paths.

    ``runs``: the runs the figure was drawn from (a runs frame or run directories;
    ``None`` for a figure drawn from no run, then name its files in ``inputs``).
    """
    d = figures_dir()
    _, doc = _lineage(name, "figure", [d / f"{name}.{ext}" for ext in ("png", "pdf")], runs, inputs)
    out = []
    for ext in ("png", "pdf"):
        p = d / f"{name}.{ext}"
        tmp = p.with_name(f".{p.name}.tmp")
        fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150 if ext == "png" else None)
        os.replace(tmp, p)
        out.append(p)
    plt.close(fig)
    lineage.write_sidecar(d / f"{name}.json", doc)
    return out


def save_show(fig: plt.Figure, name: str, *, runs: RunsLike | None, inputs: Iterable[str | Path] = ()) -> object:
    """``save`` then return the PNG as an IPython image, so a notebook shows exactly the saved file."""
    png = save(fig, name, runs=runs, inputs=inputs)[0]
    from IPython.display import Image

    return Image(filename=str(png))


def titled(fig: plt.Figure, title: str, prov: str) -> plt.Figure:
    """Put ``title`` and the provenance line ("simulated, <profile> ...") on the figure."""
    # placed above the axes (va=bottom at the top edge); savefig's tight bbox takes it in
    fig.suptitle(f"{title}\n({prov})", fontsize="medium", y=1.0, va="bottom")
    return fig


def _with_line(text: str, line: str) -> str:
    """``line`` as its own paragraph after the title (``# ...``), or first when there is no title."""
    if not line:
        return text
    head, _, rest = text.partition("\n")
    if head.startswith("# "):
        return f"{head}\n\n{line}\n" + (rest if rest.startswith("\n") else "\n" + rest)
    return f"{line}\n\n{text}"


def write_markdown(name: str, text: str, *, runs: RunsLike | None, inputs: Iterable[str | Path] = (),
                   csv: pd.DataFrame | None = None, directory: Path | None = None) -> Path:
    """Write ``<name>.md`` (plus ``.csv`` when given) with its "Drawn from ..." line and ``.json`` sidecar.

    The .md carries only what the runs determine (count, experiment directories,
    revision), never the time, host or an absolute path: regenerated from the
    same runs it is byte-identical. The sidecar holds the rest.
    """
    d = directory or tables_dir()
    d.mkdir(parents=True, exist_ok=True)
    outputs = [d / f"{name}.md"] + ([d / f"{name}.csv"] if csv is not None else [])
    records, doc = _lineage(name, "table", outputs, runs, inputs)
    line = lineage.table_line(records, results_dir())
    if csv is not None:
        replace_text(d / f"{name}.csv", csv.to_csv(index=False))
    replace_text(d / f"{name}.md", _with_line(text, line))
    lineage.write_sidecar(d / f"{name}.json", doc)
    return d / f"{name}.md"


def write_table(df: pd.DataFrame, name: str, *, runs: RunsLike | None, inputs: Iterable[str | Path] = (),
                title: str = "", note: str = "", reading: str = "") -> Path:
    """Write ``results/tables/<name>.csv`` and ``.md`` (title, lineage line, note, table, then ``reading``)."""
    md = []
    if title:
        md.append(f"# {title}\n")
    if note:
        md.append(note.strip() + "\n")
    md.append(df.to_markdown(index=False, floatfmt=".3g"))
    if reading:
        md.append("\n" + reading.strip())
    return write_markdown(name, "\n".join(md) + "\n", runs=runs, inputs=inputs, csv=df)
