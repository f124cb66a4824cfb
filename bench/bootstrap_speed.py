"""Speed of the paired bootstrap: 1000 resamples of 1000 test images, 5 sources x 6 classes, 300
detections per image and source (1.5 M detections), as a fusedet report computes it: one matching
pass per source (fusedet.eval.coco_match, every IoU threshold and area range), then per resample
only array sums (fusedet.eval.bootstrap.paired_bootstrap on AP@0.5), then the intervals and the
differences to a baseline.

    python bench/bootstrap_speed.py                      # the goal's case
    python bench/bootstrap_speed.py --images 200 --resamples 200 --metric ap50_95

Synthetic data, seeded: per image about 12 ground-truth boxes of 6 classes (small to large), per
source jittered copies of some of them (a source-dependent share found, some twice), the rest of
the 300 detections clutter with lower scores, as a detector at confidence 0.001 returns them.
Goal (5 s on 2 CPU cores, matching included) printed with the measured figure; run it on an
otherwise idle machine (`uptime` is printed) with the BLAS threads the machine has.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

GOAL_SECONDS = 5.0
CLASSES = ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]


def synthetic(n_images: int, n_sources: int, per_image: int, seed: int = 0):
    """COCO ground truth and, per source, COCO results as arrays (what detection_arrays makes)."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i:05d}.png", "stem": f"{i:05d}"} for i in range(n_images)]
    n_gt = rng.poisson(12, n_images)
    img = np.repeat(np.arange(n_images), n_gt)
    cls = rng.integers(0, len(CLASSES), len(img))
    size = np.exp(rng.uniform(np.log(12), np.log(200), (len(img), 2)))
    xy = rng.uniform(0, 1024 - size)
    boxes = np.round(np.concatenate([xy, size], axis=1), 2)
    annotations = [
        {"id": j + 1, "image_id": int(img[j]) + 1, "category_id": int(cls[j]) + 1, "bbox": boxes[j].tolist(),
         "area": float(round(boxes[j, 2] * boxes[j, 3], 3)), "iscrowd": 0}
        for j in range(len(img))
    ]
    gt = {"images": images, "annotations": annotations, "categories": [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]}
    sources = {}
    for s in range(n_sources):
        found = rng.uniform(size=len(img)) < 0.55 + 0.07 * s
        twice = found & (rng.uniform(size=len(img)) < 0.3)
        hit = np.concatenate([np.flatnonzero(found), np.flatnonzero(twice)])
        jitter = rng.normal(0, 0.06, (len(hit), 4)) * np.repeat(boxes[hit, 2:], 2, axis=1)
        hit_boxes = boxes[hit] + jitter
        hit_boxes[:, 2:] = np.maximum(hit_boxes[:, 2:], 2)
        hit_img, hit_cls = img[hit], cls[hit]
        hit_score = rng.beta(5, 2, len(hit))
        # clutter up to per_image detections per image
        n_clutter = np.maximum(per_image - np.bincount(hit_img, minlength=n_images), 0)
        c_img = np.repeat(np.arange(n_images), n_clutter)
        c_size = np.exp(rng.uniform(np.log(8), np.log(300), (len(c_img), 2)))
        c_boxes = np.concatenate([rng.uniform(0, 1024 - c_size), c_size], axis=1)
        det_img = np.concatenate([hit_img, c_img])
        sources[f"source{s}"] = {
            "image_id": det_img + 1,
            "category_id": np.concatenate([hit_cls, rng.integers(0, len(CLASSES), len(c_img))]) + 1,
            "bbox": np.round(np.concatenate([hit_boxes, c_boxes]), 2),
            "score": np.round(np.concatenate([hit_score, rng.beta(1, 6, len(c_img))]), 6),
        }
    return gt, sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=5)
    parser.add_argument("--detections", type=int, default=300, help="detections per image and source")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--metric", default="ap50", choices=["ap50", "ap50_95"])
    args = parser.parse_args()

    from fusedet.eval.bootstrap import paired_bootstrap, paired_difference, percentile_interval, scores
    from fusedet.eval.coco_match import index_ground_truth, match_detections

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    gt, sources = synthetic(args.images, args.sources, args.detections)
    n_det = sum(len(s["score"]) for s in sources.values())
    print(f"{args.images} images, {len(gt['annotations'])} ground-truth boxes, {args.sources} sources x {len(CLASSES)} classes, "
          f"{n_det} detections")

    c0, t0 = time.process_time(), time.perf_counter()
    index = index_ground_truth(gt)
    records = {name: match_detections(index, dets, max_det=args.detections) for name, dets in sources.items()}
    t1, c1 = time.perf_counter(), time.process_time()
    samples = paired_bootstrap(records, args.metric, resamples=args.resamples, seed=0)
    t2, c2 = time.perf_counter(), time.process_time()
    full = {name: scores(rec, args.metric, None)[0] for name, rec in records.items()}
    base = "source0"
    for name, values in samples.items():
        percentile_interval(values)
        if name != base:
            paired_difference(values, samples[base], full[name], full[base])
    t3, c3 = time.perf_counter(), time.process_time()

    total = t3 - t0
    print(f"matching (10 IoU thresholds x 4 area ranges): {t1 - t0:.2f} s ({c1 - c0:.2f} CPU-s)")
    print(f"{args.resamples} paired resamples ({args.metric}): {t2 - t1:.2f} s ({c2 - c1:.2f} CPU-s)")
    print(f"intervals and differences: {t3 - t2:.2f} s ({c3 - c2:.2f} CPU-s)")
    mAP = {name: round(float(v[-1]), 2) for name, v in full.items()}
    print(f"full-set mAP {mAP}")
    print(f"CPU time of all threads {c3 - c0:.2f} s; load average now {os.getloadavg()[0]:.2f}")
    print(f"total {total:.2f} s (goal <= {GOAL_SECONDS:.0f} s on 2 cores): {'met' if total <= GOAL_SECONDS else 'NOT met'}")


if __name__ == "__main__":
    main()
