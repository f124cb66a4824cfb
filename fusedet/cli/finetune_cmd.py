"""`fusedet finetune`: fine-tune the detector on IR, visible or fused train images, then evaluate.

`--protocol per-source` (Table VII's protocol) trains one detector per source and evaluates each on
its own source; `--protocol shared` trains one detector on all sources mixed and evaluates it on
every source. See fusedet.finetune for the YOLO export, training and resume rules.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from fusedet.cli.app import app
from fusedet.cli.common import console, err_console, handle_errors, make_progress
from fusedet.cli.evaluate_cmd import DEFAULT_SOURCES, parse_options, report_dataset
from fusedet.errors import InputError


@app.command("finetune")
@handle_errors
def finetune(
    dataset: str = typer.Option(..., "--dataset", help="m3fd, msrs, llvip or demo."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder (demo: default the cache)."),
    sources: list[str] | None = typer.Option(None, "--sources", help=f"Comma list of sources to train on (default {DEFAULT_SOURCES})."),
    protocol: str = typer.Option("per-source", "--protocol", help="per-source (one detector per source) or shared (one for all)."),
    weights: str = typer.Option(
        "yolov5xu.pt", "--weights", help="Start: a .pt checkpoint, demo, or a model yaml (yolov8n.yaml) to train from scratch."
    ),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Training epochs."),
    imgsz: int = typer.Option(640, "--imgsz", min=32, help="Training and evaluation image size."),
    batch: int = typer.Option(16, "--batch", min=1, help="Training batch size (also the evaluation batch)."),
    fuse_batch: int = typer.Option(1, "--fuse-batch", min=1, help="Pairs per fusion pass (DMNet needs GBs per 1024x768 pair)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: runs/finetune-DATASET-PROTOCOL)."),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", min=0, help="Data-loading workers."),
    seed: int = typer.Option(0, "--seed", help="Training seed (and split seed for datasets without split files)."),
    split: str = typer.Option("test", "--split", help="Split to evaluate on after training."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Fused images and YOLO export (default: $FUSEDET_CACHE, else OUT/cache)."),
    dataset_option: list[str] | None = typer.Option(None, "--dataset-option", help="KEY=VALUE passed to the dataset reader."),
    train_option: list[str] | None = typer.Option(
        None, "--train-option", help="KEY=VALUE passed to ultralytics' train() (e.g. mosaic=0.5, lr0=0.005, cache=ram)."
    ),
) -> None:
    """Fine-tune YOLO on a source's train images (per source or shared), then measure per-class AP."""
    from fusedet.datasets.registry import load_dataset
    from fusedet.detector import resolve_device
    from fusedet.finetune import PROTOCOLS, detectors_for, export_sources, train_protocol
    from fusedet.pipeline import check_split, default_cache_dir, run_evaluation
    from fusedet.sources import parse_sources

    check_split(split)
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    train_options = parse_options(train_option, "--train-option")
    out = out or Path("runs") / f"finetune-{dataset.lower()}-{protocol}"
    dev = resolve_device(device)
    data = load_dataset(dataset, root, seed=seed, **parse_options(dataset_option))
    report_dataset(data, "train")
    if not data.split("val"):
        err_console.print("[yellow]warning:[/] no val pairs: best.pt is picked on the train pairs")
    parsed = parse_sources(sources or [DEFAULT_SOURCES], device=dev)
    cache = cache_dir or default_cache_dir(out)
    with make_progress() as progress:
        export = export_sources(data, parsed, cache, batch=batch, fuse_batch=fuse_batch, workers=workers, progress=progress)
    trained = train_protocol(
        data,
        parsed,
        export,
        protocol=protocol,
        start=weights,
        out=out,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device=dev,
        workers=workers,
        seed=seed,
        options=train_options,
    )
    training = {
        "protocol": protocol,
        "start_weights": weights,
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "seed": seed,
        "train_options": train_options,
        "validated_on": "val" if data.split("val") else "train (no val pairs)",
        "models": {name: t.info() for name, t in trained.items()},
    }
    detectors = detectors_for(trained, parsed, protocol, dev, imgsz=imgsz, batch=batch)
    with make_progress() as progress:
        table = run_evaluation(
            data,
            parsed,
            detectors,
            split=split,
            out=out,
            cache_dir=cache,
            batch=batch,
            fuse_batch=fuse_batch,
            workers=workers,
            progress=progress,
            run_info={"device": dev, "seed": seed, "training": training},
        )
    console.print(table.to_rich())
    for name, t in trained.items():
        console.print(f"{name}: {t.weights} ({t.seconds:.0f} s{', reused/resumed' if t.resumed else ''})")
    console.print(f"wrote the tables, detections and run.json to {out}")
