"""Train DMNet in two stages on folders of IR/VIS pairs: the library call under ``fusedet train-fuser``.

Checked before anything slow: the pairs of the data folders are found with the dataset readers' layout
code and the chosen split (fusedet.train_data.find_training_data; which folders, layouts, splits and
how many pairs are said in notes), every pair is at least the crop size (image headers), and a resume
matches the stored run: configuration, settings, and the data fingerprint (each pair's file names,
sizes and modification times), so a run never silently continues on other pairs. Then the pairs are
decoded into a random-crop dataset, the model is built from a preset (with an ablation and
configuration overrides), and dmnet's own trainer (dmnet.train) runs both stages, writing a
checkpoint after every epoch; its progress hooks are turned into fusedet.events. Under ``torchrun``
every process trains on its share of the crops; only rank 0 reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fusedet import runtime
from fusedet.datasets.atomic import check_output_folder
from fusedet.events import Events, NullEvents, as_events
from fusedet.settings import FuserModelSettings


def loss_text(losses: dict[str, float]) -> str:
    """'total 0.1234  dm 0.0100  ...': the losses of a step or an epoch, total first."""
    keys = ["total"] + sorted(k for k in losses if k != "total")
    return "  ".join(f"{k} {losses[k]:.4f}" for k in keys if k in losses)


class _EventsCallback:
    """dmnet.train.TrainCallback -> events: one stage per epoch with its running mean losses, a note
    per finished epoch."""

    def __init__(self, events: Events) -> None:
        self.events, self.stage, self.sums, self.steps = events, "", {}, 0

    def on_start(self, info: dict[str, Any]) -> None:
        amp = ", bf16 autocast" if info["bf16_autocast"] else ""
        self.events.note(
            f"training on {info['device']}{amp} (world size {info['world_size']}): {info['steps_per_epoch']} steps "
            f"per epoch, epochs {info['first_epoch']}..{info['epochs']}"
        )

    def on_epoch_start(self, epoch: int, stage: int, steps: int) -> None:
        self.sums, self.steps = {}, 0
        self.stage = f"epoch {epoch} stage {'I' * stage}"
        self.events.start(self.stage, total=steps)

    def on_step(self, epoch: int, step: int, losses: dict[str, float]) -> None:
        self.steps += 1
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.events.advance(self.stage, 1, loss_text({k: v / self.steps for k, v in self.sums.items()}))

    def on_epoch_end(self, record: dict[str, Any], checkpoint: Path) -> None:
        self.events.finish(self.stage)
        self.events.note(
            f"epoch {record['epoch']:>3} stage {'I' * record['stage']:<2} {loss_text(record['losses'])}  "
            f"({record['seconds']:.1f} s) -> {checkpoint.name}"
        )


@runtime.in_session
def train_fuser(
    data: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: FuserModelSettings | None = None,
    train=None,
    resume: bool = False,
    allow_new_data: bool = False,
    data_split: str = "all",
    events: Events | None = None,
):
    """Train a DMNet on the pairs of the `data` folders into `out` (epoch_NNN.pt, last.pt).

    `model`: preset, ablation, overrides, crops; `train`: a dmnet.train.TrainSettings (epochs, batch,
    lr, seed, device, precision, workers); `data_split`: ``all`` pairs (default) or those of the
    ``train``, ``val`` or ``test`` split (fusedet.train_data); `resume`: continue from OUT/last.pt;
    `allow_new_data`: let a resume continue on pairs that differ from the stored run's (recorded in
    the checkpoint summary's ``data_changes``). Returns dmnet's TrainResult. Raises InputError for
    missing, unpaired, unreadable or too-small pairs, DMNetError for a bad configuration or a resume
    that does not match the stored run, all before the pairs are decoded."""
    import torch

    from dmnet import DMNet
    from dmnet.train import TrainSettings, check_resume
    from dmnet.train import train as run_training
    from fusedet.train_data import CropDataset, describe_training, find_training_data

    model = model or FuserModelSettings()
    train = train or TrainSettings()
    main_rank = int(os.environ.get("RANK", "0")) == 0
    events = as_events(events) if main_rank else NullEvents()
    out = Path(out)
    check_output_folder(out, "--out")
    overrides = {"seed": train.seed, **model.overrides}
    torch.manual_seed(train.seed)  # the initial weights
    network = DMNet.from_preset(model.preset, ablation=model.ablation, **overrides)
    found = find_training_data(data, data_split)
    for line in found.descriptions:
        events.note(f"data: {line}")
    found.check_crop(model.crop)
    ranges = (model.ir_range, model.vis_range)
    data_info = describe_training(found, model.crop, model.crops_per_pair, ranges)
    for line in check_resume(out, network, train, data_info, resume=resume, allow_new_data=allow_new_data).notes:
        events.note(f"note: {line}")
    dataset = CropDataset(found, crop=model.crop, crops_per_pair=model.crops_per_pair, seed=train.seed, ranges=ranges, events=events)
    for line in dataset.log.warnings():
        events.note(f"warning: {line}")
    params = sum(p.numel() for p in network.parameters())
    events.note(
        f"DMNet {model.preset}{f' ({model.ablation})' if model.ablation else ''}: {params / 1e6:.3f}M parameters; "
        f"{dataset.pairs} pairs x {model.crops_per_pair} crop(s) of {model.crop}x{model.crop}, batch {train.batch_size}, lr {train.lr:g}"
    )
    return run_training(network, dataset, out, train, data_info=data_info, resume=resume, allow_new_data=allow_new_data,
                        callback=_EventsCallback(events))
