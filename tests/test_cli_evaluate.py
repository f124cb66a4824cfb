"""`fusedet evaluate` end to end on tiny data with a tiny model: output files and their shapes, the
independent AP check of table.json, resume, --paper, and bad inputs (clear errors or counted warnings)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from ap_reference import reference_ap
from detection_helpers import COCO80, tiny_checkpoint
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.detector import DEMO_WEIGHTS

runner = CliRunner()
M3FD = ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]


@pytest.fixture(scope="module")
def coco_ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "coco_tiny.pt", COCO80)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "fcache"))
    return tmp_path / "fcache"


def _invoke(*args: str):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def _text(result) -> str:
    """The command's output without rich's line wrapping (it wraps at 80 columns under the test runner)."""
    return result.output.replace("\n", "")


def test_evaluate_demo_end_to_end_resume_and_paper_rows(tmp_path, cache, coco_ckpt):
    out = tmp_path / "out"
    args = ["--dataset", "demo", "--dataset-option", "n_pairs=15", "--sources", "ir,vi", "--sources", "mean",
            "--weights", coco_ckpt, "--device", "cpu", "--out", out, "--batch", "4", "--paper"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    for name in ("table.csv", "table.md", "table.tex", "table.json", "ap_per_class.png", "ground_truth.json", "run.json",
                 "detections/ir.json", "detections/vi.json", "detections/mean.json"):
        assert (out / name).is_file(), name

    table = json.loads((out / "table.json").read_text())
    gt = json.loads((out / "ground_truth.json").read_text())
    assert table["classes"] == [c["name"] for c in gt["categories"]] == M3FD
    assert list(table["rows"]) == ["ir", "vi", "mean"]
    assert table["not_covered"] == {"ir": ["Lamp"], "vi": ["Lamp"], "mean": ["Lamp"]}  # COCO weights have no lamp
    assert len(table["paper_rows"]) == 16 and table["paper_rows"]["DMNet (paper)"]["mAP"] == 45.0
    assert len(gt["images"]) == 3  # 20 % of 15 demo pairs are test pairs

    # table.json recomputed from the written json files by the independent implementation
    for source, row in table["rows"].items():
        ref = reference_ap(out / "ground_truth.json", out / "detections" / f"{source}.json")
        assert row["Lamp"] is None
        for c in M3FD[:5]:
            assert (row[c] is None) == (ref[c] is None)
            if row[c] is not None:
                assert abs(row[c] - ref[c]) < 0.1, (source, c)
        defined = [row[c] for c in M3FD if row[c] is not None]
        assert row["mAP"] == pytest.approx(np.mean(defined), abs=1e-3)

    run = json.loads((out / "run.json").read_text())
    assert {"versions", "dataset", "detector", "sources", "timings_s", "class_mapping"} <= set(run)
    assert run["versions"]["ultralytics"] and run["versions"]["torch"]
    assert run["detector"]["weights_sha256"] and run["dataset"]["split_used"]["method"] == "split lists"
    assert run["dataset"]["warnings"]["unknown_classes"] == {}
    assert run["class_mapping"]["not_covered"] == ["Lamp"]
    assert run["detector"]["trained_on"]["datasets"] == ["coco"]  # COCO's class list: visible photographs
    assert "row ir measures cross-modality transfer" in run["detector"]["domain_warning"]
    assert _text(result).count("warning: detector coco_tiny.pt: it was trained on COCO") == 1
    md = (out / "table.md").read_text()
    assert "DMNet (paper)" in md and "Lamp: not covered" in md
    assert "DMNet (paper)" in result.output and "mean" in result.output

    again = _invoke(*args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "run.json").read_text())["resumed_sources"] == ["ir", "vi", "mean"]
    assert json.loads((out / "table.json").read_text())["rows"] == table["rows"]


def test_a_rerun_into_the_same_folder_removes_the_earlier_runs_files(tmp_path, cache, coco_ckpt):
    """Another data set, fewer sources and no groups in the same --out: the earlier run's detections of
    other sources and its group tables go (with a note), so the folder holds one report."""
    out = tmp_path / "out"
    first = _invoke("--dataset", "demo", "--dataset-option", "n_pairs=15", "--sources", "ir,vi,mean", "--group-by", "scene",
                    "--weights", coco_ckpt, "--device", "cpu", "--out", out)
    assert first.exit_code == 0, first.output
    assert (out / "table_by_group.json").is_file() and (out / "detections" / "mean.json").is_file()
    second = _invoke("--dataset", "demo", "--dataset-option", "n_pairs=10", "--sources", "ir",
                     "--weights", coco_ckpt, "--device", "cpu", "--out", out)
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in (out / "detections").iterdir()) == ["ir.json"]
    assert not list(out.glob("table_by_group.*")) and not (out / "ap_by_group.png").exists()
    # one row: no difference to a baseline either
    assert ("note: removed ap_by_group.png, delta_vs_baseline.csv, delta_vs_baseline.png, detections/mean.json, "
            "detections/vi.json, table_by_group.csv, table_by_group.json, table_by_group.md") in _text(second)
    ref = reference_ap(out / "ground_truth.json", out / "detections" / "ir.json")  # the files belong together
    assert set(ref) == set(M3FD)


SHIPPED = DEMO_WEIGHTS.is_file() and (DEMO_WEIGHTS.parent / "dmnet_lite.pt").is_file()


@pytest.mark.skipif(not SHIPPED, reason="the shipped demo detector or DMNet weights are not built yet")
def test_demo_defaults_use_the_shipped_weights(tmp_path, cache):
    out = tmp_path / "out"
    result = _invoke("--dataset", "demo", "--dataset-option", "n_pairs=10", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert Path(run["detector"]["weights"]) == DEMO_WEIGHTS
    assert [s["name"] for s in run["sources"]] == ["ir", "vi", "dmnet", "mean", "max"]
    assert run["sources"][2]["fuser_weights_sha256"]
    assert run["class_mapping"]["not_covered"] == []  # trained on the demo's own six classes
    assert run["detector"]["trained_on"]["datasets"] == ["demo"] and run["detector"]["domain_warning"] is None
    assert "warning: detector" not in result.output


@pytest.mark.slow  # the full default demo (100 test pairs, DMNet on CPU): the issue's < 5 min check
def test_default_demo_command_offline_under_five_minutes(tmp_path, cache):
    start = time.perf_counter()
    result = _invoke("--dataset", "demo", "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 300
    rows = json.loads((tmp_path / "out" / "table.json").read_text())["rows"]
    assert list(rows) == ["ir", "vi", "dmnet", "mean", "max"]
    assert rows["dmnet"]["mAP"] > max(rows["ir"]["mAP"], rows["vi"]["mAP"])


# --- bad inputs ------------------------------------------------------------------------------------


def _voc(stem: str, objects: list[tuple[str, tuple[int, int, int, int]]], size=(64, 48)) -> str:
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    head = f"<filename>{stem}.png</filename><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    return f"<annotation>{head}{objs}</annotation>"


def m3fd_folder(root: Path, n: int = 4) -> Path:
    """A tiny dataset in M3FD's real layout, every pair in the test split."""
    rng = np.random.default_rng(0)
    for sub in ("Ir", "Vis", "Annotation", "meta"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = [f"{i:05d}" for i in range(n)]
    for stem in stems:
        cv2.imwrite(str(root / "Ir" / f"{stem}.png"), rng.integers(0, 255, (48, 64), dtype=np.uint8))
        cv2.imwrite(str(root / "Vis" / f"{stem}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        (root / "Annotation" / f"{stem}.xml").write_text(_voc(stem, [("People", (2, 3, 20, 40)), ("Car", (30, 10, 60, 30))]))
    (root / "meta" / "test.txt").write_text("\n".join(stems) + "\n")
    (root / "meta" / "train.txt").write_text("")
    (root / "meta" / "val.txt").write_text("")
    return root


def _bad(tmp_path, coco_ckpt, *extra, root=None):
    root = root or tmp_path / "m3fd"
    return _invoke("--dataset", "m3fd", "--root", root, "--weights", coco_ckpt, "--device", "cpu", "--out", tmp_path / "out", *extra)


def test_m3fd_layout_runs_and_counts_unknown_classes_and_unannotated_pairs(tmp_path, cache, coco_ckpt):
    root = m3fd_folder(tmp_path / "m3fd", n=5)
    (root / "Annotation" / "00001.xml").write_text(_voc("00001", [("People", (2, 3, 20, 40)), ("Dog", (1, 1, 9, 9)), ("Dog", (3, 3, 9, 9))]))
    (root / "Annotation" / "00004.xml").unlink()
    result = _bad(tmp_path, coco_ckpt, "--sources", "ir,vi,mean")
    assert result.exit_code == 0, result.output
    assert "'Dog' x2" in _text(result) and "without annotation" in _text(result)  # names shown with repr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["dataset"]["warnings"]["unknown_classes"] == {"Dog": 2}
    assert run["dataset"]["warnings"]["unannotated_images"] == ["00004"]
    gt = json.loads((tmp_path / "out" / "ground_truth.json").read_text())
    assert len(gt["images"]) == 4 and len(gt["annotations"]) == 3 * 2 + 1  # no Dogs, no unannotated pair


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_annotation_folder", "Annotation"),
        ("malformed_xml", "00002.xml"),
        ("sizes_differ", "different sizes"),
    ],
)
def test_bad_dataset_is_a_clear_error(tmp_path, cache, coco_ckpt, breakage, message):
    root = m3fd_folder(tmp_path / "m3fd")
    if breakage == "no_annotation_folder":
        for f in (root / "Annotation").iterdir():
            f.unlink()
        (root / "Annotation").rmdir()
    elif breakage == "malformed_xml":
        (root / "Annotation" / "00002.xml").write_text("<annotation><object><name>People</name>")
    else:
        cv2.imwrite(str(root / "Ir" / "00001.png"), np.zeros((50, 64), np.uint8))
    result = _bad(tmp_path, coco_ckpt, "--sources", "ir,vi")
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in _text(result)
    assert "Traceback" not in result.output


def test_folder_source_missing_stems_is_a_clear_error(tmp_path, cache, coco_ckpt):
    root = m3fd_folder(tmp_path / "m3fd")
    fused = tmp_path / "other_method"
    fused.mkdir()
    cv2.imwrite(str(fused / "00000.png"), np.zeros((48, 64, 3), np.uint8))
    result = _bad(tmp_path, coco_ckpt, "--sources", f"ir,folder:other={fused}", root=root)
    assert result.exit_code == 2
    assert "no image for 3 stem(s): 00001, 00002, 00003" in _text(result)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sources", "ir,folder:x"], "folder:NAME=DIR"),
        (["--sources", "ir,bogus"], "unknown fuser"),
        (["--weights", "/no/such/weights.pt"], "weights file not found"),
        (["--split", "nosplit"], "unknown split"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, cache, coco_ckpt, extra, message):
    m3fd_folder(tmp_path / "m3fd")
    args = ["--dataset", "m3fd", "--root", tmp_path / "m3fd", "--weights", coco_ckpt, "--device", "cpu", "--out", tmp_path / "o"]
    result = _invoke(*args, *extra)
    assert result.exit_code == 2, result.output
    assert message in _text(result) and "Traceback" not in result.output
