"""`fusedet train-fuser`: two-stage DMNet training on folders of IR/VIS pairs (dmnet.train).

Each --data folder holds an infrared and a visible subfolder (ir/vi, Ir/Vis, infrared/visible, ...:
see fusedet.train_data). Checkpoints go to --out: epoch_NNN.pt after every epoch and last.pt (with
the optimizer state); --resume continues from last.pt. Under torchrun (WORLD_SIZE > 1) every process
trains on its share of the crops with DistributedDataParallel and only rank 0 prints and writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from fusedet.cli.app import app
from fusedet.cli.common import console, err_console, handle_errors, make_progress
from fusedet.errors import InputError


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> dict; VALUE is read as JSON (numbers, lists, true/false), else as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY=VALUE, for instance --set gamma2=20")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _loss_text(losses: dict[str, float]) -> str:
    keys = ["total"] + sorted(k for k in losses if k != "total")
    return "  ".join(f"{k} {losses[k]:.4f}" for k in keys if k in losses)


class _RichProgress:
    """TrainCallback that draws one progress bar per epoch with the running mean losses."""

    def __init__(self, progress) -> None:
        self.progress, self.task, self.sums, self.steps = progress, 0, {}, 0

    def on_start(self, info: dict[str, Any]) -> None:
        amp = ", bf16 autocast" if info["bf16_autocast"] else ""
        console.print(
            f"training on {info['device']}{amp} (world size {info['world_size']}): {info['steps_per_epoch']} steps "
            f"per epoch, epochs {info['first_epoch']}..{info['epochs']}"
        )

    def on_epoch_start(self, epoch: int, stage: int, steps: int) -> None:
        self.sums, self.steps = {}, 0
        self.task = self.progress.add_task(f"epoch {epoch} stage {'I' * stage}", total=steps, status="")

    def on_step(self, epoch: int, step: int, losses: dict[str, float]) -> None:
        self.steps += 1
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.progress.update(self.task, advance=1, status=_loss_text({k: v / self.steps for k, v in self.sums.items()}))

    def on_epoch_end(self, record: dict[str, Any], checkpoint: Path) -> None:
        self.progress.remove_task(self.task)
        self.progress.console.print(
            f"epoch {record['epoch']:>3} stage {'I' * record['stage']:<2} {_loss_text(record['losses'])}  "
            f"({record['seconds']:.1f} s) -> {checkpoint.name}"
        )


@app.command("train-fuser")
@handle_errors
def train_fuser(
    data: list[Path] = typer.Option(..., "--data", help="Folder with ir/ + vi/ (or Ir/Vis, infrared/visible) subfolders; repeatable."),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder (epoch_NNN.pt each epoch, last.pt)."),
    preset: str = typer.Option("lite", "--preset", help="Model size: lite (0.3M parameters, CPU-sized) or paper (about 390M)."),
    stage1_epochs: int = typer.Option(15, "--stage1-epochs", min=0, help="Stage I epochs (paper: 15)."),
    stage2_epochs: int = typer.Option(30, "--stage2-epochs", min=0, help="Stage II epochs (paper: 30)."),
    crop: int = typer.Option(128, "--crop", min=8, help="Side of the random square crops (paper: 128)."),
    crops_per_pair: int = typer.Option(1, "--crops-per-pair", min=1, help="Random crops of each pair per epoch."),
    texture_crops: int = typer.Option(
        1, "--texture-crops", min=1, help="Keep the most textured of K random crop positions (1: uniform crops)."
    ),
    batch: int = typer.Option(8, "--batch", min=1, help="Crops per optimizer step (per process)."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate (paper: 1e-4)."),
    lr_decay_epoch: int = typer.Option(
        0, "--lr-decay-epoch", min=0, help="From this epoch on the learning rate is lr x --lr-decay (0: constant; may be added on --resume)."
    ),
    lr_decay: float = typer.Option(0.1, "--lr-decay", help="Factor of the learning-rate step (see --lr-decay-epoch)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds the model, crops, order and noise."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16."),
    ablation: str | None = typer.Option(None, "--ablation", help="A Table V row, AE1..AE14."),
    grad_operator: str | None = typer.Option(None, "--grad-operator", help="Gradient loss operator: sobel, canny, log, roberts."),
    overrides: list[str] = typer.Option([], "--set", help="Model config override KEY=VALUE (JSON value), e.g. --set gamma2=20."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    keep_epochs: int = typer.Option(0, "--keep-epochs", min=0, help="Keep only the newest N epoch_NNN.pt (0: all)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt (same data and settings)."),
) -> None:
    """Train DMNet in two stages (paper: Adam, lr 1e-4, 128x128 crops, 15 + 30 epochs)."""
    import torch

    from dmnet import DMNet
    from dmnet.train import TrainCallback, TrainSettings, train
    from fusedet.train_data import CropDataset

    main_rank = int(os.environ.get("RANK", "0")) == 0
    config_overrides = parse_overrides(overrides)
    if grad_operator is not None:
        config_overrides["grad_operator"] = grad_operator
    config_overrides.setdefault("seed", seed)
    settings = TrainSettings(
        stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, batch_size=batch, lr=lr, seed=seed,
        device=device, precision=precision, num_workers=workers, keep_epochs=keep_epochs,
        lr_decay_epoch=lr_decay_epoch, lr_decay=lr_decay,
    )
    torch.manual_seed(seed)  # the initial weights
    model = DMNet.from_preset(preset, ablation=ablation, **config_overrides)
    with make_progress(disable=not main_rank) as progress:
        task = progress.add_task("reading pairs", total=None, status="")
        dataset = CropDataset(
            data, crop=crop, crops_per_pair=crops_per_pair, seed=seed, texture_candidates=texture_crops,
            on_read=lambda done, total: progress.update(task, completed=done, total=total),
        )
        progress.remove_task(task)
        if main_rank:
            params = sum(p.numel() for p in model.parameters())
            console.print(
                f"DMNet {preset}{f' ({ablation})' if ablation else ''}: {params / 1e6:.3f}M parameters; "
                f"{dataset.pairs} pairs x {crops_per_pair} crop(s) of {crop}x{crop}, batch {batch}, lr {lr:g}"
            )
        callback = _RichProgress(progress) if main_rank else TrainCallback()
        try:
            result = train(model, dataset, out, settings, data_info=dataset.describe(), resume=resume, callback=callback)
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted[/]: finished epochs are in {out}; add --resume to continue")
            raise typer.Exit(code=130) from None
    if main_rank:
        if result.epochs_done == result.resumed_from:
            console.print(f"nothing to do: {result.last_checkpoint} already holds {result.epochs_done} epochs")
        else:
            console.print(f"done: {result.epochs_done} epochs; weights in {result.last_checkpoint}")
