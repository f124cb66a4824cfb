"""Merge the rows of separate evaluation runs into one report with paired intervals.

A run folder is what `fusedet evaluate` / `fusedet finetune` write: ``ground_truth.json``,
``detections/SOURCE.json`` per row, ``table.json`` (row order, classes the detector lacks, max_det)
and ``run.json`` (dataset, detector settings). Runs can only be compared on the same ground truth:
its content hash (sha256 of the canonical json) must be the same in every run. A source name that
appears in two runs is taken once when its detections are the same, and is an error when they
differ. The merged report is what one run with all those rows gives (same engine, same resamples),
written with copies of the ground truth and detections and a run.json naming the runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from fusedet.datasets.atomic import write_text_atomic
from fusedet.detection_report import DetectionReport, ReportContext, build_report
from fusedet.errors import InputError
from fusedet.eval.coco_match import index_ground_truth
from fusedet.eval.groups import load_groups
from fusedet.events import Events, as_events
from fusedet.settings import ReportSettings

DEFAULT_MAX_DET = 300


def content_sha256(data) -> str:
    """sha256 of a json value written canonically (sorted keys, no spaces): the same content gives
    the same hash whatever the file's formatting."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Run:
    """One evaluation run folder, read for comparison."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: not a run folder")
        self.ground_truth = _read_json(self.folder / "ground_truth.json")
        self.gt_sha256 = content_sha256(self.ground_truth)
        self.table = _read_json(self.folder / "table.json")
        run_json = self.folder / "run.json"
        self.info = _read_json(run_json) if run_json.is_file() else {}
        rows = self.table.get("rows")
        if not isinstance(rows, dict) or not rows:
            raise InputError(f"{self.folder / 'table.json'}: no rows")
        self.sources = list(rows)
        self.not_covered = {s: list(c) for s, c in (self.table.get("not_covered") or {}).items()}

    def detections(self, source: str) -> list[dict]:
        return _read_json(self.folder / "detections" / f"{source}.json")

    def max_det(self, source: str) -> int:
        """The detections' cap per image: table.json's max_det, else run.json's detector settings."""
        value = self.table.get("max_det")
        if value is None:
            detector = self.info.get("detector") or {}
            value = detector.get("max_det") if "max_det" in detector else (detector.get(source) or {}).get("max_det")
        if isinstance(value, dict):
            value = value.get(source)
        return int(value) if value is not None else DEFAULT_MAX_DET

    def subject(self) -> str:
        if self.table.get("subject"):
            return str(self.table["subject"])
        data = self.info.get("dataset") or {}
        if data.get("name") and data.get("split"):
            return f"{data['name']} {data['split']} ({data.get('pairs', len(self.ground_truth.get('images', [])))} pairs)"
        return ""


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    options: ReportSettings | None = None,
    events: Events | None = None,
) -> DetectionReport:
    """One report of the rows of `run_dirs` (in order; sources in each run's row order) into `out`.

    `options` (ReportSettings) as for `fusedet evaluate`; its `group_by` (day-night, scene,
    FILE.csv) makes per-group tables (scene reads the first run's dataset folder). InputError when a run folder lacks a file, the
    ground truths differ (naming both runs), or one source name has different detections in two
    runs."""
    events = as_events(events)
    options = options or ReportSettings()
    if not run_dirs:
        raise InputError("compare: give at least one run folder")
    runs = [Run(d) for d in run_dirs]
    first = runs[0]
    for run in runs[1:]:
        if run.gt_sha256 != first.gt_sha256:
            raise InputError(
                f"ground truth differs between {first.folder} and {run.folder} (ground_truth.json sha256 {first.gt_sha256[:12]} vs "
                f"{run.gt_sha256[:12]}): runs can only be compared on the same split and labels"
            )
    detections: dict[str, list[dict]] = {}
    owner: dict[str, Run] = {}
    hashes: dict[str, str] = {}
    not_covered: dict[str, list[str]] = {}
    max_det: dict[str, int] = {}
    for run in runs:
        for source in run.sources:
            dets = run.detections(source)
            digest = content_sha256(dets)
            if source in owner:
                if hashes[source] != digest:
                    raise InputError(f"source {source!r} has different detections in {owner[source].folder} and {run.folder}; "
                                     "rename one of the rows (evaluate with another source name)")
                events.note(f"{source}: the same detections in {owner[source].folder} and {run.folder}; taken once")
                continue
            owner[source], hashes[source], detections[source] = run, digest, dets
            not_covered[source] = run.not_covered.get(source, [])
            max_det[source] = run.max_det(source)
    grouping = None
    group_by = options.group_by
    if group_by is not None:
        root = (first.info.get("dataset") or {}).get("root")
        grouping = load_groups(group_by, index_ground_truth(first.ground_truth).stems, dataset_root=root)
    paper = next((r for r in runs if r.table.get("paper_rows")), None)
    report = build_report(
        first.ground_truth,
        detections,
        context=ReportContext(
            not_covered=not_covered,
            max_det=max_det,
            subject=first.subject(),
            paper_rows=paper.table["paper_rows"] if paper else None,
            paper_source=paper.table.get("paper_source", "") if paper else "",
        ),
        options=options,
        groups=grouping,
        events=events,
    )
    out = Path(out)
    report.write(out)
    write_text_atomic(out / "ground_truth.json", json.dumps(first.ground_truth, separators=(",", ":")))
    for source, dets in detections.items():
        write_text_atomic(out / "detections" / f"{source}.json", json.dumps(dets, separators=(",", ":")))
    info = {
        "command": "compare",
        "runs": [str(r.folder.resolve()) for r in runs],
        "sources": {s: str(r.folder.resolve()) for s, r in owner.items()},
        "ground_truth_sha256": first.gt_sha256,
        "dataset": first.info.get("dataset"),
        "detector": {s: owner[s].info.get("detector") for s in owner},
        "report": report.options.to_dict(),
        "group_by": str(group_by) if group_by is not None else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text_atomic(out / "run.json", json.dumps(info, indent=2) + "\n")
    return report


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing (is {path.parent} an evaluate run folder?)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable json ({exc})") from None
