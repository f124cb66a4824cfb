"""The detection report (fusedet.detection_report.build_report): today's table without a bootstrap,
the table.json keys of the comparisons, intervals and marked differences in every format, the main
metric, baselines, group tables equal to evaluating each group alone, files and plots."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from report_data import CLASSES, synthetic_evaluation
from rich.console import Console

from fusedet.cli import render
from fusedet.detection_report import ReportContext, build_report, resolve_baseline
from fusedet.detection_table import DetectionTable
from fusedet.errors import InputError
from fusedet.eval.detection_ap import average_precision, mean_ap
from fusedet.eval.groups import csv_groups
from fusedet.events import RecordingEvents
from fusedet.settings import ReportSettings


@pytest.fixture(scope="module")
def evaluation():
    return synthetic_evaluation(n_images=60, seed=0, sources=("ir", "vi", "fused", "mean"))


def _rich_text(renderable) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def test_without_bootstrap_the_table_is_exactly_the_pycocotools_table(evaluation):
    gt, dets, _ = evaluation
    not_covered = {"ir": ["Lamp"]}
    rows = {}
    for name, d in dets.items():
        ap = average_precision(gt, d)
        for c in not_covered.get(name, []):
            ap[c] = None
        ap["mAP"] = mean_ap(ap, CLASSES)
        rows[name] = ap
    old = DetectionTable(classes=CLASSES, rows=rows, not_covered=not_covered, no_ground_truth=[], title="AP@0.5 (%) on synthetic test (60 pairs)")
    report = build_report(
        gt,
        dets,
        context=ReportContext(classes=CLASSES, not_covered=not_covered, subject="synthetic test (60 pairs)"),
        options=ReportSettings(bootstrap=0),
    )
    new = report.table
    assert new.to_markdown() == old.to_markdown()
    assert new.to_csv() == old.to_csv()
    assert new.to_latex() == old.to_latex()
    assert _rich_text(render.detection_table(new)) == _rich_text(render.detection_table(old))
    data, old_data = report.to_dict(), old.to_dict()
    assert {k: data[k] for k in old_data} == old_data  # today's keys unchanged, new ones added
    assert data["bootstrap"]["resamples"] == 0 and data["ci"] == {} and data["baseline"] == "vi"
    assert data["delta_vs_baseline"]["fused"]["mAP"]["ci_low"] is None
    assert data["delta_vs_baseline"]["fused"]["mAP"]["delta"] == pytest.approx(rows["fused"]["mAP"] - rows["vi"]["mAP"], abs=1e-3)


def test_table_json_has_intervals_differences_and_the_ap_family(evaluation):
    gt, dets, _ = evaluation
    report = build_report(gt, dets, options=ReportSettings(bootstrap=300, bootstrap_seed=4))
    data = json.loads(report.to_json())
    for key in ("rows", "ci", "baseline", "delta_vs_baseline", "ap50_95", "ap_small", "ap_medium", "ap_large", "bootstrap"):
        assert key in data, key
    assert data["bootstrap"] == {"resamples": 300, "seed": 4, "level": 0.95, "unit": "test image (paired across sources)"}
    assert data["baseline"] == "vi"  # the better single modality here
    cols = [*CLASSES, "mAP"]
    for s in dets:
        for c in cols:
            v, ci = data["rows"][s][c], data["ci"][s][c]
            assert ci["ci_low"] <= v <= ci["ci_high"], (s, c, v, ci)
            assert data["ap50_95"][s][c] < v  # AP over stricter thresholds is lower
        assert 0 < data["ci"][s]["mAP"]["ci_high"] - data["ci"][s]["mAP"]["ci_low"] < 30
    assert set(data["delta_vs_baseline"]) == {"ir", "fused", "mean"}
    for s, cells in data["delta_vs_baseline"].items():
        for c, d in cells.items():
            assert d["delta"] == pytest.approx(data["rows"][s][c] - data["rows"]["vi"][c], abs=2e-4)
            assert d["ci_low"] <= d["ci_high"] and 0 <= d["p"] <= 1
    fused = data["delta_vs_baseline"]["fused"]["mAP"]
    assert fused["ci_low"] > 0 and fused["p"] < 0.05  # 80 % vs 60 % of the boxes found: clearly better
    # the same seed gives the same numbers; another seed other resamples
    assert build_report(gt, dets, options=ReportSettings(bootstrap=300, bootstrap_seed=4)).to_dict() == report.to_dict()
    assert build_report(gt, dets, options=ReportSettings(bootstrap=300, bootstrap_seed=5)).to_dict()["ci"] != data["ci"]


def test_cells_show_intervals_and_significant_differences_are_marked(evaluation):
    gt, dets, _ = evaluation
    report = build_report(gt, dets, options=ReportSettings(bootstrap=200, baseline="ir"))
    table = report.table
    lo, hi = report.scores.intervals["ap50"]["fused"][0][-1], report.scores.intervals["ap50"]["fused"][1][-1]
    point = report.rows["fused"]["mAP"]
    cell = f"{point:.1f} ± {(hi - lo) / 2:.1f}"
    md, tex, text = table.to_markdown(), table.to_latex(), _rich_text(render.detection_table(table))
    assert cell in md and cell in text and cell.replace("±", "$\\pm$") in tex
    delta = table.delta.result_table()
    significant = [(s, c) for s, cells in report.scores.deltas["ap50"].items() for c, d in zip([*CLASSES, "mAP"], cells) if d and d.excludes_zero]
    assert ("fused", "mAP") in significant
    for s, c in [(s, c) for s in delta.rows for c in delta.columns]:
        assert (delta.mark(s, c) == "*") == ((s, c) in significant)
    assert delta.cell("fused", "mAP").startswith("+") and delta.cell("fused", "mAP") + "\\*" in md
    assert "$^{*}$" in tex and "Difference to ir" in md and "interval excludes 0" in md
    header = next(csv.reader(io.StringIO(table.to_csv())))
    assert header[:4] == ["Source", "People", "People ci_low", "People ci_high"]
    wide = build_report(gt, dets, options=ReportSettings(bootstrap=200, baseline="ir", ci_style="interval")).table
    interval_cell = f"{point:.1f} [{lo:.1f}, {hi:.1f}]"
    assert interval_cell in wide.to_markdown() and interval_cell in _rich_text(render.detection_table(wide))


def test_main_metric_ap50_95(evaluation, tmp_path):
    gt, dets, _ = evaluation
    report = build_report(gt, dets, context=ReportContext(subject="synthetic"), options=ReportSettings(bootstrap=100, metric="ap50_95"))
    assert report.table.title == "AP@[.5:.95] (%) on synthetic"
    assert report.table.rows["fused"]["mAP"] == pytest.approx(report.scores.points["ap50_95"]["fused"][-1])
    data = report.to_dict()
    assert data["metric"] == "ap50_95" and data["rows"]["fused"]["mAP"] == round(report.rows["fused"]["mAP"], 4)  # rows: AP@0.5
    assert "ci_ap50_95" in data and "delta_vs_baseline_ap50_95" in data and data["ci"]
    names = {p.name for p in report.write(tmp_path)}
    assert {"table.md", "table_ap50.md", "table_ap50.csv", "table_ap50.tex", "table_by_size.md"} <= names
    assert "table_ap50_95.md" not in names
    assert (tmp_path / "table.md").read_text().startswith("**AP@[.5:.95] (%) on synthetic**")


def test_baseline_choices(evaluation):
    points = {"ir": np.array([1.0, 50.0]), "vi": np.array([2.0, 49.0]), "x": np.array([3.0, 90.0])}
    assert resolve_baseline("best-single", list(points), points) == ("ir", [])
    assert resolve_baseline("x", list(points), points) == ("x", [])
    assert resolve_baseline("best-single", ["vi", "x"], points) == ("vi", [])
    base, notes = resolve_baseline("best-single", ["x"], points)
    assert base is None and "no ir or vi row" in notes[0]
    with pytest.raises(InputError, match="baseline 'dmnet' is not a row"):
        resolve_baseline("dmnet", list(points), points)
    gt, dets, _ = evaluation
    events = RecordingEvents()
    report = build_report(gt, {"fused": dets["fused"], "mean": dets["mean"]}, options=ReportSettings(bootstrap=50), events=events)
    assert report.baseline is None and report.table.delta is None and report.to_dict()["delta_vs_baseline"] == {}
    assert any("no ir or vi row" in n for n in events.notes())


def test_group_tables_equal_evaluating_each_groups_images_alone(evaluation, tmp_path):
    gt, dets, records = evaluation
    groups_csv = tmp_path / "groups.csv"
    groups_csv.write_text("stem,group\n" + "".join(f"{r.stem},{'night' if i % 3 else 'day'}\n" for i, r in enumerate(records[:50])))
    grouping = csv_groups(groups_csv, [r.stem for r in records])
    options = ReportSettings(bootstrap=150, bootstrap_seed=2)
    events = RecordingEvents()
    report = build_report(gt, dets, options=options, groups=grouping, events=events)
    by_group = report.group_dict()
    assert list(by_group["groups"]) == ["day", "night", "unlisted"]
    assert [g["images"] for g in by_group["groups"].values()] == [17, 33, 10]
    assert events.done("AP: 3 groups x 150 resamples") == 3
    for name, body in by_group["groups"].items():
        ids = {im["id"] for im in gt["images"] if grouping.of[im["stem"]] == name}
        sub_gt = {**gt, "images": [im for im in gt["images"] if im["id"] in ids],
                  "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
        sub = build_report(sub_gt, {s: [d for d in ds if d["image_id"] in ids] for s, ds in dets.items()}, options=options)
        alone = sub.to_dict()
        for key in ("rows", "ci", "baseline", "delta_vs_baseline", "ap50_95", "ap_small", "ap_medium", "ap_large", "no_ground_truth"):
            assert body[key] == alone[key], (name, key)
    assert "mAP@0.5 (%) by" in _rich_text(render.report(report))


def test_write_every_file_and_plot(evaluation, tmp_path):
    import matplotlib.image

    gt, dets, records = evaluation
    grouping = csv_groups(_csv(tmp_path, records), [r.stem for r in records])
    report = build_report(
        gt,
        dets,
        context=ReportContext(not_covered={"ir": ["Lamp"]}, subject="synthetic"),
        options=ReportSettings(bootstrap=100),
        groups=grouping,
    )
    out = tmp_path / "out"
    names = sorted(p.name for p in report.write(out))
    assert names == sorted([
        "table.csv", "table.md", "table.tex", "table.json", "ap_per_class.png",
        "table_ap50_95.csv", "table_ap50_95.md", "table_ap50_95.tex",
        "table_by_size.csv", "table_by_size.md", "table_by_size.tex",
        "delta_vs_baseline.png", "delta_vs_baseline.csv",
        "table_by_group.json", "table_by_group.md", "table_by_group.csv", "ap_by_group.png",
    ])
    for png in ("ap_per_class.png", "delta_vs_baseline.png", "ap_by_group.png"):
        image = matplotlib.image.imread(out / png)
        assert image.shape[1] == 1050 and image.shape[0] > 400  # 3.5 in at 300 dpi
    data = json.loads((out / "table.json").read_text())
    assert data["rows"]["ir"]["Lamp"] is None and data["ci"]["ir"]["Lamp"] == {"ci_low": None, "ci_high": None}
    assert data["delta_vs_baseline"]["ir"]["Lamp"] is None
    assert DetectionTable.from_dict(data).rows["fused"]["mAP"] == pytest.approx(report.rows["fused"]["mAP"], abs=1e-4)  # still readable
    size_rows = list(csv.reader(io.StringIO((out / "table_by_size.csv").read_text())))
    assert size_rows[0][:2] == ["Size", "Source"] and {r[0] for r in size_rows[1:]} == {"small", "medium", "large"}
    group_rows = list(csv.reader(io.StringIO((out / "table_by_group.csv").read_text())))
    assert group_rows[0][:2] == ["Group", "Source"] and len(group_rows) == 1 + 2 * len(dets)
    delta_rows = list(csv.DictReader(io.StringIO((out / "delta_vs_baseline.csv").read_text())))
    assert {r["source"] for r in delta_rows} == {"ir", "fused", "mean"} and all(0 <= float(r["p"]) <= 1 for r in delta_rows)
    md = (out / "table_by_group.md").read_text()
    assert md.startswith("**mAP@0.5 (%) by") and "**A (30 images): AP@0.5 (%) on synthetic**" in md
    assert json.loads((out / "table_by_group.json").read_text())["group_by"] == str(tmp_path / "g.csv")


def test_bad_inputs(evaluation):
    gt, dets, _ = evaluation
    with pytest.raises(InputError, match="differ from the ground truth"):
        build_report(gt, dets, context=ReportContext(classes=["People", "Car"]))
    with pytest.raises(InputError, match="not_covered names classes"):
        build_report(gt, dets, context=ReportContext(not_covered={"ir": ["Lamp", "Tram"]}))
    with pytest.raises(InputError, match="no detections"):
        build_report(gt, {})
    assert ReportSettings(bootstrap=np.int64(5)).bootstrap == 5
    for bad in ({"metric": "ap75"}, {"bootstrap": -1}, {"bootstrap": 2.5}, {"ci_style": "sd"}, {"level": 1.0}, {"baseline": " "}):
        with pytest.raises(InputError):
            ReportSettings(**bad)


def _csv(tmp_path, records):
    path = tmp_path / "g.csv"
    path.write_text("".join(f"{r.stem},{'A' if i % 2 else 'B'}\n" for i, r in enumerate(records)))
    return path
