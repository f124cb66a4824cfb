"""The evaluation engine behind ``FusionDetector.evaluate``, ``fusedet evaluate`` and ``fusedet finetune``.

One `Evaluation` object owns a run: the dataset split, the sources, the detector(s), the settings and
the output folder. Its stages, in order:

1. ``check()``: the split is not empty, every source can serve every pair (a folder source has every
   stem, a fuser's weights load), every detector covers some dataset class. Before any long work.
2. ``ground_truth()``: the split's boxes as COCO json (``ground_truth.json``).
3. ``detections(source)``: per source, its images (fused and cached as needed) through the detector,
   as COCO results (``detections/SOURCE.json``); a source finished by an earlier run with the same
   inputs, detector and settings is reused (the resume key in ``.resume/SOURCE.json``).
4. ``average_precision(...)``: per-class AP@0.5 and mAP of every source (pycocotools).
5. ``write_report(table)``: ``table.{csv,md,tex,json}``, ``ap_per_class.png`` and ``run.json``
   (settings, versions, dataset, detectors, sources with their provenance, timings).

``run()`` does them all. Progress goes to a fusedet.events.Events object; timings and provenance are
kept on the engine (``timings``, ``provenance``), not passed around.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fusedet.datasets.atomic import write_text_atomic
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.value_range import RangeLog
from fusedet.detection_table import DetectionTable
from fusedet.errors import FusedetError, InputError
from fusedet.eval.detection_ap import average_precision, coco_detections, coco_ground_truth, mean_ap
from fusedet.events import Events, as_events
from fusedet.paper_results import PAPER_SOURCE, paper_rows
from fusedet.settings import ReportSettings, RunSettings
from fusedet.sources import FusedSource, Source

PARALLEL_AP_MIN_BOXES = 200_000  # below this, starting worker processes costs more than it saves


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


class Evaluation:
    """One evaluation run (see the module docstring).

    `detector` is one detector for every source, or a mapping source name -> detector (per-source
    fine-tuning). `run` gives the split, device, reader threads, fusion batch and cache; `report` what
    the report adds. Extra provenance (a training summary) can be added to ``provenance`` before
    ``run()``; it lands in run.json."""

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
        self.report = report or ReportSettings()
        self.events = as_events(events)
        self.detectors = {s.name: (detector[s.name] if isinstance(detector, Mapping) else detector) for s in self.sources}
        self.records = dataset.split(self.settings.split)
        self.classes = list(dataset.classes)
        self.timings: dict[str, float] = {}
        self.provenance: dict[str, Any] = {}
        self.ranges = RangeLog()  # how every IR and visible image was brought to [0, 1]
        self.resumed: list[str] = []
        self._checked = False

    # --- stages --------------------------------------------------------------------------------

    def check(self) -> None:
        """Everything the run needs is there and consistent (see the module docstring); InputError if not."""
        if not self.records:
            counts = {s: len(self.dataset.split(s)) for s in ("train", "val", "test")}
            raise InputError(f"split {self.settings.split!r} of dataset {self.dataset.name!r} has no pairs (pairs per split: {counts})")
        for source in self.sources:
            source.check(self.records)
        self.mappings = {name: det.class_mapping(self.classes) for name, det in self.detectors.items()}
        self._checked = True

    def ground_truth(self) -> dict:
        """The split's boxes as a COCO ground-truth dict, written to ground_truth.json."""
        start = time.perf_counter()
        gt = coco_ground_truth(self.records, self.classes)
        write_json(self.out / "ground_truth.json", gt)
        self.timings["ground truth"] = time.perf_counter() - start
        return gt

    def detections(self, source: Source) -> list[dict]:
        """COCO results of `source` on the split (reused from an earlier run when its resume key matches)."""
        detector = self.detectors[source.name]
        key = self._resume_key(source, detector)
        stage = f"{source.name}: {'fuse + detect' if isinstance(source, FusedSource) else 'detect'}"
        self.events.start(stage, total=len(self.records))
        found = self._load_finished(source.name, key)
        if found is not None:
            self.resumed.append(source.name)
            self.events.advance(stage, len(self.records))
            self.events.finish(stage, "reused from an earlier run")
            return found
        image_id = {r.stem: i for i, r in enumerate(self.records, start=1)}
        dets: list[dict] = []
        detect_seconds = 0.0
        stream = source.images(self.records, self.settings, detector.batch, self.ranges)
        for chunk, images in stream:
            start = time.perf_counter()
            results = detector.detect(images, self.classes)
            detect_seconds += time.perf_counter() - start
            dets.extend(coco_detections(((image_id[r.stem], d) for r, d in zip(chunk, results)), self.classes))
            self.events.advance(stage, len(chunk), chunk[-1].stem)
        for name, seconds in {**stream.seconds, "detect": detect_seconds}.items():
            if seconds:
                self.timings[f"{source.name}: {name}"] = seconds
        write_json(self.out / "detections" / f"{source.name}.json", dets)
        write_json(self.out / ".resume" / f"{source.name}.json", {"key": key})
        self.events.finish(stage)
        return dets

    def average_precision(self, ground_truth: dict, detections: Mapping[str, list[dict]]) -> dict[str, dict[str, float | None]]:
        """Per-class AP@0.5 (%) and mAP of every source; classes the detector does not cover are None."""
        start = time.perf_counter()
        stage = "AP@0.5 (pycocotools)"
        self.events.start(stage, total=len(detections))
        per_source = self._pycocotools(ground_truth, detections, stage)
        rows: dict[str, dict[str, float | None]] = {}
        for name, ap in per_source.items():
            for c in self.mappings[name].not_covered:
                ap[c] = None
            ap["mAP"] = mean_ap(ap, self.classes)
            rows[name] = ap
        self.events.finish(stage)
        self.timings["ap"] = time.perf_counter() - start
        return rows

    def table(self, ground_truth: dict, rows: dict[str, dict[str, float | None]]) -> DetectionTable:
        """The result table of `rows` (with the paper's rows when asked for)."""
        with_gt = {a["category_id"] for a in ground_truth["annotations"]}
        reference = paper_rows(self.classes) if self.report.paper else {}
        return DetectionTable(
            classes=self.classes,
            rows=rows,
            not_covered={name: list(m.not_covered) for name, m in self.mappings.items() if m.not_covered},
            no_ground_truth=[c for i, c in enumerate(self.classes, start=1) if i not in with_gt],
            reference_rows=reference,
            reference_source=PAPER_SOURCE if reference else "",
            title=f"AP@0.5 (%) on {self.dataset.name} {self.settings.split} ({len(self.records)} pairs)",
        )

    def write_report(self, table: DetectionTable) -> None:
        """The table files, the plot and run.json."""
        start = time.perf_counter()
        table.write(self.out)
        self.timings["write tables"] = time.perf_counter() - start
        write_json(self.out / "run.json", self.run_info(table), indent=2)

    def run(self) -> DetectionTable:
        """All stages in order; returns the table (also written to the output folder)."""
        started = time.perf_counter()
        if not self._checked:
            self.check()
        gt = self.ground_truth()
        detections = {source.name: self.detections(source) for source in self.sources}
        for line in self.ranges.warnings():
            self.events.note(f"warning: {line}")
        table = self.table(gt, self.average_precision(gt, detections))
        self.timings["evaluation total"] = time.perf_counter() - started
        self.write_report(table)
        return table

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

    def _load_finished(self, name: str, key: str) -> list[dict] | None:
        state, path = self.out / ".resume" / f"{name}.json", self.out / "detections" / f"{name}.json"
        try:
            if json.loads(state.read_text())["key"] != key:
                return None
            return json.loads(path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _pycocotools(self, ground_truth: dict, detections: Mapping[str, list[dict]], stage: str) -> dict[str, dict]:
        """Per-class AP of every source. Large runs (M3FD: about 1.2 M boxes a source) on machines with
        4+ cores evaluate the sources in parallel, one fresh ``python -m fusedet.eval.detection_ap``
        process each (no fork of this process), on the json files already written."""
        names = list(detections)
        boxes = sum(len(d) for d in detections.values())
        cores = os.cpu_count() or 1
        result: dict[str, dict] = {}
        if len(names) < 2 or cores < 4 or boxes < PARALLEL_AP_MIN_BOXES:
            for name in names:
                result[name] = average_precision(ground_truth, detections[name], max_det=self.detectors[name].max_det)
                self.events.advance(stage, 1, name)
            return result

        def one(name: str) -> dict:
            command = [sys.executable, "-m", "fusedet.eval.detection_ap", str(self.out / "ground_truth.json"),
                       str(self.out / "detections" / f"{name}.json"), "--max-det", str(self.detectors[name].max_det)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise FusedetError(f"AP of source {name!r} failed: {done.stderr.strip().splitlines()[-1:]}")
            return json.loads(done.stdout)

        with ThreadPoolExecutor(max_workers=min(len(names), cores)) as pool:
            for name, ap in zip(names, pool.map(one, names)):
                result[name] = ap
                self.events.advance(stage, 1, name)
        return result

    def run_info(self, table: DetectionTable) -> dict:
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
            "settings": {"run": self.settings.to_dict(), "report": self.report.to_dict()},
            "device": self.settings.device,
            "seed": self.settings.seed,
            "dataset": {
                **self.dataset.provenance(),
                "split": self.settings.split,
                "split_used": self.dataset.describe_split(self.settings.split),
                "split_source": self.dataset.split_source,
                "pairs": len(self.records),
                "instances": self.dataset.instance_counts(self.settings.split),
                "warnings": self.dataset.warnings.to_dict(),
            },
            "value_ranges": {"ir": self.settings.ir_range, "vis": self.settings.vis_range, **self.ranges.to_dict()},
            "detector": first.settings() if same else {name: d.settings() for name, d in self.detectors.items()},
            "class_mapping": mapping[next(iter(mapping))] if same else mapping,
            "sources": [s.provenance() for s in self.sources],
            "fused_cache": str(self.settings.cache_dir.resolve()) if self.settings.cache_dir else None,
            "resumed_sources": self.resumed,
            "paper_rows": sorted(table.reference_rows),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.provenance,
        }


def _mapping_info(mapping) -> dict:
    return {"coco_weights": mapping.coco, "covered": list(mapping.covered), "not_covered": list(mapping.not_covered)}
