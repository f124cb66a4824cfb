"""Two-stage DMNet training (paper section III-G, IV-B): Adam, lr 1e-4, 15 + 30 epochs of crops.

Stage I (epochs 1..stage1_epochs) minimises ``model.stage1_losses`` (reconstruction + L_dm), stage II
(the rest) ``model.stage2_losses`` (L_int + L_dm + gamma2 L_gd), with one Adam optimizer over all
parameters for the whole run, so stage II starts from the stage I weights (the paper: "we retain the
encoder and decoder parameters obtained from Stage I as the initial weights and continue to train the
entire network jointly"). ``config.two_stage=False`` (ablation AE1) runs stage II for all epochs.

The trainer is generic over a torch ``Dataset`` whose items are ``(ir, vis_y)`` tensors 1 x H x W in
[0, 1]. If the dataset has ``set_epoch(epoch)`` it is called before every epoch (crops that depend on
the epoch), like ``DistributedSampler.set_epoch``.

Reproducibility and resume. Everything random in an epoch is a function of (seed, epoch, rank): the
sample order (``DistributedSampler`` seeded with ``seed``, ``set_epoch``), the crops (the dataset), and
the global torch RNG (dropout, diffusion noise and timesteps), which is reseeded at the start of every
epoch. A checkpoint is written after every epoch, so the RNG state at a resume point is fully given by
(seed, epoch): a run killed at any moment and resumed with ``resume=True`` produces the same weights as
an uninterrupted run (bit for bit on CPU with the same thread count).

Learning rate. Constant at ``lr`` (the paper), or stepped: from the 1-based epoch ``lr_decay_epoch`` on it
is ``lr * lr_decay`` (a step schedule, as in the common StepLR/MultiStepLR recipes). The step is set by
an absolute epoch, not as a fraction of the run, so a run extended with ``--resume`` (more stage-II
epochs) keeps the learning rate of every epoch it has done; a resume may also add or move the step
as long as it lies after the epochs already done. The rate of each epoch is in its history record.

Files in ``out_dir`` (written by rank 0 only, atomically): ``epoch_NNN.pt`` (weights, configuration and
summary: usable as ``fusedet fuse --weights``) and ``last.pt`` (the same plus the optimizer state and
training settings, for ``resume``).

Devices: CPU, or CUDA with bf16 autocast (``precision="auto"``). Launched by ``torchrun`` (env
``WORLD_SIZE`` > 1) it trains with DistributedDataParallel, one process per GPU (``LOCAL_RANK``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sized
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dmnet.checkpoint import check_state_dict, read_checkpoint, save_checkpoint
from dmnet.errors import DMNetError

LAST = "last.pt"
PRECISIONS = ("auto", "fp32", "bf16")
# settings that must match for a resumed run to continue the same training (stage2_epochs may grow)
_RESUME_KEYS = ("stage1_epochs", "batch_size", "lr", "seed")
# data_info entries that say which data a run trains on: with a fingerprint on both sides the
# fingerprint decides, so a moved data folder with the same files still resumes
FINGERPRINT = "fingerprint"
DATA_IDENTITY_KEYS = ("dirs", "pairs")


class NonFiniteLossError(DMNetError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


@dataclass
class TrainSettings:
    """How to train (what to train is the model's config). Defaults: the paper's section IV-B."""

    stage1_epochs: int = 15
    stage2_epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    device: str | None = None  # None: "cuda" when available, else "cpu"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    num_workers: int = 0  # DataLoader worker processes
    keep_epochs: int = 0  # keep only the newest N epoch_NNN.pt files (0: keep all)
    lr_decay_epoch: int = 0  # from this 1-based epoch on the learning rate is lr * lr_decay (0: constant)
    lr_decay: float = 0.1

    def __post_init__(self) -> None:
        problems = []
        if self.stage1_epochs < 0 or self.stage2_epochs < 0 or self.stage1_epochs + self.stage2_epochs < 1:
            problems.append(f"epochs must be >= 0 and not both 0 (got {self.stage1_epochs}, {self.stage2_epochs})")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1 (got {self.batch_size})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"learning rate must be a positive number (got {self.lr})")
        if self.seed < 0:
            problems.append(f"seed must be >= 0 (got {self.seed})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if self.num_workers < 0 or self.keep_epochs < 0:
            problems.append("num_workers and keep_epochs must be >= 0")
        if self.lr_decay_epoch < 0 or not (math.isfinite(self.lr_decay) and self.lr_decay > 0):
            problems.append(f"lr_decay_epoch must be >= 0 and lr_decay a positive number (got {self.lr_decay_epoch}, {self.lr_decay})")
        if problems:
            raise DMNetError("training settings: " + "; ".join(problems))

    @property
    def total_epochs(self) -> int:
        return self.stage1_epochs + self.stage2_epochs

    def lr_at(self, epoch: int) -> float:
        """The learning rate of a 1-based epoch: lr, times lr_decay from epoch lr_decay_epoch on."""
        return self.lr * self.lr_decay if self.lr_decay_epoch and epoch >= self.lr_decay_epoch else self.lr


class TrainCallback:
    """Hooks the trainer calls (rank 0 only); the CLI draws its progress bar with them."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Before the first epoch: device, world size, steps per epoch, first epoch (after a resume)."""

    def on_epoch_start(self, epoch: int, stage: int, steps: int) -> None:
        """An epoch of `steps` optimizer steps begins."""

    def on_step(self, epoch: int, step: int, losses: dict[str, float]) -> None:
        """One optimizer step finished with these loss values (this rank's batch)."""

    def on_epoch_end(self, record: dict[str, Any], checkpoint: Path) -> None:
        """An epoch finished: `record` holds its mean losses; `checkpoint` was written."""


@dataclass
class TrainResult:
    """What a training run did."""

    out_dir: Path
    last_checkpoint: Path
    epochs_done: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0  # epochs already done when this run started


def stage_of(epoch: int, settings: TrainSettings, two_stage: bool) -> int:
    """The training stage (1 or 2) of a 1-based epoch; without two-stage training it is always 2."""
    return 1 if two_stage and epoch <= settings.stage1_epochs else 2


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, epoch, rank): reseeds torch at each epoch start."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def train(
    model: nn.Module,
    dataset: Dataset,
    out_dir: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    data_info: dict[str, Any] | None = None,
    resume: bool = False,
    allow_new_data: bool = False,
    callback: TrainCallback | None = None,
) -> TrainResult:
    """Train `model` (a DMNet) on `dataset` for both stages, writing a checkpoint each epoch to `out_dir`.

    `data_info` (plain values: folders, pair count, crop size...) goes into every checkpoint's summary
    and must match on resume, as must the model configuration and the settings in ``_RESUME_KEYS``;
    ``stage2_epochs`` may be raised to train longer. ``data_info["fingerprint"]`` (optional: item name
    -> a stamp of its files, e.g. size and modification time) is compared item by item on resume (see
    `check_resume`); a change is refused unless `allow_new_data`, which is then recorded in the
    summary's ``data_changes``. Without `resume`, an `out_dir` that already holds ``last.pt`` is an
    error (nothing is overwritten). Raises NonFiniteLossError on a NaN/inf loss.
    """
    settings = settings or TrainSettings()
    callback = callback or TrainCallback()
    data_info = data_info or {}
    out_dir = Path(out_dir)
    if not isinstance(dataset, Sized) or len(dataset) == 0:
        raise DMNetError("the training dataset is empty")
    ctx = _Distributed.from_env(settings.device)
    try:
        return _Run(model, dataset, out_dir, settings, data_info, callback, ctx).run(resume, allow_new_data)
    finally:
        ctx.close()


