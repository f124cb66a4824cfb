"""Several training seeds (fusedet.seed_report): every cell's mean and sample standard deviation
across per-seed reports, checked against Python's statistics module; differences to the baseline
seed by seed; groups; undefined cells; the files; bad input; the settings field."""

from __future__ import annotations

import csv
import io
import json
import statistics

import numpy as np
import pytest
from report_data import CLASSES, synthetic_evaluation
from rich.console import Console

from fusedet.cli import render
from fusedet.detection_report import ReportContext, build_report
from fusedet.errors import InputError
from fusedet.eval.groups import csv_groups
from fusedet.seed_report import STD_DEFINITION, merge_run_info, seed_stats, summarize_seeds
from fusedet.settings import FinetuneSettings, ReportSettings

SEEDS = (0, 1, 2)
COLUMNS = [*CLASSES, "mAP"]


@pytest.fixture(scope="module")
def evaluation():
    return synthetic_evaluation(n_images=40, seed=0, sources=("ir", "vi", "fused"))


def _seed_detections(dets: dict, seed: int) -> dict:
    """Another 'training seed': the same detections with scores perturbed and a seeded share dropped."""
    rng = np.random.default_rng(100 + seed)
    out = {}
    for source, rows in dets.items():
        keep = rng.uniform(size=len(rows)) < 0.85
        out[source] = [{**d, "score": float(np.clip(d["score"] + rng.normal(0, 0.15), 0.0, 1.0))} for d, k in zip(rows, keep) if k]
    return out


def _reports(evaluation, options: ReportSettings, groups=None, context=None):
    gt, dets, _ = evaluation
    return {k: build_report(gt, _seed_detections(dets, k), options=options, groups=groups, context=context) for k in SEEDS}


def test_mean_and_sample_std_of_every_cell_equal_the_statistics_module(evaluation):
    reports = _reports(evaluation, ReportSettings(bootstrap=0))
    summary = summarize_seeds(reports)
    assert summary.seeds == list(SEEDS) and summary.baseline in ("ir", "vi")
    spread = 0.0
    for metric in ("ap50", "ap50_95", "ap_small", "ap_medium", "ap_large"):
        for s in ("ir", "vi", "fused"):
            for j, c in enumerate(COLUMNS):
                values = [float(reports[k].scores.points[metric][s][j]) for k in SEEDS]
                if any(np.isnan(values)):
                    assert summary.stats[metric].mean[s][c] is None
                    continue
                assert summary.stats[metric].mean[s][c] == pytest.approx(statistics.mean(values), abs=1e-9)
                assert summary.stats[metric].std[s][c] == pytest.approx(statistics.stdev(values), abs=1e-9)  # N - 1
                spread = max(spread, statistics.stdev(values))
    assert spread > 0.5  # the seeds differ: the test compares real spreads, not zeros
    assert summary.rows["fused"]["mAP"] == pytest.approx(statistics.mean(reports[k].rows["fused"]["mAP"] for k in SEEDS))

    base = summary.baseline
    delta = summary.deltas["ap50"]
    assert base not in delta.mean and set(delta.mean) == {"ir", "vi", "fused"} - {base}
    for s in delta.mean:
        diffs = [reports[k].rows[s]["mAP"] - reports[k].rows[base]["mAP"] for k in SEEDS]
        assert delta.mean[s]["mAP"] == pytest.approx(statistics.mean(diffs), abs=1e-9)
        assert delta.std[s]["mAP"] == pytest.approx(statistics.stdev(diffs), abs=1e-9)


def test_seed_stats_leave_undefined_and_partly_defined_cells_empty():
    per_seed = [{"a": np.array([10.0, np.nan, np.nan])}, {"a": np.array([14.0, np.nan, 3.0])}]
    st = seed_stats(per_seed, ["x", "y", "z"])
    assert st.mean["a"] == {"x": 12.0, "y": None, "z": None}
    assert st.std["a"]["x"] == pytest.approx(2 * 2 ** 0.5)  # |14 - 10| / sqrt(2): ddof=1
    assert st.values["a"]["z"] == [None, 3.0] and st.partial == ["a/z"]
    with pytest.raises(InputError, match="at least 2 seeds"):
        seed_stats(per_seed[:1], ["x", "y", "z"])


def test_a_class_covered_in_some_seeds_only_is_undefined_with_a_note(evaluation):
    gt, dets, _ = evaluation
    options = ReportSettings(bootstrap=0)
    reports = {k: build_report(gt, _seed_detections(dets, k), options=options,
                               context=ReportContext(not_covered={"ir": ["Lamp"]} if k == 1 else None)) for k in SEEDS}
    summary = summarize_seeds(reports)
    assert summary.rows["ir"]["Lamp"] is None and summary.rows["vi"]["Lamp"] is not None
    assert any("ir/Lamp" in n for n in summary.notes)


