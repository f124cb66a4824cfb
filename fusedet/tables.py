"""Result tables the way fusion papers print them: one row per method, best per column in bold,
second best underlined; rendered to CSV, Markdown and LaTeX here, and to the terminal by the CLI
(fusedet.cli.render).

Used by `fusedet metrics` (Tables I-IV) and `fusedet evaluate` (Table VII). Rows listed in
`reference_rows` (for instance published numbers from the paper) are shown but never ranked.
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

    # --- ranking ----------------------------------------------------------------------------------

    def ranks(self, column: str) -> dict[str, int]:
        """row -> 1 for the best value of `column`, 2 for the second best (ties share a rank)."""
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
        return f"{value:.{self._digits(column)}f}" if _present(value) else "-"

    def label(self, row: str) -> str:
        return self.row_labels.get(row, row)

    # --- renderers -------------------------------------------------------------------------------

    def cells(self, bold: str, under: str, escape=lambda s: s) -> list[list[str]]:
        """The body as text cells, one list per row (label first); the best value of a column is
        wrapped in the format string `bold`, the second best in `under`; `escape` quotes labels."""
        ranks = {c: self.ranks(c) for c in self.columns}
        lines = []
        for row, values in self.rows.items():
            cells = [escape(self.label(row))]
            for c in self.columns:
                text = self.format(c, values.get(c))
                rank = ranks[c].get(row)
                cells.append(bold.format(text) if rank == 1 else under.format(text) if rank == 2 else text)
            lines.append(cells)
        return lines

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([self.row_header, *self.columns])
        for row, values in self.rows.items():
            writer.writerow([self.label(row), *(self.format(c, values.get(c)) if _present(values.get(c)) else "" for c in self.columns)])
        return buf.getvalue()

    def to_markdown(self) -> str:
        head = f"| {self.row_header} | " + " | ".join(self.columns) + " |"
        rule = "|---|" + "---:|" * len(self.columns)
        body = ["| " + " | ".join(cells) + " |" for cells in self.cells("**{}**", "<u>{}</u>", _md_escape)]
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
        lines += [" & ".join(cells) + " \\\\" for cells in self.cells("\\textbf{{{}}}", "\\underline{{{}}}", _tex_escape)]
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


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_TEX = {
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}",
}


def _tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)
