"""FusionDetector and the evaluation engine: known AP end to end with a scripted detector, the
fused-image cache and resume, folder sources, source specs, and the table object."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from detection_helpers import COCO80, tiny_checkpoint

from fusedet import FusionDetector
from fusedet.datasets.records import DetectionDataset, DetectionRecord
from fusedet.detection_table import DetectionTable
from fusedet.detector import ClassMapping, Detections
from fusedet.errors import InputError
from fusedet.evaluation import Evaluation
from fusedet.fusers import Fuser, MeanFuser, batches_by_size, fuse_arrays
from fusedet.paper_results import TABLE_VII
from fusedet.settings import RunSettings
from fusedet.sources import parse_sources

CLASSES = ["People", "Car", "Bus", "Lamp"]  # Bus: not covered by the scripted detector; Lamp: no ground truth
W, H = 64, 48


def _write_pair(root: Path, i: int, rng) -> tuple[Path, Path]:
    """IR and VIS images whose pixel (0, 0) encodes the index i, in every source (mean and max keep it)."""
    ir = rng.integers(0, 256, (H, W), dtype=np.uint8)
    vis = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    ir[0, 0] = i
    vis[0, 0] = i
    (root / "Ir").mkdir(parents=True, exist_ok=True)
    (root / "Vis").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "Ir" / f"{i:03d}.png"), ir)
    cv2.imwrite(str(root / "Vis" / f"{i:03d}.png"), vis[:, :, ::-1])
    return root / "Ir" / f"{i:03d}.png", root / "Vis" / f"{i:03d}.png"


def synthetic_dataset(root: Path, n: int = 5, seed: int = 0) -> DetectionDataset:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        ir_path, vis_path = _write_pair(root, i, rng)
        k = 1 + i % 3
        xy = rng.uniform(0, 30, size=(k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(6, 16, size=(k, 2))], axis=1)
        labels = tuple(["People", "Car", "Bus"][j % 3] for j in range(i, i + k))
        records.append(DetectionRecord(f"{i:03d}", ir_path, vis_path, W, H, boxes, labels, "test"))
    return DetectionDataset("synthetic", root, list(CLASSES), records, split_source="made by the test")


class ScriptedDetector:
    """Answers with the ground truth of the pair it is shown (read from pixel (0, 0)): all boxes for
    colour images, only the first box of each pair for gray (IR) images; never Bus (not covered)."""

    max_det = 300
    batch = 2

    def __init__(self, dataset: DetectionDataset, tag: str = "v1"):
        self.records = dataset.records
        self.tag = tag
        self.calls = 0

    def settings(self) -> dict:
        return {"scripted": self.tag}

    def class_mapping(self, classes):
        return ClassMapping({0: "People", 1: "Car"}, ("People", "Car", "Lamp"), ("Bus",), False)

    def detect(self, images, classes):
        self.calls += len(images)
        out = []
        for image in images:
            record = self.records[int(image[0, 0] if image.ndim == 2 else image[0, 0, 0])]
            n = 1 if image.ndim == 2 else len(record.labels)
            keep = [j for j in range(n) if record.labels[j] != "Bus"]
            scores = np.linspace(0.9, 0.5, len(keep), dtype=np.float32)
            out.append(Detections(record.boxes[keep], scores, tuple(record.labels[j] for j in keep)))
        return out


class CountingMean(Fuser):
    name = "countmean"

    def __init__(self):
        self.calls = 0
        self.passes: list[int] = []  # pairs per fuse() call

    def fuse(self, ir, vis_y):
        self.calls += ir.shape[0]
        self.passes.append(ir.shape[0])
        return (ir + vis_y) / 2

    def cache_key(self) -> str:
        return "countmean-v1"


def _expected_ap(found: int, total: int) -> float:
    """Precision 1 up to recall found/total: AP = (recall points 0, 0.01, ... <= recall) / 101."""
    return 100.0 * (math.floor(100 * found / total + 1e-9) + 1) / 101


def _run(dataset, sources, detector, out, cache, split="test"):
    return Evaluation(dataset, sources, detector, out, run=RunSettings(split=split, cache_dir=cache, workers=1)).run()


def _images(source, records, batch, fuse_batch, workers, cache):
    return source.images(records, RunSettings(fuse_batch=fuse_batch, workers=workers, cache_dir=cache), batch)


def test_known_ap_end_to_end_and_output_files(tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    fuser = CountingMean()
    sources = parse_sources(["ir", "vi", "countmean"], fusers={"countmean": lambda: fuser})
    table = _run(data, sources, ScriptedDetector(data), tmp_path / "out", tmp_path / "cache")

    totals = {c: sum(lab == c for r in data.records for lab in r.labels) for c in ("People", "Car")}
    ir_found = {c: sum(r.labels[0] == c for r in data.records) for c in ("People", "Car")}
    for source in ("vi", "countmean"):
        assert table.rows[source]["People"] == pytest.approx(100.0)
        assert table.rows[source]["Car"] == pytest.approx(100.0)
        assert table.rows[source]["mAP"] == pytest.approx(100.0)
    for c in ("People", "Car"):
        assert table.rows["ir"][c] == pytest.approx(_expected_ap(ir_found[c], totals[c]))
    assert table.rows["ir"]["mAP"] == pytest.approx(np.mean([table.rows["ir"]["People"], table.rows["ir"]["Car"]]))
    for source in table.rows:
        assert table.rows[source]["Bus"] is None  # not covered by the detector: not a misleading 0
        assert table.rows[source]["Lamp"] is None  # no ground truth
    assert fuser.calls == 5 and fuser.passes == [1] * 5  # fuse_batch 1 by default, whatever the detection batch

    out = tmp_path / "out"
    for name in ("table.csv", "table.md", "table.tex", "table.json", "ap_per_class.png", "ground_truth.json", "run.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "table.json").read_text())
    assert saved["classes"] == CLASSES
    assert set(saved["rows"]) == {"ir", "vi", "countmean"}
    assert set(saved["rows"]["vi"]) == set(CLASSES) | {"mAP"}
    assert saved["rows"]["vi"]["Bus"] is None and saved["not_covered"]["vi"] == ["Bus"]
    assert saved["no_ground_truth"] == ["Lamp"]
    gt = json.loads((out / "ground_truth.json").read_text())
    assert [c["name"] for c in gt["categories"]] == CLASSES
    for source in ("ir", "vi", "countmean"):
        dets = json.loads((out / "detections" / f"{source}.json").read_text())
        assert dets and set(dets[0]) == {"image_id", "category_id", "bbox", "score"}
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"]["pairs"] == 5 and run["dataset"]["split"] == "test"
    assert {"countmean: fuse", "countmean: detect", "ap"} <= set(run["timings_s"])
    assert run["resumed_sources"] == []
    md = (out / "table.md").read_text()
    assert "Bus: not covered" in md and "Lamp: no ground-truth box" in md
    assert cv2.imread(str(out / "ap_per_class.png")) is not None


def test_fusion_passes_are_cut_to_fuse_batch_and_grouped_by_size(tmp_path):
    data = synthetic_dataset(tmp_path / "data", n=5)
    fuser = CountingMean()
    source = parse_sources(["countmean"], fusers={"countmean": lambda: fuser})[0]
    got = [(len(chunk), len(images)) for chunk, images in _images(source, data.records, 5, 2, 1, tmp_path / "c1")]
    assert got == [(5, 5)] and fuser.passes == [2, 2, 1]
    one_by_one = [im for _, ims in _images(source, data.records, 5, 1, 0, tmp_path / "c2") for im in ims]
    by_two = [im for _, ims in _images(source, data.records, 5, 2, 0, tmp_path / "c3") for im in ims]
    assert all(np.array_equal(a, b) for a, b in zip(one_by_one, by_two)) and len(by_two) == 5
    # sizes interleaved: each pass holds one size, groups in order of first appearance
    sizes = {"a": (4, 4), "b": (8, 8), "c": (4, 4), "d": (4, 4), "e": (8, 8)}
    assert batches_by_size(list(sizes), sizes.__getitem__, 2) == [["a", "c"], ["d"], ["b", "e"]]
    assert batches_by_size([], sizes.__getitem__, 3) == []


def test_report_rows_equal_pycocotools_on_the_written_files(tmp_path):
    """The engine's AP (fusedet.eval.ap_engine through the report) against pycocotools run on the
    ground_truth.json and detections/*.json the run wrote."""
    from fusedet.eval.detection_ap import average_precision, mean_ap

    data = synthetic_dataset(tmp_path / "data", n=8)
    sources = parse_sources(["ir", "vi", "countmean"], fusers={"countmean": lambda: CountingMean()})
    report = _run(data, sources, ScriptedDetector(data), tmp_path / "out", tmp_path / "c")
    gt = json.loads((tmp_path / "out" / "ground_truth.json").read_text())
    for name in ("ir", "vi", "countmean"):
        dets = json.loads((tmp_path / "out" / "detections" / f"{name}.json").read_text())
        expected = average_precision(gt, dets, max_det=300)
        expected["Bus"] = None  # not covered by the scripted detector
        expected["mAP"] = mean_ap(expected, CLASSES)
        for column, value in report.rows[name].items():
            assert (value is None) == (expected[column] is None), (name, column)
            if value is not None:
                assert value == pytest.approx(expected[column], abs=1e-6), (name, column)


def test_rerun_resumes_from_saved_detections_and_fused_cache(tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    detector, fuser = ScriptedDetector(data), CountingMean()
    sources = parse_sources(["ir", "vi", "countmean"], fusers={"countmean": lambda: fuser})
    first = _run(data, sources, detector, tmp_path / "out", tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "fused").glob("countmean-*/0*-*.png"))) == 5
    calls = detector.calls

    second = _run(data, sources, detector, tmp_path / "out", tmp_path / "cache")
    assert detector.calls == calls and fuser.calls == 5  # nothing recomputed
    assert second.rows == first.rows
    assert json.loads((tmp_path / "out" / "run.json").read_text())["resumed_sources"] == ["ir", "vi", "countmean"]

    (tmp_path / "out" / "detections" / "countmean.json").unlink()  # as if interrupted during this source
    third = _run(data, sources, detector, tmp_path / "out", tmp_path / "cache")
    assert detector.calls == calls + 5 and fuser.calls == 5  # detected again, fused images read from the cache
    assert third.rows == first.rows

    time.sleep(0.01)  # a rewritten IR file (new content, new modification time): that pair is fused again
    ir = np.random.default_rng(99).integers(0, 256, (H, W), dtype=np.uint8)
    ir[0, 0] = 3
    cv2.imwrite(str(data.records[3].ir_path), ir)
    fourth = _run(data, sources, detector, tmp_path / "out", tmp_path / "cache")
    assert fuser.calls == 6 and detector.calls == calls + 5 + 10  # ir and countmean detected again, vi reused
    assert json.loads((tmp_path / "out" / "run.json").read_text())["resumed_sources"] == ["vi"]
    assert fourth.rows == first.rows  # pixel (0, 0) still names the pair

    changed = ScriptedDetector(data, tag="v2")  # other detector settings: nothing reused
    _run(data, sources, changed, tmp_path / "out", tmp_path / "cache")
    assert changed.calls == 15
    assert json.loads((tmp_path / "out" / "run.json").read_text())["resumed_sources"] == []


