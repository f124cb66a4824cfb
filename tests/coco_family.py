"""pycocotools as the reference of the AP engine's tests: per-class AP@0.5, AP@[.5:.95] and
AP_S/M/L (COCO area ranges, IoU .50:.95) in percent, NaN where pycocotools has no value (-1), and
random COCO ground truth / detections with the hard cases (crowd boxes, areas on the range bounds,
IoU and score ties, more detections than max_det)."""

from __future__ import annotations

import contextlib
import io

import numpy as np

FAMILY = {"ap50": ([0], 0), "ap50_95": (list(range(10)), 0), "ap_small": (list(range(10)), 1),
          "ap_medium": (list(range(10)), 2), "ap_large": (list(range(10)), 3)}


def pycocotools_family(gt: dict, dets: list[dict], max_det: int = 300) -> dict[str, np.ndarray]:
    """metric -> (K,) per-class AP in percent by pycocotools (categories in id order)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    k = len(gt["categories"])
    if not dets:
        return {m: np.full(k, np.nan) for m in FAMILY}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes([dict(d) for d in dets]), "bbox")
        evaluator.params.maxDets = [max_det]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # T x R x K x A x M
    out = {}
    for name, (thresholds, area) in FAMILY.items():
        values = []
        for c in range(precision.shape[2]):
            p = precision[thresholds, :, c, area, 0]
            values.append(100.0 * float(p.mean()) if (p > -1).all() else np.nan)
        out[name] = np.array(values)
    return out


def random_coco(rng: np.random.Generator, n_images: int = 30, n_classes: int = 3, crowd: float = 0.1,
                ties: bool = True) -> tuple[dict, list[dict]]:
    """Ground truth of small / medium / large boxes (integer pixels, a share of crowd boxes, some
    areas exactly on 32^2 and 96^2, some `area` fields unlike w * h) and detections: jittered copies
    (some duplicated, some of another class) plus clutter; scores rounded to 0.01 when `ties`."""
    images, annotations, dets = [], [], []
    for i in range(n_images):
        image_id = 3 * i + 7  # ids need not be 1..N
        images.append({"id": image_id, "file_name": f"img{i:03d}.png", "stem": f"img{i:03d}"})
        for _ in range(int(rng.integers(0, 9))):
            kind = int(rng.integers(0, 4))
            if kind == 3:
                w, h = (32.0, 32.0) if rng.uniform() < 0.5 else (96.0, 96.0)  # area exactly on a bound
            else:
                w, h = np.round([rng.uniform(4, 30, 2), rng.uniform(20, 110, 2), rng.uniform(80, 220, 2)][kind])
            x, y = np.round(rng.uniform(0, 300, 2))
            area = float(w * h) if rng.uniform() < 0.8 else float(w * h * rng.choice([0.5, 1.3]))
            cls = int(rng.integers(1, n_classes + 1))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls,
                                "bbox": [float(x), float(y), float(w), float(h)], "area": area, "iscrowd": int(rng.uniform() < crowd)})
            for _ in range(int(rng.integers(0, 4))):
                jitter = np.round(rng.normal(0, 3, 4)) if ties else rng.normal(0, 3, 4)
                box = [float(x + jitter[0]), float(y + jitter[1]), float(max(1.0, w + jitter[2])), float(max(1.0, h + jitter[3]))]
                label = cls if rng.uniform() < 0.8 else int(rng.integers(1, n_classes + 1))
                dets.append({"image_id": image_id, "category_id": label, "bbox": box, "score": _score(rng, ties)})
        for _ in range(int(rng.integers(0, 15))):
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(3, 150, 2)
            dets.append({"image_id": image_id, "category_id": int(rng.integers(1, n_classes + 1)),
                         "bbox": [float(x), float(y), float(w), float(h)], "score": _score(rng, ties)})
    categories = [{"id": c + 1, "name": f"class{c}"} for c in range(n_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, dets


def _score(rng: np.random.Generator, ties: bool) -> float:
    return float(np.round(rng.uniform(), 2)) if ties else float(rng.uniform())
