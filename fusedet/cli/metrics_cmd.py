"""`fusedet metrics`: the fusion-quality metrics of Tables I-IV for one or more methods' fused images.

    fusedet metrics --ir tno/ir --vis tno/vi --fused mean=out/mean --fused DMNet=out/dmnet --out results/

One row per method (mean over the pairs), columns EN SF AG SD CC SCD MI VIF Qabf MS-SSIM SSIM, best value
per column in bold and second best underlined. Every input problem is reported before the scoring starts
where it can be (folders, stems, sizes); with --out, finished pairs are journaled so a rerun resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fusedet.cli import render
from fusedet.cli.app import app
from fusedet.cli.common import console, err_console, handle_errors, make_progress
from fusedet.errors import InputError

if TYPE_CHECKING:
    from fusedet.eval.metrics_folders import MetricsResult

JOURNAL_NAME = ".metrics_journal.jsonl"


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


def _notes(result: MetricsResult) -> list[str]:
    """One line per method and metric that is undefined (NaN) for some images, naming them."""
    lines = []
    total = len(next(iter(result.per_image.values())))
    for name, metrics in result.undefined().items():
        for metric, stems in metrics.items():
            shown = ", ".join(stems[:8]) + (" ..." if len(stems) > 8 else "")
            lines.append(
                f"{name}: {metric} is undefined for {len(stems)} of {total} images ({shown}); "
                f"its mean is over the other {total - len(stems)} (null in metrics.json)"
            )
    return lines


@app.command("metrics")
@handle_errors
def metrics(
    ir: Path = typer.Option(..., "--ir", help="Folder of infrared images."),
    vis: Path = typer.Option(..., "--vis", help="Folder of visible images (matched to IR by file stem)."),
    fused: list[str] = typer.Option(..., "--fused", help="NAME=DIR of one method's fused images (by stem); repeat for more rows."),
    metric_names: str | None = typer.Option(
        None, "--metrics", help="Comma-separated subset of EN,SF,AG,SD,CC,SCD,MI,VIF,Qabf,MS-SSIM,SSIM (default: all)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for metrics.csv, .md, .tex and .json (the run resumes from it)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Pairs scored at a time (default: CPU count, at most 4)."),
) -> None:
    """Score fused images with the eleven fusion metrics; one table row per method."""

    from fusedet.devices import resolve_device
    from fusedet.eval.fusion_metrics import TABLE_ORDER, parse_metric_names
    from fusedet.eval.metrics_folders import plan_folders, score_folders
    from fusedet.tables import ResultTable, write_text_atomic

    specs = parse_fused_specs(fused)
    names = parse_metric_names(metric_names)
    dev = resolve_device(device)
    if out is not None and out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    plan = plan_folders(ir, vis, specs, names)
    journal = out / JOURNAL_NAME if out is not None else None

    with make_progress() as progress:
        task = progress.add_task("scoring", total=len(plan.stems), status="")
        resumed = 0

        def on_pair(stem: str, from_journal: bool) -> None:
            nonlocal resumed
            resumed += from_journal
            progress.update(task, advance=1, status=f"{stem}" + (" (resumed)" if from_journal else ""))

        result = score_folders(plan, device=dev, workers=workers, journal=journal, on_pair=on_pair)
    if resumed:
        err_console.print(f"resumed {resumed} of {len(plan.stems)} pairs from {journal}")

    columns = [m for m in TABLE_ORDER if m in names]
    table = ResultTable(
        columns=columns,
        rows=result.means(),
        title=f"Fusion metrics, mean over {len(plan.stems)} pairs of {ir}",
        digits=4,
    )
    rendered = render.result_table(table)
    render.print_wide(console, rendered)
    for line in _notes(result):
        err_console.print(f"[yellow]note:[/] {line}")
    if out is not None:
        paths = table.write(out, "metrics")
        paths.append(write_text_atomic(out / "metrics.json", json.dumps(result.to_json(), indent=2) + "\n"))
        journal.unlink(missing_ok=True)
        console.print("wrote " + ", ".join(str(p) for p in paths))