def test_group_tables_across_seeds(evaluation, tmp_path):
    _, _, records = evaluation
    path = tmp_path / "g.csv"
    path.write_text("".join(f"{r.stem},{'day' if i % 2 else 'night'}\n" for i, r in enumerate(records)))
    grouping = csv_groups(path, [r.stem for r in records])
    reports = _reports(evaluation, ReportSettings(bootstrap=20), groups=grouping)
    summary = summarize_seeds(reports)
    assert list(summary.groups) == ["night", "day"]  # in the order of the file
    for g, (n, stats) in summary.groups.items():
        assert n == 20
        values = [float(reports[k].groups[g].points["ap50"]["fused"][-1]) for k in SEEDS]
        assert stats["ap50"].mean["fused"]["mAP"] == pytest.approx(statistics.mean(values), abs=1e-9)
        assert stats["ap50"].std["fused"]["mAP"] == pytest.approx(statistics.stdev(values), abs=1e-9)
    out = tmp_path / "out"
    summary.write(out)
    by_group = json.loads((out / "table_by_group.json").read_text())
    assert by_group["groups"]["day"]["rows"]["fused"]["mAP"] == pytest.approx(summary.groups["day"][1]["ap50"].mean["fused"]["mAP"], abs=1e-4)
    assert by_group["std"] == STD_DEFINITION and (out / "table_by_group.md").read_text().startswith("**mAP@0.5 (%) by g.csv, mean ± std")


def test_files_say_mean_and_std(evaluation, tmp_path):
    reports = _reports(evaluation, ReportSettings(bootstrap=30, metric="ap50_95"), context=ReportContext(subject="synthetic"))
    summary = summarize_seeds(reports)
    names = sorted(p.name for p in summary.write(tmp_path))
    assert names == sorted(["table.csv", "table.md", "table.tex", "table.json", "table_ap50.csv", "table_ap50.md", "table_ap50.tex",
                            "table_by_size.csv", "table_by_size.md", "table_by_size.tex", "delta_vs_baseline.csv", "ap_per_class.png"])
    data = json.loads((tmp_path / "table.json").read_text())
    assert data["seeds"] == list(SEEDS) and data["std"] == STD_DEFINITION and data["metric"] == "ap50_95"
    assert data["rows"]["fused"]["mAP"] == pytest.approx(summary.rows["fused"]["mAP"], abs=1e-4)
    assert data["ap50_95_std"]["vi"]["Car"] == pytest.approx(summary.stats["ap50_95"].std["vi"]["Car"], abs=1e-4)
    assert data["per_seed"]["2"]["rows"]["ir"]["Car"] == pytest.approx(reports[2].rows["ir"]["Car"], abs=1e-4)
    assert data["per_seed"]["0"]["folder"] == "seed_0"
    assert set(data["delta_vs_baseline_ap50_95"]) == {"ir", "vi", "fused"} - {data["baseline"]}

    rows = list(csv.DictReader(io.StringIO((tmp_path / "table.csv").read_text())))
    fused = next(r for r in rows if r["Source"] == "fused")
    assert float(fused["mAP"]) == pytest.approx(summary.stats["ap50_95"].mean["fused"]["mAP"], abs=1e-4)
    assert float(fused["mAP std"]) == pytest.approx(summary.stats["ap50_95"].std["fused"]["mAP"], abs=1e-4)
    md = (tmp_path / "table.md").read_text()
    mean, std = summary.stats["ap50_95"].mean["fused"]["mAP"], summary.stats["ap50_95"].std["fused"]["mAP"]
    assert f"{mean:.1f} ± {std:.1f}" in md and "ddof=1" in md and "mean ± std over 3 seeds" in md
    sizes = list(csv.reader(io.StringIO((tmp_path / "table_by_size.csv").read_text())))
    assert sizes[0][:3] == ["Size", "Source", "People"] and {r[0] for r in sizes[1:]} == {"small", "medium", "large"}
    deltas = list(csv.DictReader(io.StringIO((tmp_path / "delta_vs_baseline.csv").read_text())))
    assert {r["metric"] for r in deltas} == {"ap50", "ap50_95"} and "seed 2" in deltas[0]
    console = Console(record=True, width=200)
    console.print(render.seed_summary(summary))
    assert "mean ± std over 3 seeds" in console.export_text()


def test_reports_of_different_evaluations_are_refused(evaluation):
    reports = _reports(evaluation, ReportSettings(bootstrap=0))
    with pytest.raises(InputError, match="at least 2 seeds"):
        summarize_seeds({0: reports[0]})
    gt, dets, _ = evaluation
    other = build_report(gt, {"ir": dets["ir"], "vi": dets["vi"]}, options=ReportSettings(bootstrap=0))
    with pytest.raises(InputError, match="not of the same evaluation"):
        summarize_seeds({0: reports[0], 1: other})


def test_run_info_keeps_every_seed(evaluation):
    summary = summarize_seeds(_reports(evaluation, ReportSettings(bootstrap=0)))
    infos = {k: {"versions": {"fusedet": "x"}, "dataset": {"split": "test"}, "detector": {"weights": f"seed_{k}/best.pt"},
                 "training": {"seed": k, "seeds": 3, "models": {"ir": {"weights": f"w{k}"}}}, "timings_s": {"ap": k}} for k in SEEDS}
    info = merge_run_info(infos, summary.folders, summary)
    assert info["versions"] == {"fusedet": "x"} and info["dataset"] == {"split": "test"}
    assert info["training"]["training_seeds"] == [0, 1, 2] and "models" not in info["training"]
    assert info["seeds"]["per_seed"]["1"]["detector"] == {"weights": "seed_1/best.pt"}
    assert info["seeds"]["per_seed"]["2"]["training"]["models"]["ir"]["weights"] == "w2"
    assert info["seeds"]["std"] == STD_DEFINITION and "detector" not in info


def test_finetune_settings_seeds():
    assert FinetuneSettings().training_seeds() == (0,)
    assert FinetuneSettings(seed=5, seeds=3).training_seeds() == (5, 6, 7)
    assert FinetuneSettings(seeds=3).to_dict()["seeds"] == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="seeds"):
            FinetuneSettings(seeds=bad)
