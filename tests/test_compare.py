"""`fusedet compare` / fusedet.compare.compare_runs: merged runs equal one run with all rows; the
ground truth is checked; clear errors for mismatches."""

from __future__ import annotations

import json

import pytest
from report_data import synthetic_evaluation
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.compare import compare_runs
from fusedet.detection_report import ReportContext, build_report
from fusedet.errors import InputError
from fusedet.settings import ReportSettings

SUBJECT = "synthetic test (50 pairs)"


@pytest.fixture(scope="module")
def evaluation():
    return synthetic_evaluation(n_images=50, seed=3, sources=("ir", "vi", "fused", "mean"))


def _run(folder, gt, dets, names, **run_info):
    """A run folder as evaluate writes it (no bootstrap needed to be compared)."""
    report = build_report(
        gt,
        {n: dets[n] for n in names},
        context=ReportContext(subject=SUBJECT, not_covered={"ir": ["Lamp"]}),
        options=ReportSettings(bootstrap=0),
    )
    report.write(folder)
    (folder / "ground_truth.json").write_text(json.dumps(gt, indent=1))  # formatting does not matter, content does
    (folder / "detections").mkdir()
    for n in names:
        (folder / "detections" / f"{n}.json").write_text(json.dumps(dets[n]))
    (folder / "run.json").write_text(json.dumps({"dataset": {"name": "synthetic", "split": "test", "pairs": 50}, **run_info}))
    return folder


def test_compare_equals_one_run_with_all_rows(evaluation, tmp_path):
    gt, dets, _ = evaluation
    a = _run(tmp_path / "a", gt, dets, ["ir", "vi"])
    b = _run(tmp_path / "b", gt, dets, ["vi", "fused", "mean"])  # vi again, the same detections
    options = ReportSettings(bootstrap=150, bootstrap_seed=7)
    merged = compare_runs([a, b], tmp_path / "out", options=options)
    one = build_report(
        gt,
        {n: dets[n] for n in ("ir", "vi", "fused", "mean")},
        context=ReportContext(subject=SUBJECT, not_covered={"ir": ["Lamp"]}),
        options=options,
    )
    assert merged.sources == ["ir", "vi", "fused", "mean"]
    assert merged.to_dict() == one.to_dict()
    written = json.loads((tmp_path / "out" / "table.json").read_text())
    assert written == json.loads(one.to_json())
    assert (tmp_path / "out" / "table.md").read_text() == one.to_markdown()
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["sources"]["fused"] == str(b.resolve()) and info["sources"]["vi"] == str(a.resolve())
    assert json.loads((tmp_path / "out" / "detections" / "fused.json").read_text()) == dets["fused"]
    assert json.loads((tmp_path / "out" / "ground_truth.json").read_text()) == gt


def test_ground_truth_mismatch_names_both_runs(evaluation, tmp_path):
    gt, dets, _ = evaluation
    a = _run(tmp_path / "a", gt, dets, ["ir"])
    other = json.loads(json.dumps(gt))
    other["annotations"][0]["bbox"][0] += 1.0
    b = _run(tmp_path / "b", other, dets, ["fused"])
    with pytest.raises(InputError, match=rf"ground truth differs between {a} and {b}"):
        compare_runs([a, b], tmp_path / "out")


def test_same_source_with_other_detections_and_missing_files(evaluation, tmp_path):
    gt, dets, _ = evaluation
    a = _run(tmp_path / "a", gt, dets, ["ir", "vi"])
    b = _run(tmp_path / "b", gt, {"vi": dets["fused"]}, ["vi"])
    with pytest.raises(InputError, match=rf"source 'vi' has different detections in {a} and {b}"):
        compare_runs([a, b], tmp_path / "out")
    (b / "detections" / "vi.json").unlink()
    with pytest.raises(InputError, match="vi.json: missing"):
        compare_runs([b], tmp_path / "out")
    with pytest.raises(InputError, match="not a run folder"):
        compare_runs([tmp_path / "nothing"], tmp_path / "out")


def test_compare_command(evaluation, tmp_path):
    gt, dets, records = evaluation
    a = _run(tmp_path / "a", gt, dets, ["ir", "vi"])
    b = _run(tmp_path / "b", gt, dets, ["fused"])
    groups = tmp_path / "groups.csv"
    groups.write_text("".join(f"{r.stem},{'north' if i < 20 else 'south'}\n" for i, r in enumerate(records)))
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--bootstrap", "100", "--group-by", str(groups)])
    assert result.exit_code == 0, result.output
    assert "Difference to vi" in result.output and "by groups.csv" in result.output.replace("\n", "")
    data = json.loads((tmp_path / "out" / "table_by_group.json").read_text())
    assert [g["images"] for g in data["groups"].values()] == [20, 30]
    bad = runner.invoke(app, ["compare", str(a), "--out", str(tmp_path / "o2"), "--baseline", "dmnet"])
    assert bad.exit_code == 2 and "error:" in bad.output and "baseline 'dmnet' is not a row" in bad.output.replace("\n", "")
    bad = runner.invoke(app, ["compare", str(a), "--out", str(tmp_path / "o3"), "--ci-style", "sd"])
    assert bad.exit_code == 2 and "ci style 'sd'" in bad.output
