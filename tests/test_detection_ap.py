"""AP@0.5 through pycocotools (fusedet.eval.detection_ap) against known values and an independent implementation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ap_reference import reference_ap

from fusedet.datasets.records import DetectionRecord
from fusedet.detector import Detections
from fusedet.eval.detection_ap import average_precision, coco_detections, coco_ground_truth, mean_ap

CLASSES = ["People", "Car", "Lamp"]


def _record(stem: str, boxes, labels, w: int = 200, h: int = 100) -> DetectionRecord:
    return DetectionRecord(stem, Path(f"ir/{stem}.png"), Path(f"vi/{stem}.png"), w, h, np.array(boxes, np.float32), tuple(labels), "test")


def _gt_two_images() -> dict:
    records = [
        _record("a", [[10, 10, 30, 50], [100, 20, 150, 60], [40, 40, 60, 90]], ["People", "Car", "People"]),
        _record("b", [[5, 5, 25, 45], [120, 10, 190, 70]], ["People", "Car"]),
    ]
    return coco_ground_truth(records, CLASSES)


def _det(image_id: int, box_xyxy, label: str, score: float) -> tuple[int, Detections]:
    return image_id, Detections(np.array([box_xyxy], np.float32), np.array([score], np.float32), (label,))


def _gt_boxes(gt: dict):
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        yield ann["image_id"], [x, y, x + w, y + h], CLASSES[ann["category_id"] - 1]


def test_ground_truth_json_layout():
    gt = _gt_two_images()
    assert [c["name"] for c in gt["categories"]] == CLASSES
    assert [c["id"] for c in gt["categories"]] == [1, 2, 3]
    assert [im["id"] for im in gt["images"]] == [1, 2]
    assert gt["images"][0]["width"] == 200 and gt["images"][0]["height"] == 100
    first = gt["annotations"][0]
    assert first["bbox"] == [10.0, 10.0, 20.0, 40.0] and first["area"] == 800.0 and first["iscrowd"] == 0
    assert len(gt["annotations"]) == 5


def test_perfect_detections_give_100_and_no_ground_truth_gives_none():
    gt = _gt_two_images()
    dets = coco_detections([_det(i, box, label, 0.9) for i, box, label in _gt_boxes(gt)], CLASSES)
    ap = average_precision(gt, dets)
    assert ap["People"] == pytest.approx(100.0)
    assert ap["Car"] == pytest.approx(100.0)
    assert ap["Lamp"] is None  # no Lamp in the ground truth: undefined, not 0
    assert mean_ap(ap) == pytest.approx(100.0)
    assert reference_ap(gt, dets) == pytest.approx(ap)


def test_half_recall_and_ranked_false_positive_give_known_values():
    gt = _gt_two_images()
    people = [(i, box) for i, box, label in _gt_boxes(gt) if label == "People"]  # 3 people
    cars = [(i, box) for i, box, label in _gt_boxes(gt) if label == "Car"]  # 2 cars
    pairs = [
        # People: one of three found -> recall 1/3 at precision 1: 34 of 101 recall points (0 .. 0.33)
        _det(people[0][0], people[0][1], "People", 0.9),
        # Car: a false positive ranked first, then both cars: precision 0, 1/2, 2/3 -> envelope 2/3 everywhere
        _det(1, [0, 0, 5, 5], "Car", 0.95),
        _det(cars[0][0], cars[0][1], "Car", 0.8),
        _det(cars[1][0], cars[1][1], "Car", 0.7),
    ]
    dets = coco_detections(pairs, CLASSES)
    ap = average_precision(gt, dets)
    assert ap["People"] == pytest.approx(100.0 * 34 / 101)
    assert ap["Car"] == pytest.approx(100.0 * 2 / 3, abs=1e-6)
    assert mean_ap(ap) == pytest.approx((100.0 * 34 / 101 + 200.0 / 3) / 2, abs=1e-6)


def test_iou_threshold_is_half_and_duplicates_are_false_positives():
    gt = coco_ground_truth([_record("a", [[0, 0, 100, 100]], ["Car"])], CLASSES)
    # IoU 0.49 (box shifted) misses; IoU exactly 0.5 hits. Box [0,0,50,100] vs [0,0,100,100] has IoU 0.5.
    assert average_precision(gt, coco_detections([_det(1, [0, 0, 49, 100], "Car", 0.9)], CLASSES))["Car"] == 0.0
    assert average_precision(gt, coco_detections([_det(1, [0, 0, 50, 100], "Car", 0.9)], CLASSES))["Car"] == pytest.approx(100.0)
    # a duplicate with a higher score than the hit: precision 1/2 at full recall -> AP 50
    dup = coco_detections([_det(1, [0, 0, 60, 100], "Car", 0.9), _det(1, [0, 0, 100, 100], "Car", 0.5)], CLASSES)
    assert average_precision(gt, dup)["Car"] == pytest.approx(100.0)  # the first claims the box, the second is FP after it
    dup_first_wrong = coco_detections([_det(1, [60, 0, 100, 100], "Car", 0.9), _det(1, [0, 0, 100, 100], "Car", 0.5)], CLASSES)
    assert average_precision(gt, dup_first_wrong)["Car"] == pytest.approx(50.0)


def test_no_detections_gives_zero_for_classes_with_ground_truth():
    gt = _gt_two_images()
    assert average_precision(gt, []) == {"People": 0.0, "Car": 0.0, "Lamp": None}
    assert mean_ap({"People": 0.0, "Car": 20.0, "Lamp": None}) == 10.0
    assert mean_ap({"Lamp": None}) is None


def test_detections_for_unknown_image_are_rejected():
    gt = _gt_two_images()
    with pytest.raises(AssertionError):
        average_precision(gt, coco_detections([_det(99, [0, 0, 10, 10], "Car", 0.5)], CLASSES))


def _random_case(rng: np.random.Generator, n_images: int = 40):
    records, pairs = [], []
    for i in range(n_images):
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, 300, size=(n, 2))
        wh = rng.uniform(8, 80, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = [CLASSES[k] for k in rng.integers(0, 2, size=n)]  # Lamp never in ground truth
        records.append(_record(f"{i:03d}", boxes, labels, w=400, h=400))
        # detections: jittered copies of the truth (a quarter with a random class) plus clutter scored lower on average
        jitter = boxes + rng.normal(0, 4, size=boxes.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)  # a detector's boxes are never inverted
        clutter_xy = rng.uniform(0, 300, size=(int(rng.integers(0, 12)), 2))
        clutter = np.concatenate([clutter_xy, clutter_xy + rng.uniform(8, 80, size=clutter_xy.shape)], axis=1)
        det_boxes = np.concatenate([jitter, clutter]).astype(np.float32)
        wrong = rng.uniform(size=n) < 0.25
        det_labels = [CLASSES[int(rng.integers(0, 3))] if w else label for w, label in zip(wrong, labels)]
        det_labels += [CLASSES[k] for k in rng.integers(0, 3, size=len(clutter))]
        scores = np.concatenate([rng.uniform(0.2, 1.0, n), rng.uniform(0.0, 0.8, len(clutter))]).astype(np.float32)
        pairs.append((i + 1, Detections(det_boxes, scores, tuple(det_labels))))
    return coco_ground_truth(records, CLASSES), coco_detections(pairs, CLASSES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pycocotools_agrees_with_independent_ap_on_random_files(tmp_path, seed):
    gt, dets = _random_case(np.random.default_rng(seed))
    gt_file, det_file = tmp_path / "gt.json", tmp_path / "det.json"
    gt_file.write_text(json.dumps(gt))
    det_file.write_text(json.dumps(dets))
    ours, ref = average_precision(gt_file, det_file), reference_ap(gt_file, det_file)
    assert ours["Lamp"] is None and ref["Lamp"] is None
    for name in ("People", "Car"):
        assert 5.0 < ours[name] < 95.0  # a non-trivial case
        assert abs(ours[name] - ref[name]) < 0.1, (name, ours[name], ref[name])


def test_command_line_check_ends_bad_input_with_one_error_line(tmp_path, capsys):
    """``python -m fusedet.eval.detection_ap GT DETS``: AP as json; a missing or malformed file, or
    detections of images the ground truth does not hold (files of two runs), end with one error line."""
    from fusedet.eval.detection_ap import main

    gt = {"images": [{"id": 1, "width": 10, "height": 10}], "categories": [{"id": 1, "name": "car"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    (tmp_path / "other.json").write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    (tmp_path / "broken.json").write_text("{")
    main([str(tmp_path / "gt.json"), str(tmp_path / "dets.json")])
    assert json.loads(capsys.readouterr().out) == {"car": pytest.approx(100.0)}
    for args, message in [
        (["missing.json", "dets.json"], "missing.json: No such file or directory"),
        (["broken.json", "dets.json"], "broken.json: not a JSON file"),
        (["gt.json", "other.json"], "detection refers to image id 7, which the ground truth does not have"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path / a) for a in args])
        assert str(exit_info.value).startswith("error: ") and message in str(exit_info.value)
