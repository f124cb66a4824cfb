"""Plots of detection results. matplotlib figures rendered by Agg (no display, no pyplot) with the
bundled DejaVu Sans font, so nothing is looked up or downloaded."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np


def plot_ap_per_class(table, path: str | os.PathLike) -> Path:
    """Grouped bars of a DetectionTable: one group per class (and mAP), one bar per measured source.

    Undefined cells (no ground truth, class not covered) get no bar but an 'n/a' mark; published
    (paper) rows are not drawn. Written atomically as PNG.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state touched

    groups = table.columns
    sources = list(table.rows)
    width = 0.8 / max(1, len(sources))
    fig = Figure(figsize=(min(14.0, 2.5 + len(groups) * (0.4 + 0.22 * len(sources))), 4.2), dpi=120)
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    colors = matplotlib.colormaps["tab10"]
    for i, source in enumerate(sources):
        offsets = x - 0.4 + width * (i + 0.5)
        values = [table.rows[source].get(g) for g in groups]
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(offsets, heights, width, label=source, color=colors(i % 10))
        for xo, v in zip(offsets, values):
            if v is None:
                ax.text(xo, 1.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
    ax.set_xticks(x, groups)
    ax.set_ylabel("AP@0.5 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(table.title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="source", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # open(): umask permissions
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
