"""The evaluation engine behind ``FusionDetector.evaluate``, ``fusedet evaluate`` and ``fusedet finetune``.

One `Evaluation` object owns a run: the dataset split, the sources, the detector(s), the settings and
the output folder. Its stages, in order:

1. ``check()``: the split is not empty, every source can serve every pair (a folder source has every
   stem, a fuser's weights load), every detector covers some dataset class, the grouping (``--group-by``)
   reads. Before any long work.
2. ``ground_truth()``: the split's boxes as COCO json (``ground_truth.json``; ignore regions as crowd).
3. ``detections(source)``: per source, its images (fused and cached as needed) through the detector,
   as COCO results (``detections/SOURCE.json``); a source finished by an earlier run with the same
   inputs, detector and settings is reused (the resume key in ``.resume/SOURCE.json``).
4. ``report(...)``: the AP engine (fusedet.detection_report: matching once per image, equal to
   pycocotools) gives per-class AP@0.5 and the COCO AP family of every source, with paired bootstrap
   intervals, differences to the baseline row and per-group tables as ``ReportSettings`` asks.
5. ``write_report(report)``: the tables, plots and ``run.json`` (settings, versions, dataset,
   detectors, sources with their provenance, value ranges, timings).

``run()`` does them all. Progress goes to a fusedet.events.Events object; timings and provenance are
kept on the engine (``timings``, ``provenance``), not passed around.

Under ``torchrun`` (fusedet.distributed) every process runs the same engine on the same split:
``check()`` makes sure they agree on the pairs (so on the image ids) and classes; ``detections(source)``
works on this process's share of the pairs (whole detector batches, so every image is detected in the
same batch as in a single process), fusing into the shared cache, and writes the share's results with
its own resume key (``.shards/SOURCE/RANK-of-SIZE.json``); after a barrier rank 0 joins the shares in
rank order into ``detections/SOURCE.json``: the same list a single process writes. Only rank 0
reports progress, computes the report and writes the output files; every rank returns the report.
An interrupted sharded run resumes: merged sources are reused whatever the number of processes,
finished shares when it is the same, fused images always.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fusedet import distributed, runtime
from fusedet.datasets.atomic import check_output_folder, write_text_atomic
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.value_range import RangeLog
from fusedet.detection_report import REPORT_FILES, DetectionReport, ReportContext, build_report
from fusedet.errors import InputError
from fusedet.eval.detection_ap import coco_detections, coco_ground_truth
from fusedet.eval.groups import load_groups
from fusedet.events import Events, NullEvents, as_events
from fusedet.paper_results import PAPER_SOURCE, paper_rows
from fusedet.settings import BASELINE_DEFAULT, ReportSettings, RunSettings
from fusedet.sources import FusedSource, IrSource, Source


class DetectorLike(Protocol):
    """What the engine needs of a detector (fusedet.detector.Detector, or a test double)."""

    max_det: int
    batch: int

    def settings(self) -> dict: ...

    def class_mapping(self, classes: Sequence[str]): ...

    def detect(self, images: Sequence[np.ndarray], classes: Sequence[str] | None = None) -> list: ...


def write_json(path: Path, data: Any, indent: int | None = None) -> Path:
    """`data` as JSON in `path`, atomically (compact unless `indent`)."""
    return write_text_atomic(path, json.dumps(data, indent=indent, separators=None if indent else (",", ":")) + ("\n" if indent else ""))


def check_report_inputs(report: ReportSettings, records: Sequence, sources: Sequence[str], dataset_root=None):
    """What the report needs besides detections, checked before them: the baseline is a row (a source
    name) or best-single, and the groups (``report.group_by``) fit the split's `records`. Returns the
    grouping (eval.groups.load_groups) or None; InputError otherwise."""
    if report.baseline != BASELINE_DEFAULT and report.baseline not in sources:
        raise InputError(f"baseline {report.baseline!r} is not a row of this report (rows: {', '.join(sources)}; or {BASELINE_DEFAULT})")
    if not report.group_by:
        return None
    return load_groups(report.group_by, [r.stem for r in records], dataset_root=dataset_root)


class Evaluation:
    """One evaluation run (see the module docstring).

    `detector` is one detector for every source, or a mapping source name -> detector (per-source
    fine-tuning). `run` gives the split, device, reader threads, fusion batch and cache; `report` what
    the report adds. Extra provenance (a training summary) can be added to ``provenance`` before
    ``run()``; it lands in run.json. Under torchrun only rank 0 passes progress on to `events`."""

    def __init__(
        self,
        dataset: DetectionDataset,
        sources: Sequence[Source],
        detector: DetectorLike | Mapping[str, DetectorLike],
        out: str | os.PathLike,
        *,
        run: RunSettings | None = None,
        report: ReportSettings | None = None,
        events: Events | None = None,
    ) -> None:
        self.dataset, self.sources, self.out = dataset, list(sources), Path(out)
        self.settings = run or RunSettings()
        self.report_settings = report or ReportSettings()
        self.events = as_events(events) if distributed.is_main_process() else NullEvents()
        self.detectors = {s.name: (detector[s.name] if isinstance(detector, Mapping) else detector) for s in self.sources}
        self.records = dataset.split(self.settings.split)
        self.classes = list(dataset.classes)
        self.timings: dict[str, float] = {}
        self.provenance: dict[str, Any] = {}
        self.ranges = RangeLog()  # how every IR and visible image was brought to [0, 1]
        self.resumed: list[str] = []
        self.rank_timings: list[dict[str, float]] = []  # every process's timings (a sharded run)
        self._checked = False

    @property
    def world(self) -> distributed.World:
        """The processes sharing this run (fusedet.distributed.current; one outside torchrun)."""
        return distributed.current()

    # --- stages --------------------------------------------------------------------------------

    def check(self) -> None:
        """Everything the run needs is there and consistent (see the module docstring); InputError if not."""
        if not self.records:
            counts = {s: len(self.dataset.split(s)) for s in ("train", "val", "test")}
            raise InputError(f"split {self.settings.split!r} of dataset {self.dataset.name!r} has no pairs (pairs per split: {counts})")
        check_output_folder(self.out, "--out")
        check_output_folder(self.settings.cache_dir, "--cache-dir")
        pairs = hashlib.sha256(json.dumps([[r.stem for r in self.records], self.classes]).encode()).hexdigest()
        with runtime.session():
            self.world.agree(pairs, f"the pairs of split {self.settings.split!r} and the classes")
        for source in self.sources:
            source.check(self.records)
        self.grouping = check_report_inputs(self.report_settings, self.records, [s.name for s in self.sources], self.dataset.root)
        self.mappings = {name: det.class_mapping(self.classes) for name, det in self.detectors.items()}
        self.domain_warnings = domain_warnings(self.dataset, self.sources, self.detectors, self.records)
        self._checked = True

    def ground_truth(self) -> dict:
        """The split's boxes as a COCO ground-truth dict, written to ground_truth.json."""
        start = time.perf_counter()
        gt = coco_ground_truth(self.records, self.classes)
        if distributed.is_main_process():
            write_json(self.out / "ground_truth.json", gt)
        self.timings["ground truth"] = time.perf_counter() - start
        return gt

    def detections(self, source: Source) -> list[dict]:
        """COCO results of `source` on the split (reused from an earlier run when its resume key
        matches). In a sharded run (inside a fusedet.runtime session, as ``run()`` calls it): rank 0
        returns every share's results joined, the other ranks their own share's."""
        detector = self.detectors[source.name]
        key = self._resume_key(source, detector)
        stage = f"{source.name}: {'fuse + detect' if isinstance(source, FusedSource) else 'detect'}"
        world = self.world
        records = world.shard(self.records, block=detector.batch)
        self.events.start(stage, total=len(records))
        found = self._load_finished(source.name, key) if world.main else None
        if world.broadcast(found is not None):
            self.resumed.append(source.name)
            self.events.advance(stage, len(records))
            self.events.finish(stage, "reused from an earlier run")
            return found or []
        if not world.sharded:
            dets = self._detect(source, detector, records, stage)
            self._write_finished(source.name, key, dets)
            self.events.finish(stage)
            return dets
        share = self._shard_path(source.name, world.rank, world.size)
        share_key = _share_key(key, records)
        dets = _load_share(share, share_key)
        if dets is None:
            dets = self._detect(source, detector, records, stage)
            write_json(share, {"key": share_key, "detections": dets})
        else:
            self.events.advance(stage, len(records))
        world.barrier()
        if world.main:
            dets = []
            for rank in range(world.size):
                part = _load_share(self._shard_path(source.name, rank, world.size),
                                   _share_key(key, world.shard(self.records, detector.batch, rank)))
                if part is None:
                    raise RuntimeError(f"rank {rank} finished {source.name!r} but its share of the detections is missing")
                dets.extend(part)
            self._write_finished(source.name, key, dets)
            shutil.rmtree(self.out / ".shards" / source.name, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.out / ".shards").rmdir()  # when no other source's shares are left
        self.events.finish(stage)
        return dets

    def _detect(self, source: Source, detector: DetectorLike, records: Sequence, stage: str) -> list[dict]:
        """The COCO results of `records` (image ids: positions in the whole split, from 1)."""
        image_id = {r.stem: i for i, r in enumerate(self.records, start=1)}
        dets: list[dict] = []
        detect_seconds = 0.0
        stream = source.images(records, self.settings, detector.batch, self.ranges)
        for chunk, images in stream:
            start = time.perf_counter()
            results = detector.detect(images, self.classes)
            detect_seconds += time.perf_counter() - start
            dets.extend(coco_detections(((image_id[r.stem], d) for r, d in zip(chunk, results)), self.classes))
            self.events.advance(stage, len(chunk), chunk[-1].stem)
        for name, seconds in {**stream.seconds, "detect": detect_seconds}.items():
            if seconds:
                self.timings[f"{source.name}: {name}"] = seconds
        return dets

    def report(self, ground_truth: dict, detections: Mapping[str, list[dict]]) -> DetectionReport:
        """Per-class AP of every source with intervals, differences and groups (fusedet.detection_report);
        classes a source's detector does not cover are None."""
        start = time.perf_counter()
        reference = paper_rows(self.classes) if self.report_settings.paper else {}
        reasons = {c: why for m in self.mappings.values() for c, why in m.reasons.items()}
        context = ReportContext(
            classes=self.classes,
            not_covered={name: list(m.not_covered) for name, m in self.mappings.items()},
            max_det={name: d.max_det for name, d in self.detectors.items()},
            subject=f"{self.dataset.name} {self.settings.split} ({len(self.records)} pairs)",
            paper_rows=reference,
            paper_source=PAPER_SOURCE if reference else "",
            not_covered_reasons=reasons,
        )
        report = build_report(ground_truth, detections, context=context, options=self.report_settings, groups=self.grouping,
                              events=self.events)
        self.timings["ap"] = time.perf_counter() - start
        return report

    def write_report(self, report: DetectionReport) -> None:
        """The tables, plots and run.json; report files of an earlier run in the same folder that this
        run does not write (another source's detections, group tables, ...) are removed, with a note."""
        start = time.perf_counter()
        written = {*report.write(self.out), *(self.out / "detections" / f"{s.name}.json" for s in self.sources)}
        self.timings["write tables"] = time.perf_counter() - start
        write_json(self.out / "run.json", self.run_info(report), indent=2)
        patterns = (*REPORT_FILES, "detections/*.json")
        stale = sorted(p for pattern in patterns for p in self.out.glob(pattern) if p not in written)
        for path in stale:
            path.unlink(missing_ok=True)
            if path.parent.name == "detections":  # and its resume state
                (self.out / ".resume" / path.name).unlink(missing_ok=True)
        if stale:
            names = ", ".join(str(p.relative_to(self.out)) for p in stale)
            self.events.note(f"note: removed {names} from {self.out}: an earlier run's files that this run's report does not hold")

    def run(self) -> DetectionReport:
        """All stages in order; returns the report (also written to the output folder). In a sharded
        run every rank returns the report rank 0 computed."""
        with runtime.session():
            started = time.perf_counter()
            if not self._checked:
                self.check()
            gt = self.ground_truth()
            world = self.world
            if world.sharded:
                self.events.note(f"note: {world.size} processes share the {len(self.records)} pairs; the bars show rank 0's share")
            detections = {source.name: self.detections(source) for source in self.sources}
            if world.sharded:
                for rank, log in enumerate(world.gather(self.ranges)):
                    if rank != world.rank:
                        self.ranges.update(log)
            for line in self.ranges.warnings():
                self.events.note(f"warning: {line}")
            warned = (f"detector {Path(str(d.weights)).name}: {w}" for n, d in self.detectors.items() if (w := self.domain_warnings.get(n)))
            for line in dict.fromkeys(warned):  # a detector trained on other data: its table is no result here
                self.events.note(f"warning: {line}")
            report = self.report(gt, detections) if world.main else None
            self.timings["evaluation total"] = time.perf_counter() - started
            self.rank_timings = world.gather(dict(self.timings)) if world.sharded else []
            if world.main:
                self.write_report(report)
            return world.broadcast(report)

    # --- helpers -------------------------------------------------------------------------------

    def _resume_key(self, source: Source, detector: DetectorLike) -> str:
        """Changes with the source, the detector's weights and settings, the classes, or any input image file."""
        blob = json.dumps(
            {
                "source": source.identity(),
                "detector": detector.settings(),
                "classes": self.classes,
                "images": [(r.stem, source.fingerprint(r)) for r in self.records],
                "value_ranges": [self.settings.ir_range, self.settings.vis_range],
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _shard_path(self, name: str, rank: int, size: int) -> Path:
        return self.out / ".shards" / name / f"{rank}-of-{size}.json"

    def _write_finished(self, name: str, key: str, dets: list[dict]) -> None:
        write_json(self.out / "detections" / f"{name}.json", dets)
        write_json(self.out / ".resume" / f"{name}.json", {"key": key})

    def _detector_info(self, names: Sequence[str]) -> dict:
        """run.json's entry of the detector serving the sources `names`: its settings, what it was
        trained on, and the domain warning of those rows."""
        detector = self.detectors[names[0]]
        domain = getattr(detector, "domain", None)
        return {**detector.settings(), **({"trained_on": domain.to_dict()} if domain is not None else {}),
                "domain_warning": _joined(self.domain_warnings.get(n) for n in names)}

    def _load_finished(self, name: str, key: str) -> list[dict] | None:
        state, path = self.out / ".resume" / f"{name}.json", self.out / "detections" / f"{name}.json"
        try:
            if json.loads(state.read_text())["key"] != key:
                return None
            return json.loads(path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def run_info(self, report: DetectionReport) -> dict:
        """run.json: settings, versions, dataset, detector(s), sources, timings and extra provenance."""
        import torch
        import ultralytics

        import fusedet

        try:
            from importlib.metadata import version

            pycocotools_version = version("pycocotools")
        except Exception:  # pragma: no cover - metadata missing in odd installs
            pycocotools_version = None
        first = next(iter(self.detectors.values()))
        same = all(d is first for d in self.detectors.values())
        mapping = {name: _mapping_info(m) for name, m in self.mappings.items()}
        return {
            "versions": {
                "fusedet": fusedet.__version__,
                "torch": torch.__version__,
                "ultralytics": ultralytics.__version__,
                "pycocotools": pycocotools_version,
                "numpy": np.__version__,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
            },
            "command": sys.argv,
            "settings": {"run": self.settings.to_dict(), "report": self.report_settings.to_dict()},
            "device": self.settings.device,
            "seed": self.settings.seed,
            "dataset": {
                **{k: v for k, v in self.dataset.provenance().items() if k not in ("split", "pairs")},
                "split": self.settings.split,
                "split_used": self.dataset.split_record(self.settings.split),  # exactly the evaluated pairs' split
                "splits": self.dataset.provenance()["split"],  # how the dataset's pairs were split (train/val/test)
                "pairs": len(self.records),
                "pairs_in_dataset": len(self.dataset.records),
                "instances": self.dataset.instance_counts(self.settings.split),
                "warnings": self.dataset.warnings.to_dict(),
            },
            "value_ranges": {"ir": self.settings.ir_range, "vis": self.settings.vis_range, **self.ranges.to_dict()},
            "detector": self._detector_info(list(self.detectors)) if same else {name: self._detector_info([name]) for name in self.detectors},
            "class_mapping": mapping[next(iter(mapping))] if same else mapping,
            "sources": [s.provenance() for s in self.sources],
            "fused_cache": str(self.settings.cache_dir.resolve()) if self.settings.cache_dir else None,
            "resumed_sources": self.resumed,
            "processes": distributed.from_env()[0],
            **({"timings_s_by_rank": [{k: round(v, 3) for k, v in t.items()} for t in self.rank_timings]} if self.rank_timings else {}),
            "paper_rows": sorted(report.paper_rows),
            "report": {"baseline": report.baseline, "groups": list(report.groups)},
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.provenance,
        }


def _share_key(key: str, records: Sequence) -> str:
    """The resume key of one process's share: the source's key and the share's stems."""
    return hashlib.sha256(json.dumps([key, [r.stem for r in records]]).encode()).hexdigest()


def _load_share(path: Path, key: str) -> list[dict] | None:
    """A finished share's detections, or None (absent, unreadable, or made with another key)."""
    try:
        data = json.loads(path.read_text())
        return data["detections"] if data["key"] == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def domain_warnings(dataset: DetectionDataset, sources: Sequence[Source], detectors: Mapping[str, DetectorLike],
                    records: Sequence) -> dict[str, str | None]:
    """Per source name: why its detector's AP on `records` of `dataset` is not a result there
    (fusedet.detector_domain: trained on other data, no infrared images for an ``ir`` row, random
    weights, evaluated pairs it was trained on), or None. `detectors`: source name -> detector; a
    detector without ``domain_warning`` (a test double) has none."""
    stems = [r.stem for r in records]
    warnings = {}
    for source in sources:
        detector = detectors[source.name]
        check = getattr(detector, "domain_warning", None)
        thermal = [s.name for s in sources if detectors[s.name] is detector and isinstance(s, IrSource)]
        warnings[source.name] = check(dataset.name, thermal, stems) if check else None
    return warnings


def _joined(warnings) -> str | None:
    found = list(dict.fromkeys(w for w in warnings if w))
    return "; ".join(found) if found else None


def _mapping_info(mapping) -> dict:
    return {"coco_weights": mapping.coco, "covered": list(mapping.covered), "not_covered": list(mapping.not_covered),
            "not_covered_reasons": dict(mapping.reasons)}
