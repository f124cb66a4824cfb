"""The difference report between the cddfuse and vifb conventions: the same metric names, different numbers.

For each metric both conventions compute (EN/Entropy, SF/Spatial_frequency, AG/Avg_gradient, SD/Variance,
MI/Mutinf, Qabf, SSIM/Ssim; ``fusedet.eval.metric_conventions.SHARED_METRICS``) and each method: the mean
under each convention, their ratio (vifb / cddfuse) and the reason they differ, in one line. It answers the
reviewer who asks why a table's numbers differ from paper X's: ``fusedet metrics --convention cddfuse,vifb``
writes it as ``conventions.md`` and ``conventions.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fusedet.eval.metric_conventions import SHARED_METRICS

Means = Mapping[str, Mapping[str, float]]  # {method: {metric: mean}}


def convention_differences(cddfuse: Means, vifb: Means, pairs: int) -> dict:
    """The report as a JSON-ready dict.

    `cddfuse`, `vifb`: each convention's means per method and metric (NaN or missing when not computed);
    `pairs`: how many pairs the means cover. Returns ``{"pairs": n, "conventions": ["cddfuse", "vifb"],
    "metrics": [{"cddfuse": "EN", "vifb": "Entropy", "reason": "...", "methods": {METHOD: {"cddfuse": x,
    "vifb": y, "ratio": y / x}}}]}``, one entry per shared metric present under both conventions; a value
    that is undefined is None, and so is a ratio with an undefined or zero denominator.
    """
    methods = [m for m in cddfuse if m in vifb]
    rows = []
    for shared in SHARED_METRICS:
        if not any(shared.cddfuse in cddfuse[m] and shared.vifb in vifb[m] for m in methods):
            continue
        per_method = {}
        for m in methods:
            a, b = _value(cddfuse[m].get(shared.cddfuse)), _value(vifb[m].get(shared.vifb))
            ratio = b / a if a not in (None, 0.0) and b is not None else None
            per_method[m] = {"cddfuse": a, "vifb": b, "ratio": ratio}
        rows.append({"cddfuse": shared.cddfuse, "vifb": shared.vifb, "reason": shared.reason, "methods": per_method})
    return {"pairs": pairs, "conventions": ["cddfuse", "vifb"], "metrics": rows}


def _value(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def render_markdown(report: dict) -> str:
    """The report as a Markdown table: metric, method, cddfuse mean, vifb mean, ratio, why they differ."""
    lines = [
        f"**Metric conventions compared: cddfuse (CDDFuse's Evaluator.py) and vifb (VIFB's metrics*.m), mean over {report['pairs']} pairs**",
        "",
        "| Metric (cddfuse / vifb) | Method | cddfuse | vifb | vifb / cddfuse | Why they differ |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in report["metrics"]:
        name = row["cddfuse"] if row["cddfuse"] == row["vifb"] else f"{row['cddfuse']} / {row['vifb']}"
        for i, (method, v) in enumerate(row["methods"].items()):
            reason = row["reason"] if i == 0 else '"'
            lines.append(f"| {name if i == 0 else ''} | {method} | {_fmt(v['cddfuse'])} | {_fmt(v['vifb'])} | {_fmt(v['ratio'], 3)} | {reason} |")
    return "\n".join(lines) + "\n"
