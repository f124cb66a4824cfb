"""`fusedet compare`: the rows of separate evaluate runs in one table with paired intervals.

    fusedet compare runs/m3fd runs/m3fd-mymethod --out runs/m3fd-all

The runs must share their ground truth (same dataset split and labels; checked by hash). The
report is the one `fusedet evaluate` writes (tables, intervals, differences, plots), as if all the
rows had been evaluated in one run.
"""

from __future__ import annotations

from pathlib import Path

import typer

from fusedet.cli import render
from fusedet.cli.app import app
from fusedet.cli.common import FusedetCommand, RichEvents, command, console, examples, make_progress
from fusedet.cli.report_options import BASELINE, BOOTSTRAP, BOOTSTRAP_SEED, CI_STYLE, GROUP_BY, METRIC, report_options


@app.command(
    "compare",
    cls=FusedetCommand,
    epilog=examples(
        "fusedet compare runs/m3fd runs/m3fd-mymethod --out runs/m3fd-all",
        "fusedet compare runs/msrs-a runs/msrs-b --out runs/msrs-all --baseline vi --group-by day-night",
    ),
)
@command
def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders of fusedet evaluate / finetune (ground_truth.json, detections/, table.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder of the merged report."),
    metric: str = METRIC,
    bootstrap: int = BOOTSTRAP,
    bootstrap_seed: int = BOOTSTRAP_SEED,
    baseline: str = BASELINE,
    ci_style: str = CI_STYLE,
    group_by: str | None = GROUP_BY,
) -> None:
    """Merge the rows of evaluate runs on the same ground truth into one report with paired intervals."""
    from fusedet.compare import compare_runs

    options = report_options(metric, bootstrap, bootstrap_seed, baseline, ci_style, group_by)
    with make_progress() as progress:
        report = compare_runs(runs, out, options=options, events=RichEvents(progress))
    render.print_wide(console, render.report(report))
    console.print(f"wrote the report of {len(report.sources)} rows ({', '.join(report.sources)}) to {out}")
