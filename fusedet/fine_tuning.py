"""Fine-tune the detector on a source's images (Table VII's protocol) and evaluate it: the library
call under ``fusedet finetune``.

1. Check, before any export, fusion or epoch (`check_finetune`): the output and cache folders, the
   train split and the evaluated split have pairs (an empty val split falls back to validating on
   the train pairs, with a note), every source can serve them, the start weights load as an
   ultralytics detection model, ``--train-option`` keys and values pass ultralytics' own
   configuration check, the report's groups and baseline fit, and every training folder is either
   new, or was made for the same request (settings and data fingerprint: fusedet.yolo_training). A
   class without a box in the train split gets a warning naming it.
2. Export the train and val splits as an ultralytics YOLO dataset per source (fusedet.yolo_export).
3. Train (fusedet.yolo_training): ``per-source`` trains one detector per source, ``shared`` one on
   all sources mixed (each image once per source). A killed training resumes from its last.pt when
   the same call runs again; a finished one is reused.
4. Evaluate on the run's split exactly as ``fusedet evaluate`` does (fusedet.evaluation): each source
   with its own detector under ``per-source``, every source with the shared one under ``shared``;
   the training summary goes into run.json.

With ``train.seeds`` N > 1, steps 3 and 4 run once per training seed (``train.training_seeds()``),
each seed in its own folder ``OUT/seed_K`` (training in ``OUT/seed_K/train/NAME``, that seed's full
report beside it; each resumes on its own); then ``OUT/table.*`` gives every cell's mean ± sample
standard deviation across the seeds and ``OUT/run.json`` records every seed (fusedet.seed_report).
The export of step 2 is shared by all seeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusedet import distributed, runtime
from fusedet.datasets.atomic import check_output_folder, write_text_atomic
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.value_range import RangeLog
from fusedet.detection_report import DetectionReport
from fusedet.detector import Detector
from fusedet.devices import resolve_device
from fusedet.errors import InputError
from fusedet.evaluation import Evaluation, check_report_inputs
from fusedet.events import Events, PrefixedEvents, as_events
from fusedet.fused_cache import default_cache_dir
from fusedet.seed_report import SeedSummary, merge_run_info, seed_folder, summarize_seeds
from fusedet.settings import DetectorSettings, FinetuneSettings, ReportSettings, RunSettings
from fusedet.sources import Source
from fusedet.yolo_export import TRAIN_SPLITS, data_fingerprint, export_sources, write_data_yaml
from fusedet.yolo_training import (
    TrainedDetector,
    TrainingPlan,
    check_start_weights,
    check_train_options,
    plan_training,
    train_detector,
    training_request,
)


@dataclass(frozen=True)
class FinetuneResult:
    """What `finetune` produced: the evaluation report, the trained detectors by model name
    (``shared``, or each source's name), and the training summary recorded in run.json.

    With several seeds: `report` is the first seed's, `reports` every seed's (seed -> report),
    `seeds` their mean ± std summary (fusedet.seed_report.SeedSummary), and `trained` is keyed
    ``seed_K/NAME``."""

    report: DetectionReport
    trained: dict[str, TrainedDetector]
    training: dict
    reports: dict[int, DetectionReport] = field(default_factory=dict)
    seeds: SeedSummary | None = None


def check_finetune(
    dataset: DetectionDataset,
    sources: Sequence[Source],
    out: Path,
    train: FinetuneSettings,
    run: RunSettings,
    report: ReportSettings | None,
    events: Events,
) -> dict[int, list[TrainingPlan]]:
    """Everything `finetune` needs, checked before any long work (module docstring, step 1); returns
    the plan of every training folder, by training seed (nothing is written). Raises InputError naming
    the problem."""
    check_output_folder(out, "--out")
    check_output_folder(run.cache_dir, "--cache-dir")
    if not dataset.split("train"):
        raise InputError(f"dataset {dataset.name!r} has no train pairs to fine-tune on (split: {dataset.describe_split('train')})")
    if not dataset.split(run.split):
        counts = {s: len(dataset.split(s)) for s in ("train", "val", "test")}
        raise InputError(
            f"split {run.split!r} of dataset {dataset.name!r} has no pairs to evaluate the fine-tuned detectors on "
            f"(pairs per split: {counts}); choose another --split"
        )
    check_start_weights(train.start_weights)
    for line in check_train_options(train.options):
        events.note(f"warning: {line}")
    for source in sources:  # every source serves the train/val pairs and the evaluated split
        source.check([r for r in dataset.records if r.split in TRAIN_SPLITS] + dataset.split(run.split))
    check_report_inputs(report or ReportSettings(), dataset.split(run.split), [s.name for s in sources], dataset.root)
    if not dataset.split("val"):
        events.note("note: no val pairs: best.pt is picked on the train pairs")
    if run.split in ("all", "train"):
        events.note(f"warning: split {run.split!r} holds the {len(dataset.split('train'))} training pairs: its AP is not measured on held-out pairs")
    absent = [c for c, n in dataset.instance_counts("train").items() if n == 0]
    if absent:
        events.note(f"warning: no {', '.join(absent)} box in the train split: the fine-tuned detectors cannot learn "
                    f"{'that class' if len(absent) == 1 else 'those classes'} (AP near 0)")
    fingerprint = data_fingerprint(dataset)
    plans: dict[int, list[TrainingPlan]] = {}
    several = len(train.training_seeds()) > 1
    for seed in train.training_seeds():  # several seeds: each in OUT/seed_K
        root = out / seed_folder(seed) if several else out
        plans[seed] = []
        for name, members in model_groups(sources, train.protocol).items():
            data = {"sources": [s.identity() for s in members], "classes": list(dataset.classes),
                    "value_ranges": [run.ir_range, run.vis_range], "pairs": fingerprint}
            request = training_request(dataclasses.replace(train, seed=seed), data)
            plan = plan_training(name, tuple(s.name for s in members), root / "train" / name, request)
            if plan.note:
                events.note(f"note: {plan.note}")
            plans[seed].append(plan)
    return plans


def model_groups(sources: Sequence[Source], protocol: str) -> dict[str, list[Source]]:
    """The sources each model trains on: ``shared`` one model on all, ``per-source`` one per source."""
    return {"shared": list(sources)} if protocol == "shared" else {s.name: [s] for s in sources}


def train_protocol(
    plans: Sequence[TrainingPlan],
    dataset: DetectionDataset,
    export: tuple[Path, dict[str, dict[str, Path]]],
    train: FinetuneSettings,
    run: RunSettings,
    events: Events | None = None,
) -> dict[str, TrainedDetector]:
    """Carry out the training `plans` (`check_finetune`) on exported sources; returns the detectors by
    model name ('shared', or each source's name under 'per-source'), each trained in its plan's folder
    OUT/train/NAME on the data yaml OUT/train/data-NAME.yaml (in the run's folder: the export under the
    cache is shared by every run on the machine, the choice of sources is this run's)."""
    _, dirs = export
    has_val = bool(dataset.split("val"))
    device = str(resolve_device(run.device))
    trained = {}
    for plan in plans:
        data_yaml = write_data_yaml(plan.run_dir.parent / f"data-{plan.name}.yaml", [dirs[s] for s in plan.sources], dataset.classes, has_val)
        trained[plan.name] = train_detector(plan, data_yaml, train, device, run.workers, events)
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
    plans = check_finetune(dataset, sources, out, train, run, report, events)
    ranges = RangeLog()
    export = export_sources(dataset, sources, run, train.batch, events, ranges)
    for line in ranges.warnings():
        events.note(f"warning: {line}")
    device = str(resolve_device(run.device))
    seeds = train.training_seeds()
    several = len(seeds) > 1
    reports, trained, trainings = {}, {}, {}
    for seed in seeds:  # each seed trains and evaluates in its own folder; one seed: OUT itself, as before
        seed_train = dataclasses.replace(train, seed=seed)
        seed_out = out / seed_folder(seed) if several else out
        seed_events = PrefixedEvents(events, f"seed {seed}: ") if several else events  # stage names stay unique
        if several:
            events.note(f"seed {seed} ({seeds.index(seed) + 1} of {len(seeds)}): training and report in {seed_out}")
        models = train_protocol(plans[seed], dataset, export, seed_train, run, seed_events)
        training = {
            **seed_train.to_dict(),
            "start_weights": train.start_weights,
            "train_options": dict(train.options),  # as given; each model's ultralytics_args hold what ran
            "validated_on": "val" if dataset.split("val") else "train (no val pairs)",
            "value_ranges": {"ir": run.ir_range, "vis": run.vis_range, **ranges.to_dict()},
            "models": {name: t.info() for name, t in models.items()},
        }
        evaluation = Evaluation(dataset, sources, detectors_for(models, sources, train.protocol, detector, device), seed_out,
                                run=run, report=report, events=seed_events)
        evaluation.provenance["training"] = training
        reports[seed], trainings[seed] = evaluation.run(), training
        trained.update({f"{seed_folder(seed)}/{name}" if several else name: t for name, t in models.items()})
    if not several:
        return FinetuneResult(reports[seeds[0]], trained, trainings[seeds[0]])
    folders = {k: seed_folder(k) for k in seeds}
    summary = summarize_seeds(reports, folders)
    summary.write(out)
    info = merge_run_info({k: json.loads((out / folders[k] / "run.json").read_text()) for k in seeds}, folders, summary)
    write_text_atomic(out / "run.json", json.dumps(info, indent=2) + "\n")
    return FinetuneResult(reports[seeds[0]], trained, info["training"], reports, summary)
