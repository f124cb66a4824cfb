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


def test_intervals_marks_and_signed_values_in_every_format():
    t = ResultTable(
        columns=["AP", "mAP"],
        rows={"a": {"AP": 45.04, "mAP": -2.0}, "b": {"AP": 40.0, "mAP": None}},
        digits=1,
        intervals={"a": {"AP": (43.2, 46.8), "mAP": (-3.5, -0.5)}, "b": {"AP": (38.0, 41.0)}},
        marks={"a": {"mAP": "*"}},
        signed=True,
        ranked=False,
        title="Δ",
    )
    assert t.cell("a", "AP") == "+45.0 ± 1.8" and t.cell("a", "mAP") == "-2.0 ± 1.5" and t.cell("b", "mAP") == "-"
    assert t.ranks("AP") == {}
    md = t.to_markdown()
    assert "| a | +45.0 ± 1.8 | -2.0 ± 1.5\\* |" in md and "| b | +40.0 ± 1.5 | - |" in md
    assert r"a & +45.0 $\pm$ 1.8 & -2.0 $\pm$ 1.5$^{*}$ \\" in t.to_latex()
    rows = list(csv.reader(io.StringIO(t.to_csv())))
    assert rows[0] == ["Method", "AP", "AP ci_low", "AP ci_high", "mAP", "mAP ci_low", "mAP ci_high"]
    assert rows[1] == ["a", "+45.0", "+43.2", "+46.8", "-2.0", "-3.5", "-0.5"] and rows[2][4:] == ["", "", ""]
    t.interval_style = "interval"
    assert t.cell("a", "AP") == "+45.0 [43.2, 46.8]"
    console = Console(record=True, width=120)
    console.print(render.result_table(t))
    text = console.export_text()
    assert "+45.0 [43.2, 46.8]" in text and "-2.0 [-3.5, -0.5]*" in text  # brackets are not markup