def test_folder_source_and_its_errors(tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    table = _run(data, parse_sources(f"vi,folder:other={tmp_path / 'data' / 'Vis'}"), ScriptedDetector(data), tmp_path / "o1", tmp_path / "c")
    assert table.rows["other"] == table.rows["vi"]

    partial = tmp_path / "partial"
    partial.mkdir()
    for stem in ("000", "002", "003"):
        (partial / f"{stem}.png").write_bytes((tmp_path / "data" / "Vis" / f"{stem}.png").read_bytes())
    with pytest.raises(InputError, match=r"no image for 2 stem\(s\): 001, 004"):
        _run(data, parse_sources(f"folder:m={partial}"), ScriptedDetector(data), tmp_path / "o2", tmp_path / "c")

    for stem in ("001", "004"):
        cv2.imwrite(str(partial / f"{stem}.png"), np.zeros((H + 2, W, 3), np.uint8))
    with pytest.raises(InputError, match=r"001.png is 64x50 but pair '001' is 64x48"):
        _run(data, parse_sources(f"folder:m={partial}"), ScriptedDetector(data), tmp_path / "o3", tmp_path / "c")


def test_pair_of_different_sizes_is_an_error(tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    cv2.imwrite(str(data.records[2].ir_path), np.zeros((H, W + 4), np.uint8))
    with pytest.raises(InputError, match="different sizes"):
        _run(data, parse_sources("mean"), ScriptedDetector(data), tmp_path / "o", tmp_path / "c")
    with pytest.raises(InputError, match="002.png is 68x48"):
        _run(data, parse_sources("ir"), ScriptedDetector(data), tmp_path / "o", tmp_path / "c")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("folder:nope", "folder:NAME=DIR"),
        ("folder:x=/no/such/dir", "not a folder"),
        ("dmnet:/some/ckpt.pt", "needs a name"),
        ("a b=mean", "bad source name"),
        ("ir,ir", "given twice"),
        ("nosuchfuser", "unknown fuser"),
        ("", "no sources"),
    ],
)
def test_bad_source_specs(spec, message):
    with pytest.raises(InputError, match=message):
        parse_sources(spec)


