"""Figure builders shared by the notebooks: small-multiples of lines and bars over tidy frames.

Notebooks stay a few lines per figure: pick the runs, call one of these, put
the provenance in the title (``figures.titled``), save. Each builder returns
the matplotlib Figure and never saves or shows it itself. Frames hold one row
per run, so several seeds of a point are several rows: lines are drawn through
the mean over seeds with the min-max range as error bars (``spread``), so a
reader sees the seed noise every comparison has to beat.

(At the ~400-line mark on purpose: the builders share the private grid, legend and error-bar
helpers at the top, and every notebook imports this one module.)
"""

from __future__ import annotations

from typing import Any, Literal

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist

from warmserve.analysis.labels import MAIN_ORDER, hue_args, label, natural_key, ordered, palette

Share = bool | Literal["none", "all", "row", "col"]  # plt.subplots' sharex / sharey




def _err(mean: Any, lo: Any, hi: Any) -> list[np.ndarray]:
    """Error-bar lengths from a seed mean to its min and max. The mean of identical seeds can differ
    from them in the last bit, which matplotlib refuses as a negative length: clip at 0."""
    m = np.asarray(mean, dtype=float)
    return [np.clip(m - np.asarray(lo, dtype=float), 0.0, None), np.clip(np.asarray(hi, dtype=float) - m, 0.0, None)]


def _min_max(v: Any) -> tuple[float, float]:
    """seaborn's error bar for the seed spread: [min, max] of the seeds, widened to hold their mean
    (the estimator) when rounding puts it a hair outside."""
    a = np.asarray(v, dtype=float)
    m = float(a.mean())
    return min(float(a.min()), m), max(float(a.max()), m)

def _grid(n_rows: int, n_cols: int, *, w: float = 4.2, h: float = 3.2, sharex: Share = False,
          sharey: Share = False) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows), squeeze=False,
                             sharex=sharex, sharey=sharey)
    return fig, axes


def _legend_once(fig: plt.Figure, axes: np.ndarray, title: str = "") -> None:
    """One legend for the whole figure (from the first axis that has one), outside on the right."""
    handles: list[Artist] = []
    labels: list[str] = []
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
                sharey: Share = "row", col_xlabel: dict[object, str] | None = None,
                col_hlines: dict[object, tuple[float, str]] | None = None,
                col_wrap: int | None = None, col_title: str = "{col} = {value}", spread: bool = True,
                hue_order: list[str] | None = None) -> plt.Figure:
    """Lines of ``y`` vs ``x`` per ``hue`` (systems, readable labels), one panel per (row, col) value.

    Several rows per (hue, x) -- the seeds of a point -- are drawn as their mean
    with the min-max range as error bars (``spread``; off: the mean only).

    ``col_xlabel`` gives a per-column x label (panels sweeping different things);
    ``col_hlines`` a per-column reference line (value, legend text); ``col_title`` formats
    each panel's title from ``{col}`` and ``{value}``.
    """
    d = df.copy()
    d["_hue"] = [(labels or {}).get(str(s), label(str(s))) for s in d[hue]] if hue == "system" else d[hue].astype(str)
    ha = hue_args(d[hue], order, labels) if hue == "system" else (
        {"hue_order": hue_order} if hue_order else {"hue_order": sorted(d["_hue"].unique(), key=natural_key)})
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
        cells: list[tuple[Any, Any, Any]] = [(None, cv, axes.flat[k]) for k, cv in enumerate(cols)]
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
                         estimator="mean", errorbar=_min_max if spread else None, err_style="bars",
                         err_kws={"capsize": 3}, style_order=ha.get("hue_order"), **ha)
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


def tradeoff_scatter(df: pd.DataFrame, *, x: str, ys: dict[str, str], col: str = "setting",
                     category: dict[str, str] | None = None) -> plt.Figure:
    """``y`` vs ``x`` per system, one point per rate (labelled; mean over seeds, min-max bars on both axes),
    rows = metrics in ``ys``, cols = ``col`` (settings)."""
    cols = sorted(df[col].unique(), key=str)
    fig, axes = _grid(len(ys), len(cols), w=5.0, h=3.8)
    systems = ordered(df["system"])
    ha = hue_args(systems)
    for i, (y, ylab) in enumerate(ys.items()):
        agg = (df.dropna(subset=[x, y]).groupby([col, "system", "rps"])[[x, y]]
               .agg(["mean", "min", "max"]).reset_index())
        for j, cv in enumerate(cols):
            ax = axes[i, j]
            sub = agg[agg[col] == cv]
            for s in systems:
                g = sub[sub["system"] == s].sort_values("rps")
                if g.empty:
                    continue
                cat = (category or {}).get(s)
                lab = label(s) + (f" [{cat}]" if cat and cat.lower() != label(s).lower() else "")
                colr = ha["palette"][label(s)]
                xm, ym = g[(x, "mean")].to_numpy(float), g[(y, "mean")].to_numpy(float)
                ax.errorbar(xm, ym, xerr=_err(xm, g[(x, "min")], g[(x, "max")]),
                            yerr=_err(ym, g[(y, "min")], g[(y, "max")]), fmt="-o", color=colr, label=lab,
                            ms=5, lw=0.8, alpha=0.9, capsize=2)
                for rv, xv, yv in zip(g["rps"], xm, ym, strict=True):
                    ax.annotate(f"{rv:g}", (xv, yv), fontsize="x-small", xytext=(3, 3), textcoords="offset points",
                                color=colr)
            log_y(ax)
            ax.set(xlabel="GPU-hours held" if x == "gpu_hours" else x, ylabel=ylab, title=f"{col} = {cv}")
    _legend_once_from_first(fig, axes)
    fig.tight_layout()
    return fig


