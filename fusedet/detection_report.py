"""The detection report: per-class AP of every source with the COCO AP family, paired bootstrap
intervals, differences to a baseline row and per-group tables, in every format a user pastes
somewhere. `build_report` is the one call to make once the detections exist.

What it computes (all from one matching pass per source, fusedet.eval.coco_match; AP by
fusedet.eval.ap_engine, equal to pycocotools on the full set):

- per source and class, AP@0.5 (`rows`, the paper's Table VII), AP@[.5:.95] and AP_S / AP_M / AP_L
  (COCO's area ranges, IoU .50:.95), each with its mAP; a class the source's detector does not cover
  or without ground truth is None and left out of the mAP;
- with ``options.bootstrap`` N > 0: N paired resamples of the test images (fusedet.eval.bootstrap,
  own seed) give a percentile interval for every AP@0.5 cell and, with ``metric="ap50_95"``, every
  AP@[.5:.95] cell; and for every source its difference to the baseline row with interval and
  two-sided p-value;
- with a grouping (fusedet.eval.groups): the same, separately, for each group's images: each
  group's table is what evaluating that group's images alone gives (same seed, same resamples).

Files (`DetectionReport.write`): ``table.{csv,md,tex,json}`` (the main metric's table; table.json
always holds AP@0.5 in ``rows``), ``table_ap50_95.*`` or ``table_ap50.*`` (the other metric),
``table_by_size.*``, ``ap_per_class.png``, ``delta_vs_baseline.{png,csv}`` (with intervals), and
with groups ``table_by_group.{json,md,csv}`` and ``ap_by_group.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusedet.datasets.atomic import write_text_atomic
from fusedet.detection_table import SIGNIFICANT_MARK, DeltaTable, DetectionTable
from fusedet.errors import InputError
from fusedet.eval.bootstrap import Difference, image_weights, paired_difference, percentile_interval, scores
from fusedet.eval.coco_match import MatchRecords, index_ground_truth, match_detections
from fusedet.eval.groups import Grouping
from fusedet.events import Events, as_events
from fusedet.settings import BASELINE_DEFAULT, MAIN_METRICS, ReportSettings
from fusedet.tables import ResultTable

SIZE_METRICS = ("ap_small", "ap_medium", "ap_large")
ALL_METRICS = (*MAIN_METRICS, *SIZE_METRICS)
TITLES = {
    "ap50": "AP@0.5 (%)",
    "ap50_95": "AP@[.5:.95] (%)",
    "ap_small": "AP@[.5:.95] (%), small objects (area < 32^2 px)",
    "ap_medium": "AP@[.5:.95] (%), medium objects (32^2 to 96^2 px)",
    "ap_large": "AP@[.5:.95] (%), large objects (area > 96^2 px)",
}
SHORT = {"ap50": "AP@0.5", "ap50_95": "AP@[.5:.95]"}
# Every file DetectionReport.write may write (glob patterns in its folder); a given report writes a subset.
REPORT_FILES = ("table.*", "table_ap50.*", "table_ap50_95.*", "table_by_size.*", "table_by_group.*", "delta_vs_baseline.*",
                "ap_per_class.png", "ap_by_group.png")


@dataclass
class ImageSetScores:
    """Every source's scores on one set of images (the whole split, or one group).

    points[metric][source]: (K + 1,) per-class AP then mAP in percent, NaN where undefined;
    intervals[metric][source]: (low, high) arrays of the same shape (bootstrapped metrics only);
    deltas[metric][source]: per column a Difference to the baseline (bounds and p NaN without a
    bootstrap), None where undefined; the baseline row has none."""

    images: int
    points: dict[str, dict[str, np.ndarray]]
    intervals: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    baseline: str | None
    deltas: dict[str, dict[str, list[Difference | None]]]
    no_ground_truth: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportContext:
    """What a report needs to know of the run besides the detections and the settings.

    classes: the ground truth's category names in id order (checked; None: taken from it);
    not_covered: source -> classes its detector lacks (their AP is None, not in the mAP); max_det:
    detections kept per image and class (pycocotools' maxDets; the detector's own cap), one for
    every source or one per source name; subject: what was evaluated, for titles ("demo test (100
    pairs)"); paper_rows / paper_source: published rows shown apart in the AP@0.5 table;
    not_covered_reasons: class -> why no detector class maps onto it (for the table's notes)."""

    classes: Sequence[str] | None = None
    not_covered: Mapping[str, Sequence[str]] | None = None
    max_det: int | Mapping[str, int] = 300
    subject: str = ""
    paper_rows: Mapping[str, Mapping[str, float | None]] | None = None
    paper_source: str = ""
    not_covered_reasons: Mapping[str, str] | None = None


def build_report(
    ground_truth: Mapping,
    detections: Mapping[str, Sequence[Mapping] | Mapping[str, np.ndarray]],
    *,
    context: ReportContext | None = None,
    options: ReportSettings | None = None,
    groups: Grouping | None = None,
    events: Events | None = None,
) -> DetectionReport:
    """The report of `detections` (source name -> COCO results, in row order) against the COCO
    `ground_truth` (see the module docstring), with what `context` says of the run and how
    `options` says to make it; `groups`: a Grouping of the split's stems for per-group tables.
    Progress goes to `events` (stages "AP: match detections", "AP: bootstrap ...").
    InputError for bad options, an unknown baseline, classes that differ from the ground truth's,
    or detections of images the ground truth does not have."""
    context = context or ReportContext()
    classes, not_covered, max_det = context.classes, context.not_covered, context.max_det
    options = options or ReportSettings()
    events = as_events(events)
    if not detections:
        raise InputError("no detections to report (no source)")
    index = index_ground_truth(ground_truth)
    if classes is not None and list(classes) != list(index.classes):
        raise InputError(f"classes {list(classes)} differ from the ground truth's categories {list(index.classes)}")
    classes = list(index.classes)
    unknown = sorted({c for cs in (not_covered or {}).values() for c in cs} - set(classes))
    if unknown:
        raise InputError(f"not_covered names classes the ground truth does not have: {unknown}")
    not_covered = {s: [c for c in classes if c in set(not_covered.get(s, ()))] for s in detections} if not_covered else {}

    stage = "AP: match detections"
    events.start(stage, total=len(detections))
    records: dict[str, MatchRecords] = {}
    for name, dets in detections.items():
        if isinstance(max_det, Mapping) and name not in max_det:
            raise InputError(f"max_det: no value for source {name!r}")
        records[name] = match_detections(index, dets, max_det=int(max_det[name] if isinstance(max_det, Mapping) else max_det))
        events.advance(stage, 1, status=name)
    events.finish(stage)
    covered = {s: np.array([c not in not_covered.get(s, ()) for c in classes]) for s in records}

    full = score_images(records, covered, classes, options, events=events, stage_prefix="AP")
    group_scores: dict[str, ImageSetScores] = {}
    if groups is not None:
        members = groups.members(index.stems)
        stage = f"AP: {len(members)} groups" + (f" x {options.bootstrap} resamples" if options.bootstrap else "")
        events.start(stage, total=len(members))
        for name, images in members.items():
            group_scores[name] = score_images(records, covered, classes, options, images=np.asarray(images))
            events.advance(stage, 1, status=name)
        events.finish(stage)
    for note in full.notes:
        events.note(note)
    return DetectionReport(
        classes=classes,
        sources=list(records),
        options=options,
        scores=full,
        not_covered={s: list(c) for s, c in not_covered.items() if c},
        max_det=_one_or_each({s: r.max_det for s, r in records.items()}),
        not_covered_reasons=dict(context.not_covered_reasons or {}),
        subject=context.subject,
        paper_rows={s: dict(v) for s, v in (context.paper_rows or {}).items()},
        paper_source=context.paper_source,
        groups=group_scores,
        grouping=groups,
    )


def score_images(
    records: Mapping[str, MatchRecords],
    covered: Mapping[str, np.ndarray],
    classes: Sequence[str],
    options: ReportSettings,
    *,
    images: np.ndarray | None = None,
    events: Events | None = None,
    stage_prefix: str = "",
) -> ImageSetScores:
    """Points, intervals and differences of every source on `images` (indices in image-id order;
    None: all). The bootstrap resamples `images` as if they were the whole set (same seed)."""
    events = as_events(events)
    first = next(iter(records.values())).ground_truth
    n_images = first.n_images if images is None else len(images)
    weights = None
    if images is not None:
        weights = np.zeros(first.n_images)
        weights[images] = 1.0
    points = {m: {s: scores(rec, m, weights, covered[s])[0] for s, rec in records.items()} for m in ALL_METRICS}
    n_gt = first.n_regular[0][images].sum(axis=0) if images is not None else first.n_regular[0].sum(axis=0)
    no_gt = [c for c, n in zip(classes, n_gt) if n == 0]

    boot_metrics = ["ap50"] + (["ap50_95"] if options.metric == "ap50_95" else [])
    samples: dict[str, dict[str, np.ndarray]] = {}
    if options.bootstrap:
        w = image_weights(first.n_images, images, options.bootstrap, options.bootstrap_seed)
        stage = f"{stage_prefix}: bootstrap ({options.bootstrap} resamples)".lstrip(": ")
        events.start(stage, total=len(records) * len(boot_metrics))
        for m in boot_metrics:
            samples[m] = {}
            for s, rec in records.items():
                samples[m][s] = scores(rec, m, w, covered[s])
                events.advance(stage, 1, status=f"{s} {SHORT[m]}")
        events.finish(stage)
    intervals = {m: {s: percentile_interval(v, options.level) for s, v in per.items()} for m, per in samples.items()}

    baseline, notes = resolve_baseline(options.baseline, list(records), points[options.metric])
    deltas: dict[str, dict[str, list[Difference | None]]] = {}
    if baseline is not None:
        for m in boot_metrics:
            deltas[m] = {}
            for s in records:
                if s == baseline:
                    continue
                if m in samples:
                    deltas[m][s] = paired_difference(samples[m][s], samples[m][baseline], points[m][s], points[m][baseline], options.level)
                else:
                    d = points[m][s] - points[m][baseline]
                    deltas[m][s] = [None if np.isnan(v) else Difference(float(v), math.nan, math.nan, math.nan) for v in d]
    return ImageSetScores(images=n_images, points=points, intervals=intervals, baseline=baseline, deltas=deltas,
                          no_ground_truth=no_gt, notes=notes)


def resolve_baseline(name: str, sources: Sequence[str], main_points: Mapping[str, np.ndarray]) -> tuple[str | None, list[str]]:
    """The baseline row: `name` itself when it is a row; for "best-single" the better of ir and vi on
    the main metric's mAP (ir on a tie; the one present when only one is). Returns (row, notes);
    (None, [why]) for best-single without an ir or vi row. InputError for another name that is not
    a row."""
    if name != BASELINE_DEFAULT:
        if name not in sources:
            raise InputError(f"baseline {name!r} is not a row of this report (rows: {', '.join(sources)}; or best-single)")
        return name, []
    singles = [s for s in ("ir", "vi") if s in sources]
    if not singles:
        return None, ["best-single baseline: no ir or vi row, so no differences are reported (choose a baseline row)"]

    def key(s: str) -> float:
        v = float(main_points[s][-1])
        return -math.inf if math.isnan(v) else v

    best = singles[0]
    for s in singles[1:]:
        if key(s) > key(best):
            best = s
    return best, []


@dataclass
class DetectionReport:
    """A finished report (see the module docstring); `write(out)` writes every file."""

    classes: list[str]
    sources: list[str]
    options: ReportSettings
    scores: ImageSetScores
    not_covered: dict[str, list[str]] = field(default_factory=dict)
    not_covered_reasons: dict[str, str] = field(default_factory=dict)
    max_det: int | dict[str, int] = 300
    subject: str = ""
    paper_rows: dict[str, dict[str, float | None]] = field(default_factory=dict)
    paper_source: str = ""
    groups: dict[str, ImageSetScores] = field(default_factory=dict)
    grouping: Grouping | None = None

    @property
    def columns(self) -> list[str]:
        return [*self.classes, "mAP"]

    @property
    def baseline(self) -> str | None:
        return self.scores.baseline

    @property
    def rows(self) -> dict[str, dict[str, float | None]]:
        """AP@0.5 per source and column (None when undefined), as `DetectionTable.rows`."""
        return self._rows("ap50", self.scores)

    @property
    def table(self) -> DetectionTable:
        """The main metric's table, with intervals and the differences to the baseline."""
        return self.metric_table(self.options.metric)

    # --- tables ----------------------------------------------------------------------------------

    def _rows(self, metric: str, scores: ImageSetScores) -> dict[str, dict[str, float | None]]:
        return {s: {c: _value(v) for c, v in zip(self.columns, scores.points[metric][s])} for s in self.sources}

    def _title(self, metric: str, extra: str = "") -> str:
        where = f" on {self.subject}" if self.subject else ""
        return f"{TITLES[metric]}{where}{extra}"

    def metric_table(self, metric: str, scores: ImageSetScores | None = None, title: str | None = None) -> DetectionTable:
        """The table of `metric` (ap50, ap50_95, ap_small, ap_medium, ap_large) on `scores` (default:
        the whole split), with intervals and differences when that metric was bootstrapped."""
        scores = scores or self.scores
        intervals = {}
        if metric in scores.intervals:
            intervals = {s: {c: (_value(lo), _value(hi)) for c, lo, hi in zip(self.columns, *scores.intervals[metric][s])}
                         for s in self.sources}
        delta = None
        if metric in scores.deltas and metric in scores.intervals and scores.baseline and scores.deltas[metric]:
            delta = DeltaTable(
                baseline=scores.baseline,
                columns=self.columns,
                rows={s: {c: (d.delta, d.low, d.high) if d else None for c, d in zip(self.columns, cells)}
                      for s, cells in scores.deltas[metric].items()},
                title=f"Difference to {scores.baseline} ({SHORT[metric]}, AP points)",
                ci_style=self.options.ci_style,
            )
        paper = self.paper_rows if metric == "ap50" and scores is self.scores else {}
        return DetectionTable(
            classes=list(self.classes),
            rows=self._rows(metric, scores),
            not_covered={s: list(c) for s, c in self.not_covered.items()},
            not_covered_reasons=dict(self.not_covered_reasons),
            no_ground_truth=list(scores.no_ground_truth),
            reference_rows=dict(paper),
            reference_source=self.paper_source if paper else "",
            title=self._title(metric) if title is None else title,
            intervals=intervals,
            ci_style=self.options.ci_style,
            interval_note=self._interval_note(scores, delta is not None) if intervals else "",
            delta=delta,
        )

    def _interval_note(self, scores: ImageSetScores, with_delta: bool) -> str:
        o = self.options
        shape = "± : half-width of" if o.ci_style == "pm" else "[low, high]:"
        text = (f"{shape} the {o.level:.0%} paired bootstrap interval ({o.bootstrap} resamples of the {scores.images} test images, "
                f"seed {o.bootstrap_seed}): how much the numbers move with the choice of test images, not between training runs.")
        if with_delta:
            text += f" Differences to {scores.baseline} on the same resamples; {SIGNIFICANT_MARK} : the interval excludes 0."
        return text

    def other_metric(self) -> str:
        return "ap50_95" if self.options.metric == "ap50" else "ap50"

    def size_tables(self, scores: ImageSetScores | None = None) -> list[DetectionTable]:
        return [self.metric_table(m, scores) for m in SIZE_METRICS]

    def group_summary(self) -> ResultTable:
        """Main-metric mAP per source (rows) and group (columns), with intervals."""
        m = self.options.metric
        names = list(self.groups)
        rows = {s: {g: _value(self.groups[g].points[m][s][-1]) for g in names} for s in self.sources}
        intervals = {}
        if all(m in sc.intervals for sc in self.groups.values()) and self.options.bootstrap:
            intervals = {s: {g: (_value(self.groups[g].intervals[m][s][0][-1]), _value(self.groups[g].intervals[m][s][1][-1]))
                             for g in names} for s in self.sources}
        spec = Path(self.grouping.spec).name if self.grouping else "group"
        return ResultTable(columns=[f"{g} ({self.groups[g].images})" for g in names],
                           rows={s: {f"{g} ({self.groups[g].images})": v for g, v in r.items()} for s, r in rows.items()},
                           title=f"m{SHORT[m]} (%) by {spec} (images per group in parentheses)", row_header="Source",
                           digits=1 if intervals else 2,
                           intervals={s: {f"{g} ({self.groups[g].images})": v for g, v in r.items()} for s, r in intervals.items()},
                           interval_style=self.options.ci_style)

    # --- json ------------------------------------------------------------------------------------

    def _set_dict(self, scores: ImageSetScores) -> dict:
        """The keys of one image set (rows, ci, baseline, delta_vs_baseline, ap50_95, ap_small, ...)."""
        out: dict = {"rows": _rounded_rows(self._rows("ap50", scores))}
        out["ci"] = self._ci_dict(scores, "ap50")
        out["baseline"] = scores.baseline
        out["delta_vs_baseline"] = self._delta_dict(scores, "ap50")
        for m in ("ap50_95", *SIZE_METRICS):
            out[m] = _rounded_rows(self._rows(m, scores))
        if "ap50_95" in scores.deltas or "ap50_95" in scores.intervals:
            out["ci_ap50_95"] = self._ci_dict(scores, "ap50_95")
            out["delta_vs_baseline_ap50_95"] = self._delta_dict(scores, "ap50_95")
        out["no_ground_truth"] = list(scores.no_ground_truth)
        return out

    def _ci_dict(self, scores: ImageSetScores, metric: str) -> dict:
        if metric not in scores.intervals:
            return {}
        return {s: {c: {"ci_low": _round(lo), "ci_high": _round(hi)} for c, lo, hi in zip(self.columns, *scores.intervals[metric][s])}
                for s in self.sources}

    def _delta_dict(self, scores: ImageSetScores, metric: str) -> dict:
        out = {}
        for s, cells in scores.deltas.get(metric, {}).items():
            out[s] = {c: ({"delta": _round(d.delta), "ci_low": _round(d.low), "ci_high": _round(d.high), "p": _round(d.p, 6)} if d else None)
                      for c, d in zip(self.columns, cells)}
        return out

    def _bootstrap_dict(self) -> dict:
        o = self.options
        return {"resamples": o.bootstrap, "seed": o.bootstrap_seed, "level": o.level, "unit": "test image (paired across sources)"}

    def to_dict(self) -> dict:
        """table.json: the AP@0.5 table's keys (classes, rows, not_covered, no_ground_truth,
        paper_rows, paper_source, ap, notes), then metric, ci, baseline, delta_vs_baseline, ap50_95,
        ap_small, ap_medium, ap_large (and ci_ap50_95, delta_vs_baseline_ap50_95 with that metric),
        bootstrap, images, max_det, subject (and group_by with groups)."""
        out = self.metric_table("ap50").to_dict()
        out["metric"] = self.options.metric
        extra = self._set_dict(self.scores)
        extra.pop("rows")
        extra.pop("no_ground_truth")
        out.update(extra)
        out["bootstrap"] = self._bootstrap_dict()
        out["images"] = self.scores.images
        out["max_det"] = self.max_det
        out["subject"] = self.subject
        if self.grouping is not None:
            out["group_by"] = self.grouping.spec
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def group_dict(self) -> dict:
        """table_by_group.json: {"group_by", "metric", "bootstrap", "ignored_stems", "notes",
        "groups": {GROUP: {"images": n, "rows", "ci", "baseline", "delta_vs_baseline", ...}}}."""
        g = self.grouping
        return {
            "group_by": g.spec if g else None,
            "metric": self.options.metric,
            "classes": list(self.classes),
            "bootstrap": self._bootstrap_dict(),
            "ignored_stems": g.ignored_stems if g else 0,
            "notes": list(g.notes) if g else [],
            "groups": {name: {"images": sc.images, **self._set_dict(sc)} for name, sc in self.groups.items()},
        }

    # --- renderers -------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        return self.table.to_markdown()

    def to_latex(self) -> str:
        return self.table.to_latex()

    def to_csv(self) -> str:
        return self.table.to_csv()

    def plot(self, path: str | os.PathLike) -> Path:
        return self.table.plot(path)

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """Every file of the module docstring into `out_dir` (atomic writes); returns their paths."""
        from fusedet.plots import plot_delta_forest, plot_groups

        out = Path(out_dir)
        main = self.table
        paths = [*main.write_tables(out, "table"), write_text_atomic(out / "table.json", self.to_json()), main.plot(out / "ap_per_class.png")]
        paths += self.metric_table(self.other_metric()).write_tables(out, f"table_{self.other_metric()}")
        paths += _write_stacked(self.size_tables(), out, "table_by_size", "Size", [m.removeprefix("ap_") for m in SIZE_METRICS])
        if main.delta is not None:
            paths.append(plot_delta_forest(main.delta, self.sources, out / "delta_vs_baseline.png", metric=SHORT[self.options.metric]))
            paths.append(write_text_atomic(out / "delta_vs_baseline.csv", self._delta_csv()))
        if self.groups:
            paths.append(write_text_atomic(out / "table_by_group.json", json.dumps(self.group_dict(), indent=2) + "\n"))
            tables = [self.metric_table(self.options.metric, sc, title=f"{name} ({sc.images} images): " + self._title(self.options.metric))
                      for name, sc in self.groups.items()]
            summary = self.group_summary().to_markdown()
            notes = "".join(f"- {n}\n" for n in (self.grouping.notes if self.grouping else ()))
            md = summary + ("\n" + notes if notes else "") + "".join("\n" + t.to_markdown() for t in tables)
            paths.append(write_text_atomic(out / "table_by_group.md", md))
            paths.append(write_text_atomic(out / "table_by_group.csv", _stacked_csv(tables, "Group", list(self.groups))))
            m = self.options.metric
            plot_data = {
                name: (sc.images, {s: _value(sc.points[m][s][-1]) for s in self.sources},
                       {s: (float(sc.intervals[m][s][0][-1]), float(sc.intervals[m][s][1][-1])) for s in self.sources}
                       if m in sc.intervals else {})
                for name, sc in self.groups.items()
            }
            spec = self.grouping.spec if self.grouping else "group"
            paths.append(plot_groups(plot_data, self.sources, out / "ap_by_group.png", ylabel=f"m{SHORT[m]} (%)",
                                     title=f"by {Path(spec).name}"))
        return paths

    def _delta_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["metric", "baseline", "source", "column", "delta", "ci_low", "ci_high", "p"])
        for m, per in self.scores.deltas.items():
            for s, cells in per.items():
                for c, d in zip(self.columns, cells):
                    if d is not None:
                        writer.writerow([m, self.scores.baseline, s, c, *(f"{v:.4f}" if not math.isnan(v) else "" for v in (d.delta, d.low, d.high)),
                                         f"{d.p:.6f}" if not math.isnan(d.p) else ""])
        return buf.getvalue()


