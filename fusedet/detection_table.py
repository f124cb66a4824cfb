"""The Table VII result: per-class AP@0.5 (%) and mAP, one row per source, in every format a user
pastes somewhere (terminal, CSV, Markdown, LaTeX, JSON) plus a bar plot.

A cell is None ("-") when the AP is undefined: the class has no ground-truth box in the split, or
the detector does not cover the class (COCO weights have no Lamp). Such cells are left out of the
row's mAP, and the table's notes say which and why. Published rows (``--paper``) are kept apart
from the measured ones: shown, labelled "(paper)", never ranked, not in `rows` of the JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fusedet.tables import ResultTable, write_text_atomic

AP_DEFINITION = "COCO 101-point interpolated AP at IoU 0.5 (pycocotools), in percent; mAP = mean over the classes with an AP"


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
            out.append(f"{c}: not covered by {who} (no such class in its weights, e.g. COCO); AP not computed (-), not in mAP.")
        if self.reference_rows:
            out.append(f"Rows marked (paper): published numbers, {self.reference_source}; not measured here, not ranked.")
        return out

    def result_table(self, title: str | None = None) -> ResultTable:
        rows = {**self.rows, **self.reference_rows}
        return ResultTable(
            columns=self.columns,
            rows=rows,
            title=self.title if title is None else title,
            row_header="Source",
            digits=2,
            reference_rows=set(self.reference_rows),
        )

    # --- renderers -------------------------------------------------------------------------------

    def to_csv(self) -> str:
        return self.result_table().to_csv()

    def to_markdown(self) -> str:
        text = self.result_table().to_markdown()
        notes = self.notes()
        return text + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")

    def to_latex(self) -> str:
        caption = " ".join([self.title, *self.notes()])
        return self.result_table(title=caption).to_latex()

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