def _legend_once_from_first(fig: plt.Figure, axes: np.ndarray) -> None:
    """One figure legend from every panel's labelled lines (panels may show different systems)."""
    seen: dict[str, Artist] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


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


def capacity_vs_slo(sweep: pd.DataFrame, *, order: tuple[str, ...] = MAIN_ORDER,
                    paper_ratio: float | None = None) -> plt.Figure:
    """One row per setting. Left: each system's capacity vs the TTFT SLO, bracketed from the probed rates
    (mean over seeds, min-max bars; open ^ = only a lower bound, open v = only an upper bound, missing =
    no value). Right: the WarmServe / MuxServe-style ratio vs the SLO ('n/a' where it cannot be computed)."""
    settings = sorted(sweep["setting"].unique(), key=str)
    fig, axes = _grid(len(settings), 2, w=5.2, h=3.6)
    caps = sweep[sweep["system"] != "ratio"]
    ha = hue_args(caps["system"], order)
    marker = {"=": "o", ">=": "^", "<=": "v"}
    for i, setting in enumerate(settings):
        ax = axes[i, 0]
        sub = caps[caps["setting"] == setting]
        for s in [s for s in ha["hue_order"]]:
            name = next((n for n in sub["system"].unique() if label(n) == s), None)
            if name is None:
                continue
            g = sub[sub["system"] == name].sort_values("slo_ttft_s")
            colr = ha["palette"][s]
            ok = g.dropna(subset=["mean"])
            ax.plot(ok["slo_ttft_s"], ok["mean"], "-", color=colr, lw=1, label=s)
            for r in ok.itertuples(index=False):
                mfc = colr if r.relation == "=" else "none"
                ax.errorbar([r.slo_ttft_s], [r.mean], yerr=_err([r.mean], [r.lo], [r.hi]), fmt=marker[r.relation],
                            color=colr, mfc=mfc, capsize=3)
        ax.set(xscale="log", xlabel="TTFT SLO (s)", ylabel="capacity (req/s)",
               title=f"{setting}: capacity bracketed from probed rates")
        log_y(ax)
        ax.legend(fontsize="x-small")
        ax = axes[i, 1]
        rat = sweep[(sweep["system"] == "ratio") & (sweep["setting"] == setting)].sort_values("slo_ttft_s")
        ok = rat.dropna(subset=["mean"])
        if not ok.empty:
            ax.plot(ok["slo_ttft_s"], ok["mean"], "-", color="tab:blue", lw=1)
            for r in ok.itertuples(index=False):
                ax.errorbar([r.slo_ttft_s], [r.mean], yerr=_err([r.mean], [r.lo], [r.hi]),
                            fmt=marker[r.relation], color="tab:blue", mfc="tab:blue" if r.relation == "=" else "none",
                            capsize=3)
        for r in rat[rat["mean"].isna()].itertuples(index=False):
            ax.annotate("n/a", (r.slo_ttft_s, 1.0), ha="center", fontsize="small", color="gray")
        if paper_ratio:
            ax.axhline(paper_ratio, color="k", ls="--", lw=0.8)
            ax.annotate(f"paper: up to {paper_ratio:g}x", (0.02, paper_ratio), xycoords=("axes fraction", "data"),
                        fontsize="x-small", va="bottom")
        ax.axhline(1.0, color="gray", lw=0.6)
        ax.set(xscale="log", xlabel="TTFT SLO (s)", ylabel="WarmServe / MuxServe-style capacity",
               title=f"{setting}: capacity ratio (^ >=, v <=, n/a = cannot compute)")
        log_y(ax)
    fig.tight_layout()
    return fig


def bars_with_range(table: pd.DataFrame, *, panels: dict[str, str], x: str = "setting", hue: str = "system",
                    order: tuple[str, ...] = MAIN_ORDER, notes: str = "note") -> plt.Figure:
    """Bars of the mean over seeds with min-max error bars, one panel per metric (``panels``: metric prefix ->
    axis label; columns ``<m>_mean|_lo|_hi``), grouped by ``x``, coloured by ``hue`` (systems). A bar without
    a value is drawn as its ``notes`` text (e.g. "n/a: cannot hold the models"), never left out silently."""
    names = ordered(table[hue], order)
    pal = palette(names)
    xs = sorted(table[x].unique(), key=str)
    fig, axes = _grid(1, len(panels), w=max(4.8, 1.2 * len(xs) * len(names) / 2), h=3.8)
    width = 0.8 / max(1, len(names))
    for ax, (m, ylab) in zip(axes.flat, panels.items(), strict=False):
        for k, name in enumerate(names):
            g = table[table[hue] == name].set_index(x).reindex(xs)
            pos = np.arange(len(xs)) + (k - (len(names) - 1) / 2) * width
            mean = g[f"{m}_mean"].to_numpy(float)
            lo, hi = g[f"{m}_lo"].to_numpy(float), g[f"{m}_hi"].to_numpy(float)
            ax.bar(pos, np.nan_to_num(mean), width, color=pal[name], label=label(name))
            okm = np.isfinite(mean)
            ax.errorbar(pos[okm], mean[okm], yerr=_err(mean[okm], lo[okm], hi[okm]), fmt="none",
                        ecolor="k", capsize=3, lw=0.8)
            for p, v, n in zip(pos, mean, g.get(notes, pd.Series([""] * len(xs))).fillna(""), strict=True):
                if n:
                    ax.text(p, v if np.isfinite(v) else 0, str(n), rotation=90, ha="center", va="bottom",
                            fontsize="xx-small")
        ax.set_xticks(np.arange(len(xs)), xs)
        ax.set(ylabel=ylab, xlabel="")
    axes.flat[0].legend(fontsize="x-small")
    fig.tight_layout()
    return fig
