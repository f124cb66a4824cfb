"""Plots of detection results, sized to be read at a paper's column width (3.5 in, 7 pt text,
300 dpi). matplotlib figures rendered by Agg (no display, no pyplot) with the bundled DejaVu Sans
font, so nothing is looked up or downloaded.

Sources keep one colour in every plot: the Okabe-Ito palette (Okabe & Ito, "Color Universal
Design", 2008), distinguishable with the common colour-vision deficiencies; beyond eight sources
the colours repeat with hatching (bars) or another marker shape (points).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fusedet.datasets.atomic import atomic_path

# Okabe-Ito, yellow last (weakest on white)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
HATCHES = ("", "////", "....", "xxxx")
MARKERS = ("o", "s", "^", "D")
COLUMN_WIDTH_IN = 3.5
FONT_PT = 7
DPI = 300


def source_style(index: int) -> dict:
    """Colour, and hatch / marker (which change beyond the palette), of the source at `index` of the rows."""
    cycle = index // len(PALETTE)
    return {"color": PALETTE[index % len(PALETTE)], "hatch": HATCHES[cycle % len(HATCHES)], "marker": MARKERS[cycle % len(MARKERS)]}


def plot_ap_per_class(table, path: str | os.PathLike, interval_label: str = "error bars: 95 % bootstrap interval") -> Path:
    """Grouped bars of a DetectionTable: per class one bar per measured source, the mAP in a panel
    of its own on the right; error bars from the table's intervals when it has them (what they are:
    `interval_label`, shown under the title).

    Undefined cells (no ground truth, class not covered) get no bar but an 'n/a' mark; published
    (paper) rows are not drawn. Written atomically as PNG."""
    fig = _figure(COLUMN_WIDTH_IN, 2.5)
    sources = list(table.rows)
    grid = fig.add_gridspec(1, 2, width_ratios=[max(1, len(table.classes)), 1.15], wspace=0.06)
    ax_cls = fig.add_subplot(grid[0, 0])
    ax_map = fig.add_subplot(grid[0, 1], sharey=ax_cls)
    handles = []
    for ax, columns in ((ax_cls, list(table.classes)), (ax_map, ["mAP"])):
        handles = _grouped_bars(ax, columns, sources, table.rows, table.intervals)
        ax.set_xticks(np.arange(len(columns)), columns)
    ax_cls.tick_params(axis="x", labelrotation=30)
    for label in ax_cls.get_xticklabels():
        label.set_ha("right")
        label.set_rotation_mode("anchor")
    ax_map.tick_params(axis="y", left=False, labelleft=False)
    ax_map.tick_params(axis="x", labelsize=FONT_PT, labelrotation=0)
    for tick in ax_map.get_xticklabels():
        tick.set_fontweight("bold")
    ax_cls.set_ylabel(_metric_axis_label(table.title))
    ax_cls.set_ylim(0, 105)
    _legend(fig, handles, sources, table.title, interval=bool(table.intervals), interval_label=interval_label)
    return _save(fig, path)


def plot_delta_forest(delta, sources: Sequence[str], path: str | os.PathLike, metric: str = "AP@0.5") -> Path:
    """Forest plot of a DeltaTable: per class (and mAP, set apart at the bottom) each source's
    difference to the baseline with its interval; a vertical line at 0. A filled marker: the
    interval excludes 0. `sources` is the full row order (for the colours)."""
    rows = [s for s in delta.rows]
    columns = list(delta.columns)
    n = len(rows)
    height = 0.9 + len(columns) * (0.12 + 0.11 * max(n, 1))  # about 8 pt per interval line
    fig = _figure(COLUMN_WIDTH_IN, min(9.0, height))
    ax = fig.add_subplot()
    band = 0.8
    offsets = (np.arange(n) - (n - 1) / 2) * (band / max(n, 1))
    handles = []
    y_of = {c: float(len(columns) - 1 - i) + (-0.35 if c == "mAP" else 0.0) for i, c in enumerate(columns)}
    for j, source in enumerate(rows):
        style = source_style(sources.index(source) if source in sources else j)
        ys, xs, lows, highs, filled = [], [], [], [], []
        for c in columns:
            cell = delta.rows[source].get(c)
            if not cell:
                continue
            d, lo, hi = cell
            ys.append(y_of[c] - offsets[j])
            xs.append(d)
            lows.append(d - lo if lo is not None and not np.isnan(lo) else 0.0)
            highs.append(hi - d if hi is not None and not np.isnan(hi) else 0.0)
            filled.append(lo is not None and hi is not None and (lo > 0 or hi < 0))
        if not xs:
            continue
        xs, ys = np.array(xs), np.array(ys)
        ax.errorbar(xs, ys, xerr=[lows, highs], fmt="none", ecolor=style["color"], elinewidth=0.9, capsize=1.5, capthick=0.7)
        filled = np.array(filled, bool)
        marker = style["marker"]
        ax.scatter(xs[filled], ys[filled], s=14, color=style["color"], marker=marker, zorder=3, linewidths=0.7, edgecolors=style["color"])
        ax.scatter(xs[~filled], ys[~filled], s=14, facecolors="white", edgecolors=style["color"], marker=marker, zorder=3, linewidths=0.9)
        handles.append(ax.scatter([], [], s=14, color=style["color"], marker=marker))
    ax.axvline(0.0, color="0.2", linewidth=0.8, zorder=1)
    if "mAP" in y_of and len(columns) > 1:
        ax.axhline(y_of["mAP"] + 0.6, color="0.6", linewidth=0.6, linestyle=":")
    ax.set_yticks([y_of[c] for c in columns], columns)
    for tick, c in zip(ax.get_yticklabels(), columns):
        if c == "mAP":
            tick.set_fontweight("bold")
    ax.set_ylim(min(y_of.values()) - 0.6, max(y_of.values()) + 0.6)
    ax.set_xlabel(f"\u0394 {metric} vs {delta.baseline} (AP points)")
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    _legend(fig, handles, rows, "", interval=False, note="lines: 95 % paired bootstrap interval; filled: it excludes 0")
    return _save(fig, path)


def plot_groups(
    groups: Mapping[str, tuple[int, Mapping[str, float | None], Mapping[str, tuple[float, float]]]],
    sources: Sequence[str],
    path: str | os.PathLike,
    *,
    ylabel: str = "mAP@0.5 (%)",
    title: str = "",
) -> Path:
    """Grouped bars of one column (mAP) per image group: groups[name] = (images, {source: value},
    {source: (low, high)}); one bar per source, error bars from the intervals when given."""
    fig = _figure(COLUMN_WIDTH_IN, 2.4)
    ax = fig.add_subplot()
    names = list(groups)
    rows = {s: {g: groups[g][1].get(s) for g in names} for s in sources}
    intervals = {s: {g: groups[g][2][s] for g in names if s in groups[g][2]} for s in sources}
    handles = _grouped_bars(ax, names, list(sources), rows, intervals)
    ax.set_xticks(np.arange(len(names)), [f"{g}\n({groups[g][0]} images)" for g in names])
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    _legend(fig, handles, list(sources), title, interval=any(intervals.values()))
    return _save(fig, path)


# --- helpers -----------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state touched

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02)
    return fig


def _grouped_bars(ax, columns, sources, rows, intervals):
    """Bars of rows[source][column] with optional intervals[source][column] = (low, high)."""
    n = max(1, len(sources))
    width = 0.82 / n
    x = np.arange(len(columns))
    handles = []
    for i, source in enumerate(sources):
        style = source_style(i)
        offsets = x - 0.41 + width * (i + 0.5)
        values = [rows[source].get(c) for c in columns]
        heights = [v if v is not None and not np.isnan(v) else 0.0 for v in values]
        bars = ax.bar(offsets, heights, width, color=style["color"], hatch=style["hatch"] or None,
                      edgecolor="white" if style["hatch"] else style["color"], linewidth=0.3)
        handles.append(bars)
        cells = intervals.get(source, {}) if intervals else {}
        err_x, err_y, err_lo, err_hi = [], [], [], []
        for xo, v, c in zip(offsets, values, columns):
            if v is None or np.isnan(v):
                ax.text(xo, 1.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=FONT_PT - 2, color="0.4")
                continue
            if c in cells and cells[c] is not None and cells[c][0] is not None and not np.isnan(cells[c][0]):
                low, high = cells[c]
                err_x.append(xo)
                err_y.append(v)
                err_lo.append(max(0.0, v - low))
                err_hi.append(max(0.0, high - v))
        if err_x:
            ax.errorbar(err_x, err_y, yerr=[err_lo, err_hi], fmt="none", ecolor="0.15", elinewidth=0.6, capsize=max(0.8, 6 * width),
                        capthick=0.5)
    ax.set_xlim(-0.5, len(columns) - 0.5)
    ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=FONT_PT, length=2, width=0.5)
    ax.yaxis.label.set_size(FONT_PT)
    return handles


def _legend(fig, handles, labels, title: str, *, interval: bool, note: str = "",
            interval_label: str = "error bars: 95 % bootstrap interval") -> None:
    """Sources in a row above the axes, and a one-line title (what is plotted, what bars mean)."""
    for ax in fig.axes:
        ax.xaxis.label.set_size(FONT_PT)
        ax.yaxis.label.set_size(FONT_PT)
        ax.tick_params(labelsize=FONT_PT)
    extra = [t for t in (title, interval_label if interval else "", note) if t]
    ncol = min(len(labels), 5) if labels else 1
    legend = fig.legend(handles, labels, loc="outside upper center", ncol=ncol, fontsize=FONT_PT, frameon=False, handlelength=1.2,
                        columnspacing=0.9, handletextpad=0.4, borderaxespad=0.1, title="\n".join(extra) or None,
                        title_fontsize=FONT_PT - 0.5)
    if extra:
        legend.get_title().set_color("0.3")


def _metric_axis_label(title: str) -> str:
    head = title.split(" on ")[0].strip()
    return head or "AP (%)"


def _save(fig, path: str | os.PathLike) -> Path:
    """Write `fig` as a PNG at `path` atomically (a failed write: one WriteError naming the file)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return Path(path)
