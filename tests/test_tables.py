"""ResultTable: ranking (bold best, underlined second), lower-is-better columns, reference rows, renderers."""

from __future__ import annotations

import csv
import io
import math

from rich.console import Console

from fusedet.cli import render
from fusedet.tables import ResultTable


def _table(**kw) -> ResultTable:
    rows = {
        "a": {"EN": 7.0, "MI": 2.0},
        "b": {"EN": 6.5, "MI": 3.0},
        "c": {"EN": 6.9, "MI": None},
        "paper": {"EN": 9.0, "MI": 9.0},
    }
    return ResultTable(columns=["EN", "MI"], rows=rows, reference_rows={"paper"}, **kw)


def test_ranks_skip_reference_rows_and_missing_values():
    t = _table()
    assert t.ranks("EN") == {"a": 1, "c": 2}
    assert t.ranks("MI") == {"b": 1, "a": 2}


def test_lower_is_better_and_ties():
    t = ResultTable(columns=["err"], rows={"x": {"err": 1.0}, "y": {"err": 1.0}, "z": {"err": 2.0}}, lower_is_better={"err"})
    assert t.ranks("err") == {"x": 1, "y": 1, "z": 2}


def test_markdown_latex_csv():
    t = _table(title="T_1 & more", row_labels={"paper": "Paper (published)"})
    md = t.to_markdown()
    assert "| a | **7.000** | <u>2.000</u> |" in md
    assert "| c | <u>6.900</u> | - |" in md
    assert "| Paper (published) | 9.000 | 9.000 |" in md
    tex = t.to_latex()
    assert r"a & \textbf{7.000} & \underline{2.000} \\" in tex
    assert r"\caption{T\_1 \& more}" in tex
    rows = list(csv.reader(io.StringIO(t.to_csv())))
    assert rows[0] == ["Method", "EN", "MI"]
    assert rows[3] == ["c", "6.900", ""]


def test_rich_render_and_nan(tmp_path):
    t = ResultTable(columns=["v"], rows={"x": {"v": math.nan}, "y": {"v": 1.0}})
    console = Console(record=True, width=80)
    console.print(render.result_table(t))
    text = console.export_text()
    assert "x" in text and "-" in text and "1.000" in text
    paths = t.write(tmp_path, "table")
    assert sorted(p.name for p in paths) == ["table.csv", "table.md", "table.tex"]
    assert (tmp_path / "table.md").read_text().startswith("| Method | v |")
