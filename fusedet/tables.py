"""Result tables the way fusion papers print them: one row per method, best per column in bold,
second best underlined; rendered to CSV, Markdown and LaTeX here, and to the terminal by the CLI
(fusedet.cli.render).

Used by `fusedet metrics` (Tables I-IV) and `fusedet evaluate` (Table VII). Rows listed in
`reference_rows` (for instance published numbers from the paper) are shown but never ranked.

A cell may carry an interval (`intervals[row][column] = (low, high)`): shown as ``45.0 ± 1.8``
(half the interval's width; `interval_style` "pm") or ``45.0 [43.2, 46.9]`` ("interval"), and in
the CSV as two more columns ``COLUMN ci_low`` / ``COLUMN ci_high``. A cell may carry a mark
(`marks[row][column]`, e.g. "*"), appended to it; `signed` prints "+" before positive values.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from fusedet.datasets.atomic import write_text_atomic


@dataclass
class ResultTable:
    """rows[row][column] -> value (None or NaN when not available)."""

    columns: list[str]
    rows: dict[str, dict[str, float | None]]
    title: str = ""
    row_header: str = "Method"
    digits: int | dict[str, int] = 3
    lower_is_better: set[str] = field(default_factory=set)
    reference_rows: set[str] = field(default_factory=set)
    row_labels: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    interval_style: str = "pm"  # "pm": value ± half-width; "interval": value [low, high]
    marks: dict[str, dict[str, str]] = field(default_factory=dict)
    signed: bool = False
    ranked: bool = True

    # --- ranking ----------------------------------------------------------------------------------

    def ranks(self, column: str) -> dict[str, int]:
        """row -> 1 for the best value of `column`, 2 for the second best (ties share a rank); none
        when the table is not `ranked`."""
        if not self.ranked:
            return {}
        values = sorted(
            {self._rounded(column, v) for r, v in self._column(column).items() if r not in self.reference_rows},
            reverse=column not in self.lower_is_better,
        )
        out: dict[str, int] = {}
        for row, v in self._column(column).items():
            if row in self.reference_rows:
                continue
            rv = self._rounded(column, v)
            if values and rv == values[0]:
                out[row] = 1
            elif len(values) > 1 and rv == values[1]:
                out[row] = 2
        return out

    def _column(self, column: str) -> dict[str, float]:
        return {r: float(v[column]) for r, v in self.rows.items() if _present(v.get(column))}

    def _digits(self, column: str) -> int:
        return self.digits.get(column, 3) if isinstance(self.digits, dict) else self.digits

    def _rounded(self, column: str, value: float) -> float:
        return round(value, self._digits(column))

    def format(self, column: str, value: float | None) -> str:
        if not _present(value):
            return "-"
        return f"{value:+.{self._digits(column)}f}" if self.signed else f"{value:.{self._digits(column)}f}"

    def cell(self, row: str, column: str, pm: str = "±") -> str:
        """The cell's text: the value and its interval (`pm`: the plus-minus sign to write); no mark."""
        value = self.rows[row].get(column)
        text = self.format(column, value)
        interval = self.intervals.get(row, {}).get(column)
        if _present(value) and interval is not None and _present(interval[0]) and _present(interval[1]):
            d = self._digits(column)
            low, high = interval
            if self.interval_style == "interval":
                text += f" [{low:.{d}f}, {high:.{d}f}]"
            else:
                text += f" {pm} {(high - low) / 2:.{d}f}"
        return text

    def mark(self, row: str, column: str) -> str:
        return self.marks.get(row, {}).get(column, "")

    def label(self, row: str) -> str:
        return self.row_labels.get(row, row)

    # --- renderers -------------------------------------------------------------------------------

    def cells(self, bold: str, under: str, escape=lambda s: s, pm: str = "±", mark: str = "{}") -> list[list[str]]:
        """The body as text cells, one list per row (label first): each value (with its interval as
        `pm` half-width when it has one), the best of a column wrapped in the format string `bold`,
        the second best in `under`, a mark (a significant difference) in the format string `mark`;
        `escape` quotes text for the target format."""
        ranks = {c: self.ranks(c) for c in self.columns}
        lines = []
        for row in self.rows:
            cells = [escape(self.label(row))]
            for c in self.columns:
                text = pm.join(escape(part) for part in self.cell(row, c, pm=_PM).split(_PM))  # the sign is not escaped
                rank = ranks[c].get(row)
                text = bold.format(text) if rank == 1 else under.format(text) if rank == 2 else text
                m = self.mark(row, c)
                cells.append(text + (mark.format(escape(m)) if m else ""))
            lines.append(cells)
        return lines

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        with_ci = [c for c in self.columns if any(c in cells for cells in self.intervals.values())]
        header = [self.row_header]
        for c in self.columns:
            header += [c, f"{c} ci_low", f"{c} ci_high"] if c in with_ci else [c]
        writer.writerow(header)
        for row, values in self.rows.items():
            line = [self.label(row)]
            for c in self.columns:
                line.append(self.format(c, values.get(c)) if _present(values.get(c)) else "")
                if c in with_ci:
                    low, high = self.intervals.get(row, {}).get(c) or (None, None)
                    line += [self.format(c, v) if _present(v) else "" for v in (low, high)]
            writer.writerow(line)
        return buf.getvalue()

    def to_markdown(self) -> str:
        head = f"| {self.row_header} | " + " | ".join(self.columns) + " |"
        rule = "|---|" + "---:|" * len(self.columns)
        body = ["| " + " | ".join(cells) + " |" for cells in self.cells("**{}**", "<u>{}</u>", _md_escape, mark="{}")]
        title = [f"**{self.title}**", ""] if self.title else []
        return "\n".join([*title, head, rule, *body]) + "\n"

    def to_latex(self) -> str:
        spec = "l" + "r" * len(self.columns)
        lines = [
            "\\begin{table}[t]",
            "\\centering",
            *([f"\\caption{{{_tex_escape(self.title)}}}"] if self.title else []),
            f"\\begin{{tabular}}{{{spec}}}",
            "\\hline",
            " & ".join([_tex_escape(self.row_header), *map(_tex_escape, self.columns)]) + " \\\\",
            "\\hline",
        ]
        cells = self.cells("\\textbf{{{}}}", "\\underline{{{}}}", _tex_escape, pm="$\\pm$", mark="$^{{{}}}$")
        lines += [" & ".join(row) + " \\\\" for row in cells]
        lines += ["\\hline", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | os.PathLike, stem: str) -> list[Path]:
        """Write STEM.csv, STEM.md and STEM.tex into `out_dir` atomically; returns the paths."""
        out = Path(out_dir)
        return [
            write_text_atomic(out / f"{stem}.csv", self.to_csv()),
            write_text_atomic(out / f"{stem}.md", self.to_markdown()),
            write_text_atomic(out / f"{stem}.tex", self.to_latex()),
        ]


_PM = "\x00"  # placeholder for the plus-minus sign while a cell is escaped


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


_TEX = {
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}",
}


def _tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)
