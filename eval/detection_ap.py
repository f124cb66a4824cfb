"""Detection AP the way the DMNet paper's Table VII reports it: per-class AP at IoU 0.5 and their
mean (mAP), computed by pycocotools on COCO-format files.

Files:
- ground truth (`coco_ground_truth`): images with id 1..N in record order (file_name = the visible
  image's name, plus its `stem`), categories with id 1..K in the dataset's class order and name =
  class name, annotations with bbox [x, y, w, h] in pixels, area = w * h, iscrowd 0;
- detections (`coco_detections`): the COCO results format, a list of
  {image_id, category_id, bbox [x, y, w, h], score}.

AP (`average_precision`) is COCO's: detections sorted by score, each matched greedily to the
unmatched ground-truth box of its class with the highest IoU >= 0.5, precision made monotone and
sampled at 101 recall points (0, 0.01, ..., 1). Only IoU 0.5 and the "all" area range are
evaluated, and at most `max_det` detections per image are kept (300, the detector's own cap, so
COCO's usual 100 does not cut a second time). A class without a single ground-truth box in the
split has no AP (None, printed "-"): it is left out of the mAP, never counted as 0. pycocotools'
prints are silenced.

From the shell: ``python -m fusedet.eval.detection_ap ground_truth.json detections/SOURCE.json``
prints the per-class AP (json) of one detections file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

APResult = dict[str, float | None]


def coco_ground_truth(records: Sequence, classes: Sequence[str]) -> dict:
    """COCO ground truth for `records` (DetectionRecord-like: stem, vis_path, width, height, boxes,
    labels, ignore_boxes, ignore_labels). Boxes are pixel xyxy; COCO's bbox is
    [x, y, w, h] and `area` is w * h. Ignore regions (KAIST's people, cyclist and person? boxes)
    become ``iscrowd: 1`` annotations of their class: pycocotools (and fusedet.eval.ap_engine)
    neither count them as objects to find nor count detections on them as false positives.
    Raises ValueError for a label outside `classes`."""
    class_id = {name: i + 1 for i, name in enumerate(classes)}
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": Path(record.vis_path).name,
                "stem": record.stem,
                "width": int(record.width),
                "height": int(record.height),
            }
        )
        objects = [(b, lab, 0) for b, lab in zip(np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4), record.labels)]
        ignore = np.asarray(record.ignore_boxes, dtype=np.float64).reshape(-1, 4)
        objects += [(b, lab, 1) for b, lab in zip(ignore, record.ignore_labels)]
        for box, label, crowd in objects:
            if label not in class_id:
                raise ValueError(f"{record.stem}: label {label!r} is not one of the classes {list(classes)}")
            x1, y1, x2, y2 = (float(v) for v in box)
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_id[label],
                    "bbox": [round(x1, 3), round(y1, 3), round(w, 3), round(h, 3)],
                    "area": round(w * h, 3),
                    "iscrowd": crowd,
                }
            )
    categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)]
    return {"info": {"description": "fusedet ground truth"}, "images": images, "annotations": annotations, "categories": categories}


def coco_detections(per_image: Iterable[tuple[int, object]], classes: Sequence[str]) -> list[dict]:
    """COCO results from (image_id, detections) pairs; detections have .boxes (xyxy px), .scores, .labels.

    Boxes are rounded to 0.01 px and scores to 1e-6 (the json files stay about 85 bytes a box)."""
    class_id = {name: i + 1 for i, name in enumerate(classes)}
    out: list[dict] = []
    for image_id, det in per_image:
        boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
        if not len(boxes):
            continue
        xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), 2).tolist()
        scores = np.round(np.asarray(det.scores, dtype=np.float64), 6).tolist()
        image = int(image_id)
        out.extend(
            {"image_id": image, "category_id": class_id[label], "bbox": box, "score": score}
            for box, score, label in zip(xywh, scores, det.labels)
        )
    return out


def load_json(value: dict | list | str | os.PathLike) -> dict | list:
    """A parsed json value, or the content of the json file `value` names."""
    if isinstance(value, (dict, list)):
        return value
    with open(value, encoding="utf-8") as handle:
        return json.load(handle)


def average_precision(
    ground_truth: dict | str | os.PathLike,
    detections: list | str | os.PathLike,
    *,
    iou: float = 0.5,
    max_det: int = 300,
) -> APResult:
    """Per-class AP in percent (category name -> AP, None when the class has no ground truth)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_data = load_json(ground_truth)
    dets = [dict(d) for d in load_json(detections)]  # loadRes writes into the dicts it is given
    categories = sorted(gt_data["categories"], key=lambda c: c["id"])
    with_gt = {a["category_id"] for a in gt_data["annotations"]}
    if not dets:
        return {c["name"]: (0.0 if c["id"] in with_gt else None) for c in categories}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_data
        gt.createIndex()
        dt = gt.loadRes(dets)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.iouThrs = np.array([iou])
        evaluator.params.maxDets = [int(max_det)]
        evaluator.params.areaRng = [[0.0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # T x R x K x A x M
    cat_index = {cat_id: k for k, cat_id in enumerate(evaluator.params.catIds)}
    result: APResult = {}
    for cat in categories:
        curve = precision[0, :, cat_index[cat["id"]], 0, 0]
        result[cat["name"]] = float(100.0 * curve.mean()) if cat["id"] in with_gt and (curve > -1).all() else None
    return result


def mean_ap(per_class: Mapping[str, float | None], classes: Iterable[str] | None = None) -> float | None:
    """Mean of the defined APs among `classes` (default: all); None when none is defined."""
    names = list(per_class) if classes is None else list(classes)
    values = [per_class[c] for c in names if per_class.get(c) is not None and not math.isnan(per_class[c])]
    return float(np.mean(values)) if values else None


def _read_or_exit(path: str) -> dict | list:
    try:
        return load_json(path)
    except OSError as err:
        sys.exit(f"error: {path}: {err.strerror or err}")
    except ValueError as err:  # not json, or not UTF-8
        sys.exit(f"error: {path}: not a JSON file ({err})")


def main(argv: Sequence[str] | None = None) -> None:
    """Print per-class AP (json) of a COCO detections file against a COCO ground-truth file; a missing
    or malformed file, or detections of images the ground truth does not hold (files of two different
    runs), end with one ``error:`` line and exit status 1."""
    parser = argparse.ArgumentParser(description="Per-class AP@IoU (COCO 101-point, pycocotools), in percent.")
    parser.add_argument("ground_truth")
    parser.add_argument("detections")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--max-det", type=int, default=300)
    args = parser.parse_args(argv)
    gt, dets = _read_or_exit(args.ground_truth), _read_or_exit(args.detections)
    from fusedet.errors import InputError
    from fusedet.eval.coco_match import index_ground_truth, match_detections

    try:  # the AP engine's checks: COCO shapes, and detections only of images the ground truth holds
        match_detections(index_ground_truth(gt), dets, max_det=args.max_det)
    except InputError as err:
        sys.exit(f"error: {args.ground_truth}, {args.detections}: {err} (are the two files from one run?)")
    print(json.dumps(average_precision(gt, dets, iou=args.iou, max_det=args.max_det)))


if __name__ == "__main__":
    main()
