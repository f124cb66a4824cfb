"""The Table VII result: per-class AP@0.5 (%) and mAP, one row per source, in every format a user
pastes somewhere (terminal, CSV, Markdown, LaTeX, JSON) plus a bar plot.

A cell is None ("-") when the AP is undefined: the class has no ground-truth box in the split, or
the detector does not cover the class (COCO weights have no Lamp). Such cells are left out of the
row's mAP, and the table's notes say which and why. Published rows (``--paper``) are kept apart
from the measured ones: shown, labelled "(paper)", never ranked, not in `rows` of the JSON.

With `intervals` (per source and column, e.g. a bootstrap's 95 % interval) the cells read
``45.0 ± 1.8`` (half-width; ``ci_style`` "pm") or ``45.0 [43.2, 46.9]`` ("interval"), one decimal;
`delta` (a DeltaTable: every source minus a baseline row, with intervals) is shown below the table
in the terminal, Markdown and LaTeX, differences whose interval excludes 0 marked ``*``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fusedet.tables import ResultTable, write_text_atomic

AP_DEFINITION = "COCO 101-point interpolated AP at IoU 0.5 (pycocotools), in percent; mAP = mean over the classes with an AP"
SIGNIFICANT_MARK = "*"


@dataclass
class DeltaTable:
    """Differences of each source to a baseline row: rows[source][column] -> (delta, low, high) in
    AP points (None when undefined), the interval a paired bootstrap's."""

    baseline: str
    columns: list[str]
    rows: dict[str, dict[str, tuple[float, float, float] | None]]
    title: str = ""
    ci_style: str = "pm"

    def result_table(self, title: str | None = None) -> ResultTable:
        values = {s: {c: (v[0] if v else None) for c, v in cells.items()} for s, cells in self.rows.items()}
        intervals = {s: {c: (v[1], v[2]) for c, v in cells.items() if v} for s, cells in self.rows.items()}
        marks = {s: {c: SIGNIFICANT_MARK for c, v in cells.items() if v and (v[1] > 0 or v[2] < 0)} for s, cells in self.rows.items()}
        return ResultTable(columns=self.columns, rows=values, title=self.title if title is None else title, row_header="Source",
                           digits=1, intervals=intervals, interval_style=self.ci_style, marks=marks, signed=True, ranked=False)


@dataclass
class DetectionTable:
    """rows[source][class or 'mAP'] -> AP in percent (None when undefined)."""

    classes: list[str]
    rows: dict[str, dict[str, float | None]]
    not_covered: dict[str, list[str]] = field(default_factory=dict)  # source -> classes its detector lacks
    no_ground_truth: list[str] = field(default_factory=list)
    reference_rows: dict[str, dict[str, float | None]] = field(default_factory=dict)
    reference_source: str = ""
    title: str = "AP@0.5 (%)"
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # source -> column -> (low, high)
    ci_style: str = "pm"
    interval_note: str = ""  # what the intervals are, one sentence (a note of the table)
    delta: DeltaTable | None = None
    not_covered_reasons: dict[str, str] = field(default_factory=dict)  # class -> why no detector class maps onto it

    @property
    def columns(self) -> list[str]:
        return [*self.classes, "mAP"]

    def notes(self) -> list[str]:
        """Why some cells are '-' and where reference rows come from, one sentence each."""
        out = []
        if self.no_ground_truth:
            out.append(f"{', '.join(self.no_ground_truth)}: no ground-truth box in this split; AP undefined (-), not in mAP.")
        lacking: dict[str, list[str]] = {}
        for source, classes in self.not_covered.items():
            for c in classes:
                lacking.setdefault(c, []).append(source)
        for c, sources in lacking.items():
            who = "the detector" if len(sources) == len(self.rows) else "the detector of " + ", ".join(sources)
            why = self.not_covered_reasons.get(c, "no such class in its weights, e.g. COCO")
            out.append(f"{c}: not covered by {who} ({why}); AP not computed (-), not in mAP.")
        if self.reference_rows:
            out.append(f"Rows marked (paper): published numbers, {self.reference_source}; not measured here, not ranked.")
        if self.intervals and self.interval_note:
            out.append(self.interval_note)
        return out

    def result_table(self, title: str | None = None) -> ResultTable:
        rows = {**self.rows, **self.reference_rows}
        return ResultTable(
            columns=self.columns,
            rows=rows,
            title=self.title if title is None else title,
            row_header="Source",
            digits=1 if self.intervals else 2,
            reference_rows=set(self.reference_rows),
            intervals=self.intervals,
            interval_style=self.ci_style,
        )

    # --- renderers -------------------------------------------------------------------------------

    def to_csv(self) -> str:
        return self.result_table().to_csv()

    def to_markdown(self) -> str:
        text = self.result_table().to_markdown()
        if self.delta:
            text += "\n" + self.delta.result_table().to_markdown()
        notes = self.notes()
        return text + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")

    def to_latex(self) -> str:
        caption = " ".join([self.title, *self.notes()])
        text = self.result_table(title=caption).to_latex()
        return text + ("\n" + self.delta.result_table().to_latex() if self.delta else "")

    def to_dict(self) -> dict:
        return {
            "classes": list(self.classes),
            "rows": {s: {c: _round(v.get(c)) for c in self.columns} for s, v in self.rows.items()},
            "not_covered": {s: list(c) for s, c in self.not_covered.items() if c},
            "no_ground_truth": list(self.no_ground_truth),
            "paper_rows": {s: {c: v.get(c) for c in self.columns} for s, v in self.reference_rows.items()},
            "paper_source": self.reference_source,
            "ap": AP_DEFINITION,
            "notes": self.notes(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> DetectionTable:
        return cls(
            classes=list(data["classes"]),
            rows={s: dict(v) for s, v in data["rows"].items()},
            not_covered={s: list(c) for s, c in data.get("not_covered", {}).items()},
            no_ground_truth=list(data.get("no_ground_truth", [])),
            reference_rows={s: dict(v) for s, v in data.get("paper_rows", {}).items()},
            reference_source=data.get("paper_source", ""),
        )

    def plot(self, path: str | os.PathLike) -> Path:
        from fusedet.plots import plot_ap_per_class

        return plot_ap_per_class(self, path)

    def write_tables(self, out_dir: str | os.PathLike, stem: str) -> list[Path]:
        """STEM.csv, STEM.md and STEM.tex in `out_dir` (atomic writes)."""
        out = Path(out_dir)
        return [
            write_text_atomic(out / f"{stem}.csv", self.to_csv()),
            write_text_atomic(out / f"{stem}.md", self.to_markdown()),
            write_text_atomic(out / f"{stem}.tex", self.to_latex()),
        ]

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """table.csv, table.md, table.tex, table.json and ap_per_class.png in `out_dir` (atomic writes)."""
        out = Path(out_dir)
        return [
            write_text_atomic(out / "table.csv", self.to_csv()),
            write_text_atomic(out / "table.md", self.to_markdown()),
            write_text_atomic(out / "table.tex", self.to_latex()),
            write_text_atomic(out / "table.json", self.to_json()),
            self.plot(out / "ap_per_class.png"),
        ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
