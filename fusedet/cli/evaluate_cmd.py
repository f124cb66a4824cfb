"""`fusedet evaluate`: the DMNet paper's Table VII for a dataset and a set of sources.

Per source (ir, vi, each fuser, each folder of fused images) the detector runs on the split's images
and per-class AP@0.5 is measured against the dataset's boxes. Everything lands in --out (tables,
plot, COCO json files, run.json; see fusedet.pipeline.run_evaluation); fused images are cached and
finished sources are reused, so the same command resumes an interrupted run.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fusedet.cli.app import app
from fusedet.cli.common import console, err_console, handle_errors, make_progress
from fusedet.errors import InputError

DEMO_SOURCES = "ir,vi,dmnet,mean,max"
DEFAULT_SOURCES = "ir,vi,dmnet"


def parse_options(items: list[str] | None, flag: str = "--dataset-option") -> dict:
    """['n_pairs=40', 'size=320x240', 'mosaic=0.5'] -> {'n_pairs': 40, 'size': '320x240', 'mosaic': 0.5}:
    values that read as int, float or true/false become those, the rest stay strings."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"bad {flag} {item!r}: write KEY=VALUE")
        out[key.strip()] = _typed(value.strip())
    return out


def _typed(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def report_dataset(dataset, split: str) -> None:
    """One line on the data, then every reader warning (counted, never silent)."""
    counts = dataset.instance_counts(split)
    err_console.print(
        f"[bold]{dataset.name}[/] {dataset.root}: {len(dataset.split(split))} {split} pairs "
        f"(split: {dataset.split_source or 'given'}); boxes: " + ", ".join(f"{c} {n}" for c, n in counts.items())
    )
    w = dataset.warnings
    if w.unknown_classes:
        listed = ", ".join(f"{name} x{n}" for name, n in sorted(w.unknown_classes.items()))
        err_console.print(f"[yellow]warning:[/] unknown class names skipped: {listed}")
    if w.dropped_boxes:
        err_console.print(f"[yellow]warning:[/] {w.dropped_boxes} empty box(es) dropped after clipping to the image")
    if w.clipped_boxes:
        err_console.print(f"[yellow]warning:[/] {w.clipped_boxes} box(es) reached outside the image and were clipped")
    if w.unannotated_images:
        err_console.print(f"[yellow]warning:[/] {len(w.unannotated_images)} pair(s) without annotation skipped")
    for note in w.notes:
        err_console.print(f"[yellow]note:[/] {note}")


@app.command("evaluate")
@handle_errors
def evaluate(
    dataset: str = typer.Option(..., "--dataset", help="m3fd, msrs, llvip or demo (synthetic, generated offline)."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder (demo: where to generate it; default: the cache)."),
    split: str = typer.Option("test", "--split", help="train, val, test or all."),
    sources: list[str] | None = typer.Option(
        None,
        "--sources",
        help="Comma list of ir, vi, fuser specs (dmnet, mean, max, NAME=dmnet:PATH) and folder:NAME=DIR. "
        f"Default: {DEFAULT_SOURCES} ({DEMO_SOURCES} for demo).",
    ),
    weights: str | None = typer.Option(
        None, "--weights", help="Detector: yolov5xu.pt (default; downloaded once when online), a .pt path, or demo (default for demo)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: runs/evaluate-DATASET-SPLIT)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Images per detection batch."),
    fuse_batch: int = typer.Option(1, "--fuse-batch", min=1, help="Pairs per fusion pass (DMNet needs GBs per 1024x768 pair)."),
    imgsz: int | None = typer.Option(None, "--imgsz", min=32, help="Detector input size (default: the weights' training size, else 640)."),
    conf: float = typer.Option(0.001, "--conf", min=0.0, max=1.0, help="Confidence threshold (evaluation setting)."),
    iou: float = typer.Option(0.6, "--iou", min=0.0, max=1.0, help="NMS IoU threshold."),
    max_det: int = typer.Option(300, "--max-det", min=1, help="Most detections kept per image."),
    paper: bool = typer.Option(False, "--paper", help="Add the paper's published Table VII rows (M3FD classes), labelled (paper)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Fused-image cache (default: $FUSEDET_CACHE, else OUT/cache)."),
    workers: int = typer.Option(2, "--workers", min=0, help="Image-reading threads."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split for datasets without split files, and of the demo generator."),
    dataset_option: list[str] | None = typer.Option(
        None, "--dataset-option", help="KEY=VALUE passed to the dataset reader (msrs: labels=labels_ir; demo: n_pairs=..., size=WxH)."
    ),
) -> None:
    """Per-class AP@0.5 of a detector on IR, visible and fused images (the paper's Table VII)."""
    from fusedet.datasets.registry import load_dataset
    from fusedet.detector import DEFAULT_WEIGHTS
    from fusedet.paper_results import paper_rows
    from fusedet.pipeline import FusionDetector, check_split

    check_split(split)
    is_demo = dataset.lower() == "demo"
    spec = sources or [DEMO_SOURCES if is_demo else DEFAULT_SOURCES]
    weights = weights or ("demo" if is_demo else DEFAULT_WEIGHTS)
    out = out or Path("runs") / f"evaluate-{dataset.lower()}-{split}"
    err_console.print(f"[bold]loading[/] {dataset} ...")
    start = time.perf_counter()
    data = load_dataset(dataset, root, seed=seed, **parse_options(dataset_option))
    load_seconds = time.perf_counter() - start
    report_dataset(data, split)
    if paper and not paper_rows(data.classes):
        err_console.print("[yellow]warning:[/] --paper: Table VII is on M3FD's classes; no paper rows for these classes")
    runner = FusionDetector(
        fuser="dmnet",
        weights=weights,
        device=device,
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        max_det=max_det,
        batch=batch,
        fuse_batch=fuse_batch,
        workers=workers,
        cache_dir=cache_dir,
    )
    err_console.print(f"[bold]detector[/] {runner.detector.weights} on {runner.device}, imgsz {runner.detector.imgsz}")
    with make_progress() as progress:
        table = runner.evaluate(
            data, sources=spec, split=split, out=out, seed=seed, paper=paper, progress=progress, timings={"load dataset": load_seconds}
        )
    console.print(table.to_rich())
    console.print(f"wrote table.csv/.md/.tex/.json, ap_per_class.png, ground_truth.json, detections/, run.json to {out}")
