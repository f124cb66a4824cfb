"""Settings objects: built once at the top (the CLI, FusionDetector, a Python caller), passed whole,
recorded in run.json. Frozen and validated on construction (a bad value is an InputError naming the
field); change one with ``dataclasses.replace``.

- `DetectorSettings`: which detector and how it runs (weights, image size, thresholds, batch, fp16).
- `RunSettings`: how a run is carried out (device, split, fusion batch, reader threads, cache, seed).
- `ReportSettings`: how the detection report is made (main metric, bootstrap intervals, baseline,
  cell style, groups, the paper's published rows).
- `FinetuneSettings`: how detectors are fine-tuned (protocol, start weights, epochs, size, batch, seed,
  extra ultralytics arguments).
- `FuserModelSettings`: which DMNet ``train-fuser`` trains and on which crops (preset, ablation,
  configuration overrides, crop size, crops per pair); how it is optimised is dmnet's own
  ``dmnet.train.TrainSettings``.
"""

from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fusedet.errors import InputError

DEFAULT_DETECTOR_WEIGHTS = "yolov5xu.pt"
SPLITS = ("train", "val", "test", "all")
PROTOCOLS = ("per-source", "shared")


def _check(problems: list[str], owner: str) -> None:
    if problems:
        raise InputError(f"{owner}: " + "; ".join(problems))


class _Settings:
    """Shared behaviour: plain-value dict for run.json."""

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (paths as strings)."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, os.PathLike) else (dict(value) if isinstance(value, Mapping) else value)
        return out


@dataclass(frozen=True)
class DetectorSettings(_Settings):
    """The detector and its evaluation settings (those of ultralytics' own validation, with NMS IoU 0.6).

    `weights`: ``yolov5xu.pt`` (default; downloaded once by ultralytics when online), a checkpoint path,
    a model yaml, or ``demo``. `imgsz`: input size in pixels (None: the size the weights were trained
    at, else 640). `conf`: confidence threshold in [0, 1]. `iou`: NMS IoU threshold in [0, 1].
    `max_det`: most boxes kept per image. `batch`: images per detection pass. `half`: fp16 inference
    (None: on CUDA only).
    """

    weights: str = DEFAULT_DETECTOR_WEIGHTS
    imgsz: int | None = None
    conf: float = 0.001
    iou: float = 0.6
    max_det: int = 300
    batch: int = 8
    half: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", str(self.weights))
        problems = []
        if self.imgsz is not None and int(self.imgsz) < 32:
            problems.append(f"imgsz must be >= 32 (got {self.imgsz})")
        if not 0.0 <= float(self.conf) <= 1.0:
            problems.append(f"conf must be in [0, 1] (got {self.conf})")
        if not 0.0 <= float(self.iou) <= 1.0:
            problems.append(f"iou must be in [0, 1] (got {self.iou})")
        if int(self.max_det) < 1:
            problems.append(f"max_det must be >= 1 (got {self.max_det})")
        if int(self.batch) < 1:
            problems.append(f"batch must be >= 1 (got {self.batch})")
        _check(problems, "detector settings")


@dataclass(frozen=True)
class RunSettings(_Settings):
    """How a run is carried out.

    `device`: None/"auto", "cpu", "cuda", "cuda:N" (resolved by fusedet.devices.resolve_device).
    `split`: the split evaluated (train, val, test or all). `fuse_batch`: pairs per fusion pass (a
    DMNet pass on a 1024x768 pair needs GBs). `workers`: image-reading threads (and data-loading workers
    when training). `cache_dir`: fused images and exports (None: the machine's fusedet cache,
    ``$FUSEDET_CACHE``, default ``~/.cache/fusedet``; fusedet.fused_cache.default_cache_dir).
    `seed`: the seeded split of datasets without split files, and the demo generator. `ir_range`,
    `vis_range`: how IR and visible images become [0, 1] (``auto``, ``full``, ``minmax`` or
    ``percentile[:LO,HI]``; fusedet.datasets.value_range).
    """

    device: str | None = None
    split: str = "test"
    fuse_batch: int = 1
    workers: int = 2
    cache_dir: Path | None = None
    seed: int = 0
    ir_range: str = "auto"
    vis_range: str = "auto"

    def __post_init__(self) -> None:
        from fusedet.datasets.value_range import parse_value_range

        object.__setattr__(self, "ir_range", str(parse_value_range(self.ir_range, option="ir_range")))
        object.__setattr__(self, "vis_range", str(parse_value_range(self.vis_range, option="vis_range")))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        if self.device is not None:
            object.__setattr__(self, "device", str(self.device))
        problems = []
        if self.split not in SPLITS:
            problems.append(f"unknown split {self.split!r}; use one of {', '.join(SPLITS)}")
        if int(self.fuse_batch) < 1:
            problems.append(f"fuse_batch must be >= 1 (got {self.fuse_batch})")
        if int(self.workers) < 0:
            problems.append(f"workers must be >= 0 (got {self.workers})")
        _check(problems, "run settings")


MAIN_METRICS = ("ap50", "ap50_95")
CI_STYLES = ("pm", "interval")
BASELINE_DEFAULT = "best-single"


