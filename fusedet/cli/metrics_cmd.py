"""`fusedet metrics`: fusion-quality metrics of one or more methods' fused images, under one or both metric
conventions (cddfuse: CDDFuse's Python Evaluator; vifb: VIFB's MATLAB metrics).

    fusedet metrics --ir tno/ir --vis tno/vi --fused mean=out/mean --fused DMNet=out/dmnet --out results/

Parse, call ``fusedet.eval.metrics_folders.score_folders``, print: one table per convention (best value
per column in bold, second best underlined), the difference report when both conventions ran, and notes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from fusedet.cli import render
from fusedet.cli.app import app
from fusedet.cli.common import FusedetCommand, RichEvents, command, console, examples, make_progress
from fusedet.datasets.atomic import check_output_folder
from fusedet.errors import InputError


def parse_fused_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """NAME=DIR strings -> [(name, folder)]; bad syntax and repeated names raise InputError."""
    out: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name, folder = name.strip(), folder.strip()
        if not sep or not name or not folder:
            raise InputError(f"--fused {spec!r}: expected NAME=DIR, e.g. --fused DMNet=results/dmnet")
        if any(name == n for n, _ in out):
            raise InputError(f"--fused: the name {name!r} is given twice; each method needs its own NAME")
        out.append((name, Path(folder)))
    if not out:
        raise InputError("give at least one --fused NAME=DIR")
    return out


def _differences_table(report: dict):
    from rich.table import Table

    table = Table(title=f"cddfuse vs vifb, mean over {report['pairs']} pairs", header_style="bold cyan")
    for name, justify in (("Metric", "left"), ("Method", "left"), ("cddfuse", "right"), ("vifb", "right"), ("vifb/cddfuse", "right")):
        table.add_column(name, justify=justify)
    fmt = lambda v, d=4: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for row in report["metrics"]:
        label = row["cddfuse"] if row["cddfuse"] == row["vifb"] else f"{row['cddfuse']} / {row['vifb']}"
        for i, (method, v) in enumerate(row["methods"].items()):
            table.add_row(label if i == 0 else "", method, fmt(v["cddfuse"]), fmt(v["vifb"]), fmt(v["ratio"], 3))
    return table


@app.command(
    "metrics",
    cls=FusedetCommand,
    epilog=examples(
        "fusedet metrics --ir tno/ir --vis tno/vi --fused mean=out/mean --fused DMNet=out/dmnet --out results/tno",
        "fusedet metrics --ir tno/ir --vis tno/vi --fused DMNet=out/dmnet --convention cddfuse,vifb --out results/both",
    ),
)
@command
def metrics(
    ir: Path = typer.Option(..., "--ir", help="Folder of infrared images."),
    vis: Path = typer.Option(..., "--vis", help="Folder of visible images (matched to IR by file stem)."),
    fused: list[str] = typer.Option(..., "--fused", help="NAME=DIR of one method's fused images (matched by stem); repeat for more rows."),
    convention: str = typer.Option(
        "cddfuse",
        "--convention",
        help="Metric convention(s): cddfuse (CDDFuse's Evaluator.py, 11 metrics), vifb (VIFB's MATLAB metrics, 13), "
        "or cddfuse,vifb (both, plus a report of how they differ).",
    ),
    metric_names: str | None = typer.Option(
        None,
        "--metrics",
        help="Comma-separated subset, by either convention's names (cddfuse: EN,SF,AG,SD,CC,SCD,MI,VIF,Qabf,MS-SSIM,SSIM; "
        "vifb: Avg_gradient,...,Variance). Default: all of each convention.",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto. Default: auto (cuda when available, else cpu)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for metrics.csv, .md, .tex and .json (per convention in OUT/CONVENTION/ when several; conventions.md/.json "
        "with both); an interrupted run resumes from it. Default: none, results are only printed.",
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Pairs scored at a time. Default: the usable CPU count, at most 4."),
) -> None:
    """Score fused images with the fusion metrics of a convention; one table row per method."""
    from fusedet.eval.metric_conventions import parse_conventions, select_metrics

    specs = parse_fused_specs(fused)
    conventions = parse_conventions(convention)
    select_metrics(conventions, metric_names)  # name errors before anything loads
    check_output_folder(out, "--out")

    from fusedet.eval.metrics_folders import metrics_title, score_folders

    with make_progress() as progress:
        run = score_folders(
            (ir, vis), specs, metrics=metric_names, convention=conventions, device=device, workers=workers, out=out, events=RichEvents(progress)
        )
    for name, result in run.results.items():
        render.print_wide(console, render.result_table(result.table(metrics_title(name, f"mean over {run.pairs} pairs of {ir}"))))
    if run.differences is not None:
        render.print_wide(console, _differences_table(run.differences))
        console.print("Why they differ: " + "; ".join(f"{r['cddfuse']}: {r['reason']}" for r in run.differences["metrics"]), soft_wrap=True)
    if run.paths:
        console.print("wrote " + ", ".join(str(p) for p in run.paths), soft_wrap=True)
