"""A synthetic evaluation for the report tests: fusedet's COCO ground truth of random records and, per
source, detections that find a source-dependent share of the boxes (jittered), plus clutter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusedet.datasets.records import DetectionRecord
from fusedet.detector import Detections
from fusedet.eval.detection_ap import coco_detections, coco_ground_truth

CLASSES = ["People", "Car", "Lamp"]
FOUND = {"ir": 0.45, "vi": 0.6, "fused": 0.8, "mean": 0.7}


def synthetic_evaluation(n_images: int = 60, seed: int = 0, sources=("ir", "vi", "fused"), stems=None):
    """(ground truth dict, {source: COCO results}, records)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n_images):
        n = int(rng.integers(1, 7))
        xy = rng.uniform(0, 250, (n, 2))
        wh = np.exp(rng.uniform(np.log(10), np.log(140), (n, 2)))
        boxes = np.round(np.concatenate([xy, xy + wh], axis=1), 1)
        labels = tuple(CLASSES[k] for k in rng.choice(3, n, p=[0.5, 0.4, 0.1]))
        stem = stems[i] if stems else f"{i:05d}"
        records.append(DetectionRecord(stem, Path(f"ir/{stem}.png"), Path(f"vi/{stem}.png"), 400, 400, boxes.astype(np.float32), labels, "test"))
    gt = coco_ground_truth(records, CLASSES)
    dets = {}
    for name in sources:
        share = FOUND.get(name, 0.6)
        pairs = []
        for i, r in enumerate(records):
            hit = rng.uniform(size=len(r.labels)) < share
            boxes = r.boxes[hit] + rng.normal(0, 3, (int(hit.sum()), 4))
            labels = [lab for lab, h in zip(r.labels, hit) if h]
            n_clutter = int(rng.integers(0, 6))
            cxy = rng.uniform(0, 300, (n_clutter, 2))
            clutter = np.concatenate([cxy, cxy + rng.uniform(10, 90, (n_clutter, 2))], axis=1)
            scores = np.concatenate([rng.uniform(0.3, 1.0, len(labels)), rng.uniform(0.0, 0.7, n_clutter)])
            labels += [CLASSES[k] for k in rng.integers(0, 3, n_clutter)]
            pairs.append((i + 1, Detections(np.concatenate([boxes, clutter]).astype(np.float32), scores.astype(np.float32), tuple(labels))))
        dets[name] = coco_detections(pairs, CLASSES)
    return gt, dets, records