def test_source_specs():
    sources = parse_sources(["ir, vi", "m2=mean", "max"])
    assert [(s.name, s.kind) for s in sources] == [("ir", "ir"), ("vi", "vi"), ("m2", "fuser"), ("max", "fuser")]
    assert sources[2].fuser.name == "mean"


def test_empty_split_is_an_error(tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    with pytest.raises(InputError, match="has no pairs"):
        _run(data, parse_sources("vi"), ScriptedDetector(data), tmp_path / "o", tmp_path / "c", split="train")


def test_fusion_detector_fuse_and_detect(tmp_path):
    data = synthetic_dataset(tmp_path / "data", n=1)
    record = data.records[0]
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", COCO80)
    fd = FusionDetector(fuser="mean", weights=ckpt, device="cpu")
    ir = cv2.imread(str(record.ir_path), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(record.vis_path))[:, :, ::-1]
    from_paths = fd.fuse(record.ir_path, record.vis_path)
    from_uint8 = fd.fuse(ir, vis)
    expected = fuse_arrays(MeanFuser(), ir / np.float32(255), vis / np.float32(255))
    assert from_paths.shape == (H, W, 3) and from_paths.dtype == np.float32
    np.testing.assert_allclose(from_paths, expected, atol=1e-6)
    np.testing.assert_allclose(from_uint8, expected, atol=1e-6)
    with pytest.raises(InputError, match="IR is 64x40"):
        fd.fuse(ir[:40], vis)

    fused = fd.detect(ir, vis)
    assert len(fused) > 0 and set(fused.labels) <= set(COCO80)
    mapped = fd.detect(record.ir_path, record.vis_path, source="ir", classes=["People", "Car"])
    assert set(mapped.labels) <= {"People", "Car"}
    with pytest.raises(InputError, match="source must be"):
        fd.detect(ir, vis, source="thermal")


def test_fusion_detector_evaluate_with_default_sources_and_the_machine_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "machine"))
    data = synthetic_dataset(tmp_path / "data", n=3)
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", ["People", "Car", "Bus", "Lamp"])
    fuser = CountingMean()
    fd = FusionDetector(fuser=fuser, weights=ckpt, device="cpu", batch=2)
    table = fd.evaluate(data, out=tmp_path / "out")
    assert list(table.rows) == ["ir", "vi", "countmean"] and fuser.calls == 3
    assert table.not_covered == {}  # trained on the dataset's own class names
    assert len(list((tmp_path / "machine" / "fused").glob("countmean-*/*.png"))) == 3  # default cache: $FUSEDET_CACHE
    assert not (tmp_path / "out" / "cache").exists()
    for row in table.rows.values():
        assert row["Lamp"] is None and all(0.0 <= row[c] <= 100.0 for c in ("People", "Car", "Bus"))
    # another output folder and another subset of the sources: the fused images come from the machine's cache
    again = fd.evaluate(data, sources=["countmean"], out=tmp_path / "elsewhere")
    assert fuser.calls == 3 and again.rows["countmean"] == table.rows["countmean"]
    # --cache-dir still overrides it
    FusionDetector(fuser=fuser, weights=ckpt, device="cpu", batch=2, cache_dir=tmp_path / "own").evaluate(
        data, sources=["countmean"], out=tmp_path / "third")
    assert fuser.calls == 6 and len(list((tmp_path / "own" / "fused").glob("countmean-*/*.png"))) == 3


