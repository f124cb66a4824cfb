"""An AP@0.5 written independently of pycocotools, to check fusedet.eval.detection_ap against it.

COCO's definition, re-implemented from its description (Lin et al., "Microsoft COCO", and the
cocodataset.org evaluation page): per class, each image's detections in descending score order
claim the not-yet-claimed ground-truth box with the highest IoU >= the threshold (a claim makes a
true positive, no claim a false positive); all detections of the class are then ranked by score,
precision is made non-increasing from the right, and AP is its mean over the 101 recall points
0, 0.01, ..., 1 (precision 0 beyond the largest recall reached). Boxes are [x, y, w, h], IoU without
the +1 pixel convention. Ties in score keep image order, then in-image order (stable sorts).
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np


def _iou(a: list[float], b: list[float]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def reference_ap(gt_path_or_data, det_path_or_data, iou_threshold: float = 0.5, max_det: int = 300) -> dict[str, float | None]:
    gt = _load(gt_path_or_data)
    dets = _load(det_path_or_data)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    image_order = {img["id"]: i for i, img in enumerate(sorted(gt["images"], key=lambda im: im["id"]))}
    gts: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    for ann in gt["annotations"]:
        gts[(ann["category_id"], ann["image_id"])].append(ann["bbox"])
    by_key: dict[tuple[int, int], list[tuple[int, dict]]] = defaultdict(list)
    for index, det in enumerate(dets):
        by_key[(det["category_id"], det["image_id"])].append((index, det))

    result: dict[str, float | None] = {}
    for cat_id, name in names.items():
        n_gt = sum(len(v) for (c, _), v in gts.items() if c == cat_id)
        if n_gt == 0:
            result[name] = None
            continue
        ranked: list[tuple[float, int, int, bool]] = []  # (score, image order, rank in image, is TP)
        for (c, image_id), items in by_key.items():
            if c != cat_id:
                continue
            items = sorted(items, key=lambda item: -item[1]["score"])[:max_det]  # sorted() is stable
            boxes = gts.get((cat_id, image_id), [])
            taken = [False] * len(boxes)
            for rank, (_, det) in enumerate(items):
                best, best_iou = -1, iou_threshold
                for g, box in enumerate(boxes):
                    if taken[g]:
                        continue
                    overlap = _iou(det["bbox"], box)
                    if overlap >= best_iou:
                        best, best_iou = g, overlap
                if best >= 0:
                    taken[best] = True
                ranked.append((det["score"], image_order[image_id], rank, best >= 0))
        ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
        hits = np.array([r[3] for r in ranked], dtype=float)
        tp = np.cumsum(hits)
        fp = np.cumsum(1.0 - hits)
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, np.finfo(float).tiny)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        samples = []
        for r in np.linspace(0.0, 1.0, 101):
            reached = np.nonzero(recall >= r)[0]
            samples.append(envelope[reached[0]] if len(reached) else 0.0)
        result[name] = 100.0 * float(np.mean(samples))
    return result


def _load(value):
    if isinstance(value, (dict, list)):
        return value
    with open(value, encoding="utf-8") as handle:
        return json.load(handle)