def _one_or_each(values: dict[str, int]) -> int | dict[str, int]:
    """The common value when every source has the same, else the mapping."""
    return next(iter(values.values())) if len(set(values.values())) == 1 else values


def _write_stacked(tables: list[DetectionTable], out: Path, stem: str, key: str, names: list[str]) -> list[Path]:
    md = "\n".join(t.to_markdown() for t in tables)
    tex = "\n".join(t.to_latex() for t in tables)
    return [
        write_text_atomic(out / f"{stem}.csv", _stacked_csv(tables, key, names)),
        write_text_atomic(out / f"{stem}.md", md),
        write_text_atomic(out / f"{stem}.tex", tex),
    ]


def _stacked_csv(tables: list[DetectionTable], key: str, names: list[str]) -> str:
    """One CSV of several tables with the same columns: a first column `key` naming the table."""
    lines = []
    for i, (name, table) in enumerate(zip(names, tables)):
        rows = list(csv.reader(io.StringIO(table.result_table().to_csv())))
        start = 0 if i == 0 else 1
        lines += [[key if j == 0 and i == 0 else name, *r] for j, r in enumerate(rows[start:], start=start)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    return buf.getvalue()


def _value(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, np.floating) and np.isnan(v)) else float(v)


def _round(v, digits: int = 4) -> float | None:
    v = _value(v)
    return None if v is None else round(v, digits)


def _rounded_rows(rows: Mapping[str, Mapping[str, float | None]]) -> dict:
    return {s: {c: _round(v) for c, v in r.items()} for s, r in rows.items()}


__all__ = ["ReportContext", "DetectionReport", "ImageSetScores", "build_report", "score_images", "resolve_baseline"]
