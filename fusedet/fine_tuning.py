"""Fine-tune the detector on a source's images (Table VII's protocol) and evaluate it: the library
call under ``fusedet finetune``.

1. Check: the train split and the evaluated split have pairs, every source can serve them, the start
   weights exist (before any export or epoch).
2. Export the train and val splits as an ultralytics YOLO dataset per source (fusedet.yolo_export).
3. Train (fusedet.yolo_training): ``per-source`` trains one detector per source, ``shared`` one on
   all sources mixed (each image once per source). A killed training resumes from its last.pt when
   the same call runs again; a finished one is reused.
4. Evaluate on the run's split exactly as ``fusedet evaluate`` does (fusedet.evaluation): each source
   with its own detector under ``per-source``, every source with the shared one under ``shared``;
   the training summary goes into run.json.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fusedet import distributed, runtime
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.value_range import RangeLog
from fusedet.detection_report import DetectionReport
from fusedet.detector import Detector, resolve_weights
from fusedet.devices import resolve_device
from fusedet.errors import InputError
from fusedet.evaluation import Evaluation
from fusedet.events import Events, as_events
from fusedet.fused_cache import default_cache_dir
from fusedet.settings import DetectorSettings, FinetuneSettings, ReportSettings, RunSettings
from fusedet.sources import Source
from fusedet.yolo_export import TRAIN_SPLITS, export_sources, write_data_yaml
from fusedet.yolo_training import TrainedDetector, train_detector


@dataclass(frozen=True)
class FinetuneResult:
    """What `finetune` produced: the evaluation report, the trained detectors by model name
    (``shared``, or each source's name), and the training summary recorded in run.json."""

    report: DetectionReport
    trained: dict[str, TrainedDetector]
    training: dict


def train_protocol(
    dataset: DetectionDataset,
    sources: Sequence[Source],
    export: tuple[Path, dict[str, dict[str, Path]]],
    out: Path,
    train: FinetuneSettings,
    run: RunSettings,
) -> dict[str, TrainedDetector]:
    """Train per ``train.protocol`` on exported sources; returns the detectors by model name
    ('shared', or each source's name under 'per-source'), trained in OUT/train/NAME on the data yaml
    OUT/train/data-NAME.yaml (in the run's folder: the export under the cache is shared by every run
    on the machine, the choice of sources is this run's)."""
    root, dirs = export
    has_val = bool(dataset.split("val"))
    groups = {"shared": list(sources)} if train.protocol == "shared" else {s.name: [s] for s in sources}
    device = str(resolve_device(run.device))
    trained = {}
    for name, members in groups.items():
        data_yaml = write_data_yaml(out / "train" / f"data-{name}.yaml", [dirs[s.name] for s in members], dataset.classes, has_val)
        best, seconds, resumed = train_detector(data_yaml, out / "train" / name, train, device, run.workers)
        trained[name] = TrainedDetector(name, tuple(s.name for s in members), best, data_yaml, seconds, resumed)
    return trained


def detectors_for(trained: dict[str, TrainedDetector], sources: Sequence[Source], protocol: str, settings: DetectorSettings,
                  device: str) -> dict[str, Detector]:
    """The evaluation detector of each source: its own (per-source) or the shared one."""
    if protocol == "shared":
        shared = Detector.from_settings(dataclasses.replace(settings, weights=str(trained["shared"].weights)), device)
        return {s.name: shared for s in sources}
    return {s.name: Detector.from_settings(dataclasses.replace(settings, weights=str(trained[s.name].weights)), device) for s in sources}


@runtime.in_session
def finetune(
    dataset: DetectionDataset,
    sources: Sequence[Source],
    out: str | os.PathLike,
    *,
    train: FinetuneSettings | None = None,
    detector: DetectorSettings | None = None,
    run: RunSettings | None = None,
    report: ReportSettings | None = None,
    events: Events | None = None,
) -> FinetuneResult:
    """Fine-tune detectors on `sources` of `dataset`'s train split (validated on val), then evaluate
    them on ``run.split`` (see the module docstring); everything lands in `out`.

    `sources`: parsed sources (fusedet.sources.parse_sources, with the same cache folder as
    ``run.cache_dir``). `detector`: the evaluation settings (its weights are replaced by the trained
    ones; image size and batch default to the training's). Raises InputError for bad input before any
    long work (and under torchrun: fine-tuning is one process), TrainingError when ultralytics'
    training fails."""
    if distributed.from_env()[0] > 1:
        raise InputError("fine-tuning runs as one process, not under torchrun (every process would train the same detectors "
                         "into the same folder); run fusedet finetune directly")
    train = train or FinetuneSettings()
    run = run or RunSettings()
    events = as_events(events)
    out = Path(out)
    run = dataclasses.replace(run, cache_dir=default_cache_dir(run))
    detector = detector or DetectorSettings(imgsz=train.imgsz, batch=train.batch)
    if not dataset.split("train"):
        raise InputError(f"dataset {dataset.name!r} has no train pairs to fine-tune on (split: {dataset.split_source})")
    resolve_weights(train.start_weights)
    for source in sources:  # every source serves the train/val pairs and the evaluated split
        source.check([r for r in dataset.records if r.split in TRAIN_SPLITS] + dataset.split(run.split))
    if not dataset.split(run.split):
        raise InputError(f"split {run.split!r} of dataset {dataset.name!r} has no pairs to evaluate the fine-tuned detectors on")
    if not dataset.split("val"):
        events.note("no val pairs: best.pt is picked on the train pairs")

    ranges = RangeLog()
    export = export_sources(dataset, sources, run, train.batch, events, ranges)
    for line in ranges.warnings():
        events.note(f"warning: {line}")
    trained = train_protocol(dataset, sources, export, out, train, run)
    training = {
        **train.to_dict(),
        "start_weights": train.start_weights,
        "train_options": dict(train.options),
        "validated_on": "val" if dataset.split("val") else "train (no val pairs)",
        "value_ranges": {"ir": run.ir_range, "vis": run.vis_range, **ranges.to_dict()},
        "models": {name: t.info() for name, t in trained.items()},
    }
    device = str(resolve_device(run.device))
    evaluation = Evaluation(dataset, sources, detectors_for(trained, sources, train.protocol, detector, device), out,
                            run=run, report=report, events=events)
    evaluation.provenance["training"] = training
    return FinetuneResult(evaluation.run(), trained, training)
