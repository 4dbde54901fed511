"""Figure builders shared by the notebooks: small-multiples of lines and bars over tidy frames.

Notebooks stay a few lines per figure: pick the runs, call one of these, put
the provenance in the title (``figures.titled``), save. Each builder returns
the matplotlib Figure and never saves or shows it itself.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from warmserve.analysis.labels import MAIN_ORDER, hue_args, label, natural_key


def _grid(n_rows: int, n_cols: int, *, w: float = 4.2, h: float = 3.2, sharex: bool | str = False,
          sharey: bool | str = False) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows), squeeze=False,
                             sharex=sharex, sharey=sharey)
    return fig, axes


def _legend_once(fig: plt.Figure, axes: np.ndarray, title: str = "") -> None:
    """One legend for the whole figure (from the first axis that has one), outside on the right."""
    handles, labels = [], []
    for ax in axes.flat:
        if ax.get_legend() is not None:
            h, lab = ax.get_legend_handles_labels()
            if h and not handles:
                handles, labels = h, lab
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, title=title or None, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


LINEAR_BELOW = 8.0  # max/min ratio under which log_y keeps a linear axis (readability choice)


def log_y(ax: plt.Axes, auto: bool = True) -> None:
    """Log y axis labelled with plain numbers (0.5, 2, 20 rather than 2x10^1).

    Minor ticks get labels only when the axis spans little more than a decade
    (at 2 and 5, or every one below ~0.7 decades), so short ranges stay readable.
    With ``auto``, positive data spanning less than ``LINEAR_BELOW`` x stays on
    a linear axis: a log axis there would show one or two ticks and hide the
    differences it is meant to show.
    """
    lo, hi = ax.dataLim.intervaly
    if auto and lo > 0 and hi / lo < LINEAR_BELOW:
        return
    ax.set_yscale("log")

    def minor(v: float, _pos: int) -> str:
        lo, hi = ax.get_ylim()
        span = np.log10(hi / lo) if lo > 0 and hi > 0 else 99.0
        lead = int(round(v / 10 ** np.floor(np.log10(v)))) if v > 0 else 0
        return f"{v:g}" if span < 0.7 or (span < 1.5 and lead in (2, 5)) else ""

    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(mticker.FuncFormatter(minor))


def _plain_ticks(ax: plt.Axes, values: list[float]) -> None:
    """Ticks at the swept values, written as plain numbers (2, 4, 8 rather than 2^1 ...)."""
    if len(values):
        ax.set_xticks(values)
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def facet_lines(df: pd.DataFrame, *, x: str, y: str, row: str | None = None, col: str | None = None,
                hue: str = "system", order: tuple[str, ...] = MAIN_ORDER, labels: dict[str, str] | None = None,
                logy: bool = False, logx: bool = False, xlabel: str = "", ylabel: str = "",
                row_label: dict[str, str] | None = None, hline: float | None = None,
                sharey: bool | str = "row", col_xlabel: dict[object, str] | None = None,
                col_hlines: dict[object, tuple[float, str]] | None = None,
                col_wrap: int | None = None, col_title: str = "{col} = {value}") -> plt.Figure:
    """Lines of ``y`` vs ``x`` per ``hue`` (systems, readable labels), one panel per (row, col) value.

    ``col_xlabel`` gives a per-column x label (panels sweeping different things);
    ``col_hlines`` a per-column reference line (value, legend text); ``col_title`` formats
    each panel's title from ``{col}`` and ``{value}``.
    """
    d = df.copy()
    d["_hue"] = [(labels or {}).get(str(s), label(str(s))) for s in d[hue]] if hue == "system" else d[hue].astype(str)
    ha = hue_args(d[hue], order, labels) if hue == "system" else {}
    rows: list[object] = [None]
    if row:
        present = list(dict.fromkeys(d[row]))
        # rows in row_label's order when given (e.g. metrics), else natural order (conv after code, 7b < 13b)
        rows = [r for r in (row_label or {}) if r in present] + sorted(
            (r for r in present if r not in (row_label or {})), key=natural_key)
    cols = sorted(d[col].dropna().unique(), key=natural_key) if col else [None]
    if col_wrap and not row and len(cols) > col_wrap:
        n_r = -(-len(cols) // col_wrap)
        fig, axes = _grid(n_r, col_wrap, sharey=sharey)
        cells = [(None, cv, axes.flat[k]) for k, cv in enumerate(cols)]
        for ax in axes.flat[len(cols):]:
            ax.set_visible(False)
    else:
        fig, axes = _grid(len(rows), len(cols), sharey=sharey)
        cells = [(rv, cv, axes[i, j]) for i, rv in enumerate(rows) for j, cv in enumerate(cols)]
    for rv, cv, ax in cells:
        sub = d
        if row:
            sub = sub[sub[row] == rv]
        if col:
            sub = sub[sub[col] == cv]
        sub = sub.dropna(subset=[x, y])
        if not sub.empty:
            sns.lineplot(data=sub, x=x, y=y, hue="_hue", style="_hue", markers=True, dashes=False, ax=ax,
                         errorbar=None, style_order=ha.get("hue_order"), **ha)
        if hline is not None:
            ax.axhline(hline, color="k", lw=0.8, ls=":")
        if col_hlines and cv in col_hlines:
            yv, txt = col_hlines[cv]
            ax.axhline(yv, color="gray", lw=1.0, ls="--")
            ax.annotate(txt, (0.02, yv), xycoords=("axes fraction", "data"), fontsize="x-small",
                        color="gray", va="bottom")
        if logy:
            log_y(ax)
        if logx:
            ax.set_xscale("log", base=2)
            _plain_ticks(ax, sorted(sub[x].unique()) if not sub.empty else [])
        rl = (row_label or {}).get(str(rv), str(rv)) if row else ""
        xl = (col_xlabel or {}).get(cv, xlabel or x)
        ax.set(xlabel=xl, ylabel=rl or ylabel or y,
               title=col_title.format(col=col, value=cv) if col else "")
    _legend_once(fig, axes)
    fig.tight_layout()
    return fig


def metric_bars(df: pd.DataFrame, *, x: str, metrics: dict[str, str], hue: str | None = None,
                order: list[str] | None = None, logy: tuple[str, ...] = (), ncols: int = 2) -> plt.Figure:
    """One bar panel per metric (column -> axis label), ``ncols`` per row; bars over ``x`` (ordered), optional ``hue``."""
    n_r = -(-len(metrics) // ncols)
    fig, axes = _grid(n_r, min(ncols, len(metrics)), w=5.2, h=3.2 if n_r > 1 else 4.2, sharex=True)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, (m, lab) in zip(axes.flat, metrics.items(), strict=False):
        sub = df.dropna(subset=[m])
        if not sub.empty:
            sns.barplot(data=sub, x=x, y=m, hue=hue, order=order, ax=ax, errorbar=None)
        if m in logy:
            log_y(ax)
        ax.set(xlabel="", ylabel=lab)
        ax.tick_params(axis="x", rotation=60)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
    _legend_once(fig, axes, title=hue or "")
    fig.tight_layout()
    return fig


def timeline_panels(series: pd.DataFrame, arrivals: pd.DataFrame, *, window_s: float | None = None) -> plt.Figure:
    """One row per model: load + forecast (left), instances + prewarmed replicas (right)."""
    models = sorted(series["model"].unique())
    fig, axes = _grid(len(models), 2, w=6.5, h=2.4, sharex=True)
    for i, m in enumerate(models):
        s = series[series["model"] == m]
        a = arrivals[arrivals["model"] == m]
        ax = axes[i, 0]
        ax.plot(s["t_s"], s["inflight"], lw=0.8, color="tab:blue", label="requests in flight")
        ax.step(s["t_s"], s["forecast_mean"], where="post", color="tab:orange", lw=1.4, label="forecast mean")
        ax.step(s["t_s"], s["forecast_peak"], where="post", color="tab:red", lw=1.4, ls="--", label="forecast peak")
        ax2 = ax.twinx()
        ax2.bar(a["t_s"], a["rate_rps"], width=float(a["t_s"].diff().median() or 1.0), align="edge",
                color="tab:gray", alpha=0.25, label="arrivals (req/s)")
        ax2.set_ylabel("arrivals/s", color="tab:gray")
        ax2.grid(False)
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set(ylabel=f"{m}\nin flight")
        ax = axes[i, 1]
        ax.step(s["t_s"], s["instances"], where="post", color="tab:green", label="instances (starting or ready)")
        ax.step(s["t_s"], s["ready"], where="post", color="tab:green", ls=":", label="instances ready")
        ax.step(s["t_s"], s["replicas_held"], where="post", color="tab:purple", label="prewarmed replicas (held)")
        ax.step(s["t_s"], s["replicas_loaded"], where="post", color="tab:purple", ls=":",
                label="prewarmed replicas (loaded)")
        ax.set(ylabel="count")
        ax.yaxis.get_major_locator().set_params(integer=True)
        if window_s:
            for c in (0, 1):
                for t in np.arange(window_s, float(s["t_s"].max()), window_s):
                    axes[i, c].axvline(t, color="k", lw=0.5, alpha=0.3)
        if i == 0:
            h1, l1 = axes[0, 0].get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            axes[0, 0].legend(h1 + h2, l1 + l2, fontsize="x-small", loc="upper right")
            axes[0, 1].legend(fontsize="x-small", loc="upper right")
    for c in (0, 1):
        axes[-1, c].set_xlabel("time since replay start (s)")
    fig.tight_layout()
    return fig


def stacked_split(table: pd.DataFrame, parts: dict[str, str], *, x: str, group: str, panel: str,
                  group_order: list[str], logy: bool = False) -> plt.Figure:
    """Stacked bars of ``parts`` (column -> legend label) per (x, group), one panel per ``panel`` value."""
    panels = sorted(table[panel].unique())
    xs = sorted(table[x].unique(), key=natural_key)
    fig, axes = _grid(1, len(panels), w=max(4.5, 1.4 * len(xs) * len(group_order) / 2), h=4.0, sharey=True)
    colours = sns.color_palette("colorblind", len(parts))
    width = 0.8 / len(group_order)
    for ax, pv in zip(axes.flat, panels, strict=False):
        sub = table[table[panel] == pv]
        for gi, gv in enumerate(group_order):
            g = sub[sub[group].astype(str) == gv].set_index(x).reindex(xs)
            pos = np.arange(len(xs)) + (gi - (len(group_order) - 1) / 2) * width
            bottom = np.zeros(len(xs))
            for (c, lab), col in zip(parts.items(), colours, strict=True):
                v = g[c].fillna(0).to_numpy(float)
                ax.bar(pos, v, width, bottom=bottom, color=col, edgecolor="white", lw=0.3,
                       label=lab if gi == 0 else None)
                bottom += v
            for p, b in zip(pos, bottom, strict=True):
                if b > 0:
                    ax.text(p, b, gv, rotation=90, ha="center", va="bottom", fontsize="x-small")
        ax.set_xticks(np.arange(len(xs)), xs)
        ax.set(title=str(pv), ylabel="TTFT (s)")
        if logy:
            log_y(ax)
    axes.flat[0].legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    return fig


def tradeoff_scatter(df: pd.DataFrame, *, x: str, ys: dict[str, str], col: str = "trace",
                     category: dict[str, str] | None = None) -> plt.Figure:
    """``y`` vs ``x`` per system, one point per rate (labelled), rows = metrics in ``ys``, cols = ``col``."""
    cols = sorted(df[col].unique(), key=str)
    fig, axes = _grid(len(ys), len(cols), w=5.0, h=3.8)
    systems = [s for s in MAIN_ORDER if s in set(df["system"])] + sorted(set(df["system"]) - set(MAIN_ORDER))
    ha = hue_args(systems)
    for i, (y, ylab) in enumerate(ys.items()):
        for j, cv in enumerate(cols):
            ax = axes[i, j]
            sub = df[(df[col] == cv)].dropna(subset=[x, y])
            for s in systems:
                g = sub[sub["system"] == s].sort_values("rps")
                if g.empty:
                    continue
                cat = (category or {}).get(s)
                lab = label(s) + (f" [{cat}]" if cat and cat.lower() != label(s).lower() else "")
                colr = ha["palette"][label(s)]
                ax.plot(g[x], g[y], "-o", color=colr, label=lab, ms=5, lw=0.8, alpha=0.9)
                for r in g.itertuples(index=False):
                    ax.annotate(f"{r.rps:g}", (getattr(r, x), getattr(r, y)), fontsize="x-small",
                                xytext=(3, 3), textcoords="offset points", color=colr)
            log_y(ax)
            ax.set(xlabel="GPU-hours held" if x == "gpu_hours" else x, ylabel=ylab, title=f"{col} = {cv}")
            if i == 0 and j == 0:
                ax.legend(fontsize="x-small")
    _legend_once(fig, axes)
    fig.tight_layout()
    return fig


def grouped_bars(df: pd.DataFrame, *, x: str, y: str, hue: str, panel: str, hue_order: list[str],
                 logy: bool = False, ylabel: str = "") -> plt.Figure:
    """Bars of ``y`` over ``x`` grouped by ``hue``, one panel per ``panel`` value (shared y)."""
    panels = sorted(df[panel].unique(), key=str)
    fig, axes = _grid(1, len(panels), w=5.0, h=3.8, sharey=True)
    for ax, pv in zip(axes.flat, panels, strict=False):
        sub = df[df[panel] == pv].copy()
        sub[hue] = sub[hue].astype(str)
        sns.barplot(data=sub, x=x, y=y, hue=hue, hue_order=hue_order, ax=ax, errorbar=None,
                    order=sorted(sub[x].unique(), key=natural_key))
        if logy:
            log_y(ax)
        ax.set(title=str(pv), xlabel="", ylabel=ylabel or y)
    _legend_once(fig, axes, title=hue)
    fig.tight_layout()
    return fig


def capacity_vs_slo(caps: pd.DataFrame, ratios: pd.DataFrame, *, order: tuple[str, ...] = MAIN_ORDER,
                    paper_ratio: float | None = None) -> plt.Figure:
    """Left: each system's capacity vs the TTFT SLO (open marker = only a bound; missing = below the sweep).
    Right: the WarmServe / MuxServe-style ratio vs the SLO (text where it cannot be computed)."""
    fig, axes = _grid(1, 2, w=5.2, h=3.8)
    ax = axes[0, 0]
    ha = hue_args(caps["system"], order)
    for s in [s for s in order if s in set(caps["system"])] + sorted(set(caps["system"]) - set(order)):
        g = caps[caps["system"] == s].sort_values("slo_ttft_s")
        colr = ha["palette"][label(s)]
        ax.plot(g["slo_ttft_s"], g["capacity_rps"], "-", color=colr, label=label(s), lw=1)
        ex = g[g["bound"] == "exact"]
        lb = g[g["bound"] == "at_least"]
        ax.plot(ex["slo_ttft_s"], ex["capacity_rps"], "o", color=colr)
        ax.plot(lb["slo_ttft_s"], lb["capacity_rps"], "^", color=colr, mfc="none")
    ax.set(xscale="log", xlabel="TTFT SLO (s)", ylabel="capacity (req/s, >= 99 % within SLO)",
           title="capacity (^ = met at every swept rate)")
    ax.legend(fontsize="x-small")
    ax = axes[0, 1]
    ok = ratios[[r.computable for r in ratios["ratio"]]]
    for trace, g in ok.groupby("trace"):
        ax.plot(g["slo_ttft_s"], g["ratio_value"], "-o", label=f"{trace}")
    for r in ratios.itertuples():
        if not r.ratio.computable:
            ax.annotate("n/a", (r.slo_ttft_s, 1.0), ha="center", fontsize="small", color="gray")
    if paper_ratio:
        ax.axhline(paper_ratio, color="k", ls="--", lw=0.8)
        ax.annotate(f"paper: up to {paper_ratio:g}x", (0.02, paper_ratio), xycoords=("axes fraction", "data"),
                    fontsize="x-small", va="bottom")
    ax.axhline(1.0, color="gray", lw=0.6)
    ax.set(xscale="log", xlabel="TTFT SLO (s)", ylabel="WarmServe / MuxServe-style capacity",
           title="capacity ratio (n/a = cannot compute)")
    if not ok.empty:
        ax.legend(fontsize="x-small", title="trace")
    fig.tight_layout()
    return fig
