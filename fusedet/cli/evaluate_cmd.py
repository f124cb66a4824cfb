"""`fusedet evaluate`: the DMNet paper's Table VII for a dataset and a set of sources.

Parse (settings objects, source specs: a typo fails here, before anything loads), call
(``FusionDetector.evaluate``: fusedet.evaluation's engine), print (the table). Everything lands in
--out (tables, plot, COCO json files, run.json); fused images are cached and finished sources are
reused, so the same command resumes an interrupted run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.markup import escape

from fusedet.cli import render
from fusedet.cli.app import app
from fusedet.cli.common import RANGE_HELP, FusedetCommand, RichEvents, command, console, err_console, examples, make_progress
from fusedet.cli.report_options import BASELINE, BOOTSTRAP, BOOTSTRAP_SEED, CI_STYLE, GROUP_BY, METRIC, report_options

DATASET_NAMES = "m3fd, msrs, llvip, flir, kaist or demo"
DEMO_SOURCES = "ir,vi,dmnet,mean,max"
DEFAULT_SOURCES = "ir,vi,dmnet"


def report_dataset(dataset, split: str) -> None:
    """The data and its split in one line each (the split said exactly once), then every reader
    warning (counted, never silent; odd class names shown with repr)."""
    counts = dataset.instance_counts(split)
    layout = f" ({dataset.layout} layout)" if getattr(dataset, "layout", "") else ""
    err_console.print(f"[bold]{escape(dataset.name)}[/] {escape(str(dataset.root))}{escape(layout)}; boxes in {split}: "
                      + ", ".join(f"{escape(c)} {n}" for c, n in counts.items()))
    err_console.print(f"[bold]split[/] {escape(dataset.describe_split(split))}")
    for message in dataset.warnings.messages():
        err_console.print(f"[yellow]warning:[/] {escape(message)}")


def load_reported(name: str, root: Path | None, seed: int, options: list[str] | None, split: str, split_file: Path | None = None):
    """Load a dataset as the CLI does (a bar while the demo data is generated), then report it."""
    from fusedet.datasets.registry import load_dataset
    from fusedet.options import parse_key_values

    parsed = parse_key_values(options, "--dataset-option")
    err_console.print(f"[bold]loading[/] {escape(name)} ...")
    with make_progress(transient=True) as progress:
        data = load_dataset(name, root, seed=seed, split_file=split_file, events=RichEvents(progress), **parsed)
    report_dataset(data, split)
    return data


@app.command(
    "evaluate",
    cls=FusedetCommand,
    epilog=examples(
        "fusedet evaluate --dataset demo",
        "fusedet evaluate --dataset m3fd --root /data/M3FD --sources ir,vi,dmnet,folder:CDDFuse=/results/cddfuse --device cuda",
    ),
)
@command
def evaluate(
    dataset: str = typer.Option(..., "--dataset", help=f"{DATASET_NAMES} (demo: synthetic, generated offline)."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder (default for demo: the cache)."),
    split: str = typer.Option("test", "--split", help="train, val, test or all."),
    split_file: Path | None = typer.Option(
        None, "--split-file", help="A split list replacing the dataset's own: STEM SPLIT lines, or one stem per line.", show_default=False
    ),
    sources: list[str] | None = typer.Option(
        None,
        "--sources",
        help="Comma list of ir, vi, fuser specs (dmnet, mean, max, NAME=dmnet:PATH) and folder:NAME=DIR "
        f"\\[default: {DEFAULT_SOURCES}; {DEMO_SOURCES} for demo].",
        show_default=False,
    ),
    weights: str | None = typer.Option(
        None, "--weights", help="Detector: a .pt path, yolov5xu.pt (downloaded once when online) or demo "
        "\\[default: yolov5xu.pt; demo for demo].", show_default=False,
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N \\[default: cuda when available].", show_default=False),
    out: Path | None = typer.Option(None, "--out", help="Output folder \\[default: runs/evaluate-DATASET-SPLIT].", show_default=False),
    batch: int = typer.Option(8, "--batch", min=1, help="Images per detection batch."),
    fuse_batch: int = typer.Option(1, "--fuse-batch", min=1, help="Pairs per fusion pass (DMNet needs GBs per 1024x768 pair)."),
    imgsz: int | None = typer.Option(
        None, "--imgsz", min=32, help="Detector input size \\[default: the weights' training size, else 640].", show_default=False
    ),
    conf: float = typer.Option(0.001, "--conf", min=0.0, max=1.0, help="Confidence threshold (evaluation setting)."),
    iou: float = typer.Option(0.6, "--iou", min=0.0, max=1.0, help="NMS IoU threshold."),
    max_det: int = typer.Option(300, "--max-det", min=1, help="Most detections kept per image."),
    paper: bool = typer.Option(False, "--paper", help="Add the paper's published Table VII rows (M3FD classes), labelled (paper)."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Fused-image cache \\[default: $FUSEDET_CACHE or ~/.cache/fusedet, shared by all runs].", show_default=False
    ),
    workers: int = typer.Option(2, "--workers", min=0, help="Image-reading threads."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split for datasets without split files, and of the demo generator."),
    dataset_option: list[str] | None = typer.Option(
        None, "--dataset-option", help="KEY=VALUE for the dataset reader (msrs: labels=labels_ir; demo: n_pairs=..., size=WxH)."
    ),
    ir_range: str = typer.Option("auto", "--ir-range", help=RANGE_HELP),
    vis_range: str = typer.Option("auto", "--vis-range", help=RANGE_HELP),
    metric: str = METRIC,
    bootstrap: int = BOOTSTRAP,
    bootstrap_seed: int = BOOTSTRAP_SEED,
    baseline: str = BASELINE,
    ci_style: str = CI_STYLE,
    group_by: str | None = GROUP_BY,
) -> None:
    """Per-class AP@0.5 of a detector on IR, visible and fused images (the paper's Table VII), with
    95 % bootstrap intervals and differences to the best single-sensor row."""
    from fusedet.detector import DEFAULT_WEIGHTS
    from fusedet.devices import resolve_device
    from fusedet.fused_cache import default_cache_dir
    from fusedet.paper_results import paper_rows
    from fusedet.pipeline import FusionDetector
    from fusedet.settings import DetectorSettings, RunSettings
    from fusedet.sources import parse_sources

    is_demo = dataset.lower() == "demo"
    out = out or Path("runs") / f"evaluate-{dataset.lower()}-{split}"
    detector = DetectorSettings(weights or ("demo" if is_demo else DEFAULT_WEIGHTS), imgsz, conf, iou, max_det, batch)
    run = RunSettings(device=device, split=split, fuse_batch=fuse_batch, workers=workers, cache_dir=cache_dir, seed=seed,
                      ir_range=ir_range, vis_range=vis_range)
    report_settings = report_options(metric, bootstrap, bootstrap_seed, baseline, ci_style, group_by, paper)
    dev = resolve_device(run.device)
    run = dataclasses.replace(run, device=str(dev), cache_dir=default_cache_dir(run))
    parsed = parse_sources(sources or [DEMO_SOURCES if is_demo else DEFAULT_SOURCES], device=dev)

    data = load_reported(dataset, root, seed, dataset_option, split, split_file)
    if paper and not paper_rows(data.classes):
        err_console.print("[yellow]warning:[/] --paper: Table VII is on M3FD's classes; no paper rows for these classes")
    runner = FusionDetector(detector=detector, run=run)
    err_console.print(f"[bold]detector[/] {runner.detector.weights} on {runner.device}, imgsz {runner.detector.imgsz}")
    with make_progress() as progress:
        report = runner.evaluate(data, sources=parsed, out=out, report=report_settings, events=RichEvents(progress))
    render.print_wide(console, render.report(report))
    console.print(f"wrote the tables (table.*, table_ap50_95.* or table_ap50.*, table_by_size.*{', table_by_group.*' if group_by else ''}), "
                  f"plots, ground_truth.json, detections/ and run.json to {out}")