def test_table_with_paper_rows_renders_and_never_ranks_them():
    classes = ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]
    rows = {
        "ir": {"People": 10.0, "Car": 20.0, "Bus": 30.0, "Motorcycle": 5.0, "Truck": 1.0, "Lamp": None, "mAP": 13.2},
        "dmnet": {"People": 12.0, "Car": 19.0, "Bus": 31.0, "Motorcycle": 6.0, "Truck": 2.0, "Lamp": None, "mAP": 14.0},
    }
    from fusedet.paper_results import PAPER_SOURCE, paper_rows

    reference = paper_rows(classes)
    assert len(reference) == len(TABLE_VII) and reference["DMNet (paper)"]["Truck"] == 35.73
    assert reference["IR (paper)"]["mAP"] == 27.00
    assert paper_rows(["person", "car"]) == {}
    table = DetectionTable(classes, rows, {"ir": ["Lamp"], "dmnet": ["Lamp"]}, [], reference, PAPER_SOURCE)
    result = table.result_table()
    assert result.ranks("People") == {"dmnet": 1, "ir": 2}  # 51.79 of the paper row is not ranked
    md = table.to_markdown()
    assert "| DMNet (paper) | 51.79 |" in md and "| dmnet | **12.00** |" in md
    assert "Lamp: not covered by the detector " in md and "Rows marked (paper)" in md
    data = json.loads(table.to_json())
    assert set(data["rows"]) == {"ir", "dmnet"} and "DMNet (paper)" in data["paper_rows"]
    assert data["rows"]["ir"]["Lamp"] is None
    assert DetectionTable.from_dict(data).rows == table.rows
    assert "\\textbf{12.00}" in table.to_latex() and "DMNet (paper)" in table.to_latex()
    assert table.to_csv().splitlines()[1] == "ir,10.00,20.00,30.00,5.00,1.00,,13.20"