@dataclass
class _Distributed:
    """World size, rank and device of this process (a torchrun launch or a single process)."""

    world: int
    rank: int
    device: torch.device
    owns_group: bool = False

    @classmethod
    def from_env(cls, device: str | None) -> _Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        wanted = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if wanted.type == "cuda" and not torch.cuda.is_available():
            raise DMNetError("device 'cuda' requested but CUDA is not available (use --device cpu)")
        if world <= 1:
            return cls(1, 0, wanted)
        rank = int(os.environ.get("RANK", "0"))
        if wanted.type == "cuda":
            wanted = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(wanted)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
        return cls(world, rank, wanted, owns)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_min(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return float(t.item())

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


class _StageLosses(nn.Module):
    """forward(stage, ir, vis_y) -> that stage's loss dict: the module DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, stage: int, ir: torch.Tensor, vis_y: torch.Tensor) -> dict[str, torch.Tensor]:
        if stage == 1:
            return self.model.stage1_losses(ir, vis_y)
        return self.model.stage2_losses(ir, vis_y)


class _Run:
    """One call of `train`: state shared by the epoch loop and the checkpoint writer."""

    def __init__(self, model, dataset, out_dir, settings, data_info, callback, ctx: _Distributed) -> None:
        self.model, self.dataset, self.out_dir = model, dataset, out_dir
        self.settings, self.data_info, self.callback, self.ctx = settings, data_info, callback, ctx
        self.two_stage = model.config.two_stage
        self.amp = settings.precision == "bf16" or (settings.precision == "auto" and ctx.device.type == "cuda")
        self.history: list[dict[str, Any]] = []
        self.data_changes: list[dict[str, Any]] = []  # data changes accepted on resume (allow_new_data)
        self.model.to(ctx.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)

    # ------------------------------------------------------------------ resume
    def resume_key(self) -> dict[str, Any]:
        return resume_key(self.model, self.settings, self.data_info)

    def restore(self, resume: bool, allow_new_data: bool) -> int:
        """Load last.pt when resuming; return the number of epochs already done."""
        last = self.out_dir / LAST
        if not last.exists():
            return 0
        if not resume:
            raise DMNetError(f"{last} exists: pass --resume (resume=True) to continue that run, or choose another output folder")
        ck = read_checkpoint(last, map_location=self.ctx.device)
        found = _verify(ck, last, self.resume_key(), allow_new_data)
        check_state_dict(self.model, ck.state_dict, last)
        history = list(ck.summary.get("history", []))
        changed = [r["epoch"] for r in history if r.get("lr", self.settings.lr) != self.settings.lr_at(r["epoch"])]
        if changed:
            raise DMNetError(
                f"{last}: cannot resume: the learning-rate step would change the rate of epochs already done "
                f"({', '.join(map(str, changed[:5]))}); put --lr-decay-epoch after epoch {int(ck.training['epoch'])}"
            )
        self.model.load_state_dict(ck.state_dict)
        self.optimizer.load_state_dict(ck.training["optimizer"])
        self.history = history
        self.data_changes = list(ck.summary.get("data_changes", []))
        if found.data_changes:
            self.data_changes.append({"after_epoch": found.epochs_done, "changes": found.data_changes})
        return found.epochs_done

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool, allow_new_data: bool = False) -> TrainResult:
        done = self.restore(resume, allow_new_data)
        s, ctx = self.settings, self.ctx
        result = TrainResult(self.out_dir, self.out_dir / LAST, done, self.history, resumed_from=done)
        if done >= s.total_epochs:
            return result
        net: nn.Module = _StageLosses(self.model)
        if ctx.world > 1:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)
        sampler = DistributedSampler(self.dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=s.seed)
        loader = DataLoader(
            self.dataset, batch_size=s.batch_size, sampler=sampler, num_workers=s.num_workers,
            pin_memory=ctx.device.type == "cuda", drop_last=False,
        )
        if ctx.main:
            self.callback.on_start({
                "device": str(ctx.device), "world_size": ctx.world, "bf16_autocast": self.amp,
                "steps_per_epoch": len(loader), "first_epoch": done + 1, "epochs": s.total_epochs,
            })
        for epoch in range(done + 1, s.total_epochs + 1):
            record = self.train_epoch(net, loader, sampler, epoch)
            self.history.append(record)
            if ctx.main:
                path = self.save(epoch, record)
                self.callback.on_epoch_end(record, path)
            ctx.barrier()
            result.epochs_done = epoch
        return result

    def train_epoch(self, net: nn.Module, loader: DataLoader, sampler: DistributedSampler, epoch: int) -> dict[str, Any]:
        s, ctx = self.settings, self.ctx
        stage = stage_of(epoch, s, self.two_stage)
        lr = s.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(epoch_seed(s.seed, epoch, ctx.rank))
        sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.model.train()
        if ctx.main:
            self.callback.on_epoch_start(epoch, stage, len(loader))
        sums: dict[str, float] = {}
        count = 0
        start = time.perf_counter()
        for step, (ir, vis_y) in enumerate(loader, 1):
            ir = ir.to(ctx.device, non_blocking=True)
            vis_y = vis_y.to(ctx.device, non_blocking=True)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=self.amp):
                losses = net(stage, ir, vis_y)
            values = {k: float(v.detach().float()) for k, v in losses.items()}
            if ctx.all_min(float(all(math.isfinite(v) for v in values.values()))) < 1:
                raise NonFiniteLossError(self.non_finite_message(epoch, stage, step, values))
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            self.optimizer.step()
            n = ir.shape[0]
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
            if ctx.main:
                self.callback.on_step(epoch, step, values)
        keys = sorted(sums)
        totals = ctx.all_sum([sums[k] for k in keys] + [float(count)])
        means = {k: totals[i] / totals[-1] for i, k in enumerate(keys)}
        return {"epoch": epoch, "stage": stage, "losses": means, "samples": int(totals[-1]), "lr": lr,
                "seconds": round(time.perf_counter() - start, 3)}

    def non_finite_message(self, epoch: int, stage: int, step: int, values: dict[str, float]) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
        done = epoch - 1
        kept = (f"the last good checkpoint, {self.out_dir / LAST} (epoch {done}), is kept"
                if done else "no epoch finished, so no checkpoint was written")
        return (f"non-finite loss at epoch {epoch} (stage {'I' * stage}), step {step}: {shown}; training stopped, "
                f"{kept}. Try a lower --lr, or check the data")

    # ------------------------------------------------------------------ checkpoints
    def summary(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        return {
            "data": summary_data(self.data_info),
            **({"data_changes": self.data_changes} if self.data_changes else {}),
            "epochs_done": epoch,
            "stage": record["stage"],
            "stage1_epochs": s.stage1_epochs if self.two_stage else 0,
            "stage2_epochs": s.stage2_epochs + (0 if self.two_stage else s.stage1_epochs),
            "final_losses": record["losses"],
            "history": self.history,
            "settings": {"batch_size": s.batch_size, "lr": s.lr, "lr_decay_epoch": s.lr_decay_epoch, "lr_decay": s.lr_decay,
                         "seed": s.seed, "optimizer": "Adam",
                         "device": str(self.ctx.device), "world_size": self.ctx.world, "bf16_autocast": self.amp},
            "train_seconds": round(sum(r["seconds"] for r in self.history), 1),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": {"fusedet": _package_version(), "torch": str(torch.__version__), "python": platform.python_version()},
            "machine": _machine(self.ctx.device),
        }

    def save(self, epoch: int, record: dict[str, Any]) -> Path:
        summary = self.summary(epoch, record)
        path = save_checkpoint(self.out_dir / f"epoch_{epoch:03d}.pt", self.model, summary)
        training = {"epoch": epoch, "stage": record["stage"], "optimizer": self.optimizer.state_dict(),
                    "resume_key": self.resume_key()}
        save_checkpoint(self.out_dir / LAST, self.model, summary, training)
        if self.settings.keep_epochs:
            for old in sorted(self.out_dir.glob("epoch_*.pt"))[: -self.settings.keep_epochs]:
                old.unlink(missing_ok=True)
        return path


@dataclass
class ResumeCheck:
    """What `check_resume` found in ``OUT/last.pt``: the epochs it holds (0: no last.pt, a fresh run),
    notes for the user, and the data changes accepted with ``allow_new_data`` ('' when none)."""

    epochs_done: int = 0
    notes: list[str] = field(default_factory=list)
    data_changes: str = ""


def resume_key(model: nn.Module, settings: TrainSettings, data_info: dict[str, Any]) -> dict[str, Any]:
    """What must match for a resumed run to continue the same training: the model configuration,
    `data_info` and the settings in ``_RESUME_KEYS`` (stored in last.pt)."""
    s = asdict(settings)
    return {"config": model.config.to_dict(), "data": data_info, **{k: s[k] for k in _RESUME_KEYS}}


def summary_data(data_info: dict[str, Any]) -> dict[str, Any]:
    """`data_info` as the checkpoint summary shows it: a fingerprint is replaced by its item count and
    SHA-256 (the full fingerprint stays in last.pt's resume key)."""
    info = {k: v for k, v in data_info.items() if k != FINGERPRINT}
    if FINGERPRINT in data_info:
        fingerprint = data_info[FINGERPRINT]
        blob = json.dumps(sorted(fingerprint.items())).encode()
        info["fingerprint_items"] = len(fingerprint)
        info["fingerprint_sha256"] = hashlib.sha256(blob).hexdigest()
    return info


def fingerprint_changes(stored: dict[str, str], current: dict[str, str], shown: int = 5) -> str:
    """How two data fingerprints (item name -> stamp) differ, e.g. ``1 pair removed (a/00001); 1 pair
    added (a/00002)``; '' when they are equal. At most `shown` names per kind are listed."""

    def names(items: list[str]) -> str:
        items = sorted(items)
        more = f" and {len(items) - shown} more" if len(items) > shown else ""
        return ", ".join(items[:shown]) + more

    kinds = (
        ("removed", [k for k in stored if k not in current]),
        ("added", [k for k in current if k not in stored]),
        ("modified", [k for k in current if k in stored and stored[k] != current[k]]),
    )
    return "; ".join(f"{len(items)} pair{'s' * (len(items) != 1)} {kind} ({names(items)})" for kind, items in kinds if items)


def check_resume(
    out_dir: str | os.PathLike,
    model: nn.Module,
    settings: TrainSettings,
    data_info: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    allow_new_data: bool = False,
) -> ResumeCheck:
    """The checks `train` makes on ``OUT/last.pt`` before its first epoch, without training: callers
    run it before slow preparation (decoding every pair). Raises DMNetError for an existing last.pt
    without `resume`, a last.pt without training state, a configuration, setting or data_info entry
    that differs, or a data fingerprint that differs (unless `allow_new_data`)."""
    last = Path(out_dir) / LAST
    if not last.exists():
        return ResumeCheck()
    if not resume:
        raise DMNetError(f"{last} exists: pass --resume (resume=True) to continue that run, or choose another output folder")
    return _verify(read_checkpoint(last), last, resume_key(model, settings, data_info or {}), allow_new_data)


def _verify(ck, last: Path, current: dict[str, Any], allow_new_data: bool) -> ResumeCheck:
    """Compare the resume key stored in checkpoint `ck` (read from `last`) with `current`."""
    if not ck.training:
        raise DMNetError(f"{last}: holds no training state (optimizer, epoch); cannot resume from it")
    stored = dict(ck.training.get("resume_key", {}))
    current = dict(current)
    stored_data, current_data = dict(stored.pop("data", {}) or {}), dict(current.pop("data", {}) or {})
    old_fp, new_fp = stored_data.pop(FINGERPRINT, None), current_data.pop(FINGERPRINT, None)
    found = ResumeCheck(epochs_done=int(ck.training["epoch"]))
    if old_fp is not None and new_fp is not None:
        found.data_changes = fingerprint_changes(old_fp, new_fp)
        for key in DATA_IDENTITY_KEYS:  # the fingerprint decides which data it is
            stored_data.pop(key, None), current_data.pop(key, None)
    elif new_fp is not None:
        found.notes.append(
            f"{last} holds no data fingerprint (written by an older version): the pairs cannot be compared with the "
            "stored run's; resuming on the folders and pair count it records"
        )
    differ = [k for k in set(stored) | set(current) if stored.get(k) != current.get(k)]
    data_keys = sorted(k for k in set(stored_data) | set(current_data) if stored_data.get(k) != current_data.get(k))
    differ = sorted(differ + ([f"data ({', '.join(data_keys)})"] if data_keys else []))
    if differ:
        raise DMNetError(
            f"{last}: cannot resume: this run differs from the stored one in {', '.join(differ)} "
            "(resume with the same data, preset, overrides, seed, batch, lr and stage-1 epochs)"
        )
    if found.data_changes:
        if not allow_new_data:
            raise DMNetError(
                f"{last}: cannot resume: the data differ from the stored run's: {found.data_changes}; resume on the same "
                "pairs, or pass --allow-new-data (allow_new_data=True) to continue on these"
            )
        found.notes.append(f"continuing on new data (allowed): {found.data_changes}")
    return found


def _package_version() -> str:
    try:
        return metadata.version("fusedet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _machine(device: torch.device) -> str:
    cpu = f"{platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; {cpu}"
    return cpu
