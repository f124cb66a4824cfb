"""`fusedet finetune`: fine-tune the detector on IR, visible or fused train images, then evaluate.

Parse (settings objects, source specs), call (``fusedet.finetune``: export, train, evaluate), print.
`--protocol per-source` (Table VII's protocol) trains one detector per source and evaluates each on
its own source; `--protocol shared` trains one detector on all sources mixed and evaluates it on
every source.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import typer

from fusedet.cli import render
from fusedet.cli.app import app
from fusedet.cli.common import RANGE_HELP, FusedetCommand, RichEvents, command, console, examples, make_progress
from fusedet.cli.evaluate_cmd import DATASET_NAMES, DEFAULT_SOURCES, load_reported
from fusedet.cli.report_options import BASELINE, BOOTSTRAP, BOOTSTRAP_SEED, CI_STYLE, GROUP_BY, METRIC, report_options


@app.command(
    "finetune",
    cls=FusedetCommand,
    epilog=examples(
        "fusedet finetune --dataset demo --sources ir,vi,dmnet --protocol shared --weights yolov8n.yaml --epochs 10 --imgsz 320",
        "fusedet finetune --dataset m3fd --root /data/M3FD --sources ir,vi,dmnet --weights yolov5xu.pt --device cuda",
    ),
)
@command
def finetune(
    dataset: str = typer.Option(..., "--dataset", help=f"{DATASET_NAMES}."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder (default for demo: the cache)."),
    sources: list[str] | None = typer.Option(None, "--sources", help=f"Comma list of sources to train on \\[default: {DEFAULT_SOURCES}].",
                                             show_default=False),
    protocol: str = typer.Option("per-source", "--protocol", help="per-source (one detector per source) or shared (one for all)."),
    weights: str = typer.Option(
        "yolov5xu.pt", "--weights", help="Start: a .pt checkpoint, demo, or a model yaml (yolov8n.yaml) to train from scratch."
    ),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Training epochs."),
    imgsz: int = typer.Option(640, "--imgsz", min=32, help="Training and evaluation image size."),
    batch: int = typer.Option(16, "--batch", min=1, help="Training batch size (also the evaluation batch)."),
    fuse_batch: int = typer.Option(1, "--fuse-batch", min=1, help="Pairs per fusion pass (DMNet needs GBs per 1024x768 pair)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N \\[default: cuda when available].", show_default=False),
    out: Path | None = typer.Option(None, "--out", help="Output folder \\[default: runs/finetune-DATASET-PROTOCOL].", show_default=False),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", min=0, help="Data-loading workers and image-reading threads."),
    seed: int = typer.Option(0, "--seed", help="Training seed (and split seed for datasets without split files)."),
    split: str = typer.Option("test", "--split", help="Split to evaluate on after training."),
    split_file: Path | None = typer.Option(
        None, "--split-file", help="A split list replacing the dataset's own: STEM SPLIT lines, or one stem per line.", show_default=False
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Fused images and YOLO export \\[default: $FUSEDET_CACHE or ~/.cache/fusedet, shared by all runs].",
        show_default=False,
    ),
    dataset_option: list[str] | None = typer.Option(None, "--dataset-option", help="KEY=VALUE for the dataset reader."),
    train_option: list[str] | None = typer.Option(
        None, "--train-option", help="KEY=VALUE for ultralytics' train() (e.g. mosaic=0.5, lr0=0.005, cache=ram), checked by "
        "ultralytics before any work; keys fusedet sets (epochs, imgsz, batch, seed, device, workers, ...) are refused."
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
    """Fine-tune YOLO on a source's train images (per source or shared), then measure per-class AP."""
    from fusedet.devices import resolve_device
    from fusedet.fine_tuning import finetune as run_finetune
    from fusedet.fused_cache import default_cache_dir
    from fusedet.options import parse_key_values
    from fusedet.settings import FinetuneSettings, RunSettings
    from fusedet.sources import parse_sources

    train = FinetuneSettings(protocol, weights, epochs, imgsz, batch, seed, parse_key_values(train_option, "--train-option"))
    out = out or Path("runs") / f"finetune-{dataset.lower()}-{protocol}"
    run = RunSettings(device=device, split=split, fuse_batch=fuse_batch, workers=workers, cache_dir=cache_dir, seed=seed,
                      ir_range=ir_range, vis_range=vis_range)
    dev = resolve_device(run.device)
    run = dataclasses.replace(run, device=str(dev), cache_dir=default_cache_dir(run))
    parsed = parse_sources(sources or [DEFAULT_SOURCES], device=dev)
    report_settings = report_options(metric, bootstrap, bootstrap_seed, baseline, ci_style, group_by)
    data = load_reported(dataset, root, seed, dataset_option, split, split_file)
    with make_progress() as progress:
        result = run_finetune(data, parsed, out, train=train, run=run, report=report_settings, events=RichEvents(progress))
    render.print_wide(console, render.report(result.report))
    for name, t in result.trained.items():
        console.print(f"{name}: {t.weights} ({t.seconds:.0f} s{', reused/resumed' if t.resumed else ''})")
    console.print(f"wrote the tables, detections and run.json to {out}")
