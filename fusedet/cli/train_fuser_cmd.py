"""`fusedet train-fuser`: two-stage DMNet training on folders of IR/VIS pairs.

Parse, call (``fusedet.train_fuser``: dmnet's trainer), print. Each --data folder is read in any
layout the dataset readers accept (ir/vi, Ir/Vis, infrared/{train,test} + visible/{train,test},
train/ir + train/vi, KAIST, FLIR-aligned: see fusedet.train_data); --data-split keeps one split's pairs.
Checkpoints go to --out: epoch_NNN.pt after every epoch and last.pt (with the optimizer state);
--resume continues from last.pt on the same pairs (--allow-new-data: on changed pairs). Under
torchrun (WORLD_SIZE > 1) every process trains on its share of the crops with DistributedDataParallel
and only rank 0 prints and writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from fusedet.cli.app import app
from fusedet.cli.common import RANGE_HELP, FusedetCommand, RichEvents, command, console, err_console, examples, make_progress


@app.command(
    "train-fuser",
    cls=FusedetCommand,
    epilog=examples(
        "fusedet train-fuser --data data/msrs --preset lite --stage1-epochs 3 --stage2-epochs 20 --lr 1e-3 --out runs/lite",
        "torchrun --nproc_per_node 4 $(which fusedet) train-fuser --data MSRS_train --preset paper --out runs/paper",
    ),
)
@command
def train_fuser(
    data: list[Path] = typer.Option(
        ..., "--data", help="Folder of IR/VIS pairs in any layout the dataset readers accept (ir/ + vi/, Ir/ + Vis/, "
        "infrared/{train,test} + visible/{train,test}, train/ir + train/vi, KAIST, FLIR-aligned); repeatable."
    ),
    data_split: str = typer.Option(
        "all", "--data-split", help="Pairs to train on: all, or the train, val or test split (split files, subfolders, "
        "else the readers' seeded split)."
    ),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder (epoch_NNN.pt each epoch, last.pt)."),
    preset: str = typer.Option("lite", "--preset", help="Model size: lite (0.3M parameters, CPU-sized) or paper (about 390M)."),
    stage1_epochs: int = typer.Option(15, "--stage1-epochs", min=0, help="Stage I epochs (paper: 15)."),
    stage2_epochs: int = typer.Option(30, "--stage2-epochs", min=0, help="Stage II epochs (paper: 30)."),
    crop: int = typer.Option(128, "--crop", min=8, help="Side of the random square crops (paper: 128)."),
    crops_per_pair: int = typer.Option(1, "--crops-per-pair", min=1, help="Random crops of each pair per epoch."),
    batch: int = typer.Option(8, "--batch", min=1, help="Crops per optimizer step (per process)."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate (paper: 1e-4)."),
    lr_decay_epoch: int = typer.Option(
        0, "--lr-decay-epoch", min=0, help="From this epoch on the learning rate is lr x --lr-decay (0: constant; may be added on --resume)."
    ),
    lr_decay: float = typer.Option(0.1, "--lr-decay", help="Factor of the learning-rate step (see --lr-decay-epoch)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds the model, crops, order and noise."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N \\[default: cuda when available].", show_default=False),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16."),
    ablation: str | None = typer.Option(None, "--ablation", help="A Table V row, AE1..AE14 \\[default: none].", show_default=False),
    grad_operator: str | None = typer.Option(
        None, "--grad-operator", help="Gradient loss operator: sobel, canny, log, roberts \\[default: sobel].", show_default=False
    ),
    overrides: list[str] = typer.Option([], "--set", help="Model config override KEY=VALUE (JSON value), e.g. --set gamma2=20."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    keep_epochs: int = typer.Option(0, "--keep-epochs", min=0, help="Keep only the newest N epoch_NNN.pt (0: all)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt (same data and settings)."),
    allow_new_data: bool = typer.Option(
        False, "--allow-new-data", help="With --resume: continue although the pairs changed (recorded in the checkpoint)."
    ),
    ir_range: str = typer.Option("auto", "--ir-range", help=RANGE_HELP),
    vis_range: str = typer.Option("auto", "--vis-range", help=RANGE_HELP),
) -> None:
    """Train DMNet in two stages (paper: Adam, lr 1e-4, 128x128 crops, 15 + 30 epochs)."""
    from dmnet.train import TrainSettings
    from fusedet.fuser_training import train_fuser as run_training
    from fusedet.options import parse_key_values
    from fusedet.settings import FuserModelSettings

    config = parse_key_values(overrides, "--set")
    if grad_operator is not None:
        config["grad_operator"] = grad_operator
    model = FuserModelSettings(preset, ablation, config, crop, crops_per_pair, ir_range, vis_range)
    settings = TrainSettings(
        stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, batch_size=batch, lr=lr, seed=seed,
        device=device, precision=precision, num_workers=workers, keep_epochs=keep_epochs,
        lr_decay_epoch=lr_decay_epoch, lr_decay=lr_decay,
    )
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with make_progress(disable=not main_rank) as progress:
        try:
            result = run_training(data, out, model=model, train=settings, resume=resume, allow_new_data=allow_new_data,
                                  data_split=data_split, events=RichEvents(progress))
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted[/]: finished epochs are in {out}; add --resume to continue")
            raise typer.Exit(code=130) from None
    if main_rank:
        if result.epochs_done == result.resumed_from:
            console.print(f"nothing to do: {result.last_checkpoint} already holds {result.epochs_done} epochs")
        else:
            console.print(f"done: {result.epochs_done} epochs; weights in {result.last_checkpoint}")