@dataclass(frozen=True)
class ReportSettings(_Settings):
    """How the detection report is made (fusedet.detection_report).

    `metric`: the main table's metric, ``ap50`` (AP@0.5, the paper's Table VII) or ``ap50_95``;
    `bootstrap`: paired resamples of the test images (0: no intervals); `bootstrap_seed`: their own
    seed; `baseline`: the row differences are taken to: ``ir``, ``vi``, a source name, or
    ``best-single`` (the better of ir and vi on the main metric's mAP); `ci_style`: cells
    ``45.0 ± 1.8`` (``pm``, half the interval's width) or ``45.0 [43.2, 46.9]`` (``interval``);
    `level`: the intervals' coverage; `group_by`: per-group tables (``day-night``, ``scene`` or a
    ``stem,group`` CSV; fusedet.eval.groups) or None; `paper`: the paper's published Table VII rows
    (M3FD classes), shown and labelled "(paper)", never ranked."""

    metric: str = "ap50"
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    baseline: str = BASELINE_DEFAULT
    ci_style: str = "pm"
    level: float = 0.95
    group_by: str | None = None
    paper: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.metric not in MAIN_METRICS:
            problems.append(f"metric {self.metric!r}: use ap50 or ap50_95")
        if not isinstance(self.bootstrap, numbers.Integral) or isinstance(self.bootstrap, bool) or self.bootstrap < 0:
            problems.append(f"bootstrap {self.bootstrap!r}: a number of resamples >= 0 (0: no intervals)")
        if self.ci_style not in CI_STYLES:
            problems.append(f"ci style {self.ci_style!r}: use pm or interval")
        if not 0 < self.level < 1:
            problems.append(f"interval level {self.level}: must be between 0 and 1")
        if not str(self.baseline).strip():
            problems.append("baseline: give ir, vi, a source name or best-single")
        _check(problems, "report settings")


@dataclass(frozen=True)
class FinetuneSettings(_Settings):
    """How detectors are fine-tuned with ultralytics (see fusedet.fine_tuning).

    `protocol`: ``per-source`` (one detector per source, Table VII's protocol) or ``shared`` (one
    detector on every source mixed). `start_weights`: a checkpoint, ``demo``, or a model yaml such as
    ``yolov8n.yaml`` to train from scratch. `epochs`, `imgsz` (pixels), `batch` (images per step),
    `seed`: as ultralytics' train(). `options`: more ultralytics train() arguments (checked against
    ultralytics' own argument list before any work)."""

    protocol: str = "per-source"
    start_weights: str = DEFAULT_DETECTOR_WEIGHTS
    epochs: int = 30
    imgsz: int = 640
    batch: int = 16
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_weights", str(self.start_weights))
        object.__setattr__(self, "options", dict(self.options))
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)} (got {self.protocol!r})")
        if int(self.epochs) < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if int(self.imgsz) < 32:
            problems.append(f"imgsz must be >= 32 (got {self.imgsz})")
        if int(self.batch) < 1:
            problems.append(f"batch must be >= 1 (got {self.batch})")
        _check(problems, "fine-tuning settings")


@dataclass(frozen=True)
class FuserModelSettings(_Settings):
    """Which DMNet to train and on which crops. `preset`: ``lite`` or ``paper`` (dmnet.PRESETS);
    `ablation`: a Table V row (``AE1`` ... ``AE14``) or None; `overrides`: DMNetConfig fields
    (``gamma2``, ``grad_operator``, ...); `crop`: side of the random square crops in pixels (paper
    IV-B: 128); `crops_per_pair`: crops of every pair per epoch; `ir_range`, `vis_range`: how the
    pairs' values become [0, 1] (fusedet.datasets.value_range)."""

    preset: str = "lite"
    ablation: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    crop: int = 128
    crops_per_pair: int = 1
    ir_range: str = "auto"
    vis_range: str = "auto"

    def __post_init__(self) -> None:
        from fusedet.datasets.value_range import parse_value_range

        object.__setattr__(self, "overrides", dict(self.overrides))
        object.__setattr__(self, "ir_range", str(parse_value_range(self.ir_range, option="ir_range")))
        object.__setattr__(self, "vis_range", str(parse_value_range(self.vis_range, option="vis_range")))
        problems = []
        if int(self.crop) < 8:
            problems.append(f"crop must be >= 8 (got {self.crop})")
        if int(self.crops_per_pair) < 1:
            problems.append(f"crops_per_pair must be >= 1 (got {self.crops_per_pair})")
        _check(problems, "DMNet training settings")


def closest(name: str, choices) -> str:
    """' (did you mean X?)' for the choice closest to `name`, or '' when none is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def split_overrides(overrides: Mapping[str, Any], *kinds: type) -> list[dict[str, Any]]:
    """Share keyword overrides out between settings classes by field name (one dict per class, in
    order). An unknown key is an InputError naming the closest field."""
    names = [{f.name for f in fields(kind)} for kind in kinds]
    out: list[dict[str, Any]] = [{} for _ in kinds]
    for key, value in overrides.items():
        for i, known in enumerate(names):
            if key in known:
                out[i][key] = value
                break
        else:
            every = sorted(set().union(*names))
            raise InputError(f"unknown setting {key!r}{closest(key, every)}; settings: {', '.join(every)}")
    return out
