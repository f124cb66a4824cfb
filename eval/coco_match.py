"""COCO's per-image matching of detections to ground truth, done once and kept as match records.

This is pycocotools' bounding-box evaluation (``cocoeval.py``: ``COCOeval._prepare``,
``computeIoU``, ``evaluateImg``; IoU from ``maskApi.c``: ``bbIou``) re-implemented on arrays, so
that AP of any subset or weighted resample of the images can be computed afterwards from the
records alone (:mod:`fusedet.eval.ap_engine`). The rules, all of pycocotools':

- per image and class, detections in descending score order (stable: ties keep the order of the
  detections list), at most `max_det` of them;
- IoU of boxes ``[x, y, w, h]`` in double precision exactly as ``bbIou`` computes it; for a crowd
  ground-truth box the union is the detection's area;
- ground truth is *ignored* in an area range when it is a crowd box (``iscrowd``) or its ``area``
  field lies outside the range; the 10 IoU thresholds 0.50:0.05:0.95 and the 4 area ranges
  all / small (< 32^2) / medium (32^2..96^2) / large (> 96^2) are matched separately;
- greedy matching: each detection in turn takes, among the ground-truth boxes not yet taken (crowd
  boxes are never taken) with IoU >= the threshold, a non-ignored one with the highest IoU, else an
  ignored one with the highest IoU (ties: the later box in the image's annotation order);
- a detection matched to a non-ignored box is a true positive, matched to an ignored box it is
  ignored; an unmatched one is a false positive, unless its own area (w * h) is outside the range
  (then ignored).

Match records keep, per class, the kept detections in the order pycocotools' ``accumulate`` ranks
them (score descending, then image, then rank within the image), with their image and a true- and
false-positive flag per threshold and area range, plus the number of non-ignored ground-truth boxes
per area range, image and class. Images are indexed in ascending image-id order, as pycocotools
sorts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusedet.errors import InputError

# pycocotools' Params.setDetParams, written the same way so the floats are the same.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0**2, 1e5**2),
    ("small", 0.0**2, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, 1e5**2),
)
AREA_LABELS = tuple(a[0] for a in AREA_RANGES)

_PAIR_CHUNK = 2_000_000  # (detection, ground-truth box) pairs whose IoU is computed at once


@dataclass(frozen=True)
class GroundTruthIndex:
    """A COCO ground truth as arrays, indexed once and shared by every source's matching.

    Images are in ascending id order (index i <-> ``image_ids[i]``), classes in ascending category-id
    order. Annotations are sorted by (image, class) and keep their file order within an (image, class)
    cell; cell ``g = image * K + class`` holds annotations ``starts[g]:starts[g + 1]``.
    """

    image_ids: np.ndarray  # (I,) int64, ascending
    stems: tuple[str, ...]  # (I,) image stem ("stem" field, else file_name without extension)
    category_ids: np.ndarray  # (K,) int64, ascending
    classes: tuple[str, ...]  # (K,) category names
    boxes: np.ndarray  # (N, 4) float64 [x, y, w, h]
    areas: np.ndarray  # (N,) float64, the annotations' `area` field
    crowd: np.ndarray  # (N,) bool
    starts: np.ndarray  # (I * K + 1,) int64 cell offsets into the annotation arrays
    n_regular: np.ndarray  # (A, I, K) int64: non-ignored boxes per area range, image, class

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def boxes_per_class(self) -> np.ndarray:
        """(K,) non-crowd ground-truth boxes per class over all images."""
        return self.n_regular[0].sum(axis=0)


def index_ground_truth(ground_truth: Mapping) -> GroundTruthIndex:
    """Index a COCO ground-truth dict (``images``, ``annotations``, ``categories``).

    Raises InputError for an annotation of an unknown image or category, or without a 4-number
    ``bbox`` or an ``area``."""
    try:
        images = sorted(ground_truth["images"], key=lambda im: im["id"])
        categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
        annotations = list(ground_truth["annotations"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"ground truth is not COCO json (images, annotations, categories): missing {exc}") from None
    image_ids = np.array([im["id"] for im in images], dtype=np.int64)
    category_ids = np.array([c["id"] for c in categories], dtype=np.int64)
    if len(np.unique(image_ids)) != len(image_ids) or len(np.unique(category_ids)) != len(category_ids):
        raise InputError("ground truth: image or category ids are not unique")
    stems = tuple(str(im.get("stem") or Path(str(im.get("file_name", im["id"]))).stem) for im in images)
    n_img, n_cls = len(image_ids), len(category_ids)

    n = len(annotations)
    img = np.empty(n, np.int64)
    cls = np.empty(n, np.int64)
    boxes = np.empty((n, 4), np.float64)
    areas = np.empty(n, np.float64)
    crowd = np.empty(n, bool)
    for j, ann in enumerate(annotations):
        try:
            img[j], cls[j] = ann["image_id"], ann["category_id"]
            boxes[j] = ann["bbox"]
            areas[j] = ann["area"]
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"ground truth annotation {ann.get('id', j)!r}: bad or missing field ({exc})") from None
        crowd[j] = bool(ann.get("iscrowd", 0))
    img_index = _lookup(image_ids, img, "ground truth annotation", "image")
    cls_index = _lookup(category_ids, cls, "ground truth annotation", "category")
    cell = img_index * n_cls + cls_index
    order = np.argsort(cell, kind="stable")
    cell = cell[order]
    starts = np.searchsorted(cell, np.arange(n_img * n_cls + 1)).astype(np.int64)
    boxes, areas, crowd = boxes[order], areas[order], crowd[order]

    n_regular = np.zeros((len(AREA_RANGES), n_img, n_cls), np.int64)
    for a, (_, lo, hi) in enumerate(AREA_RANGES):
        regular = ~crowd & ~((areas < lo) | (areas > hi))
        n_regular[a] = np.bincount(cell[regular], minlength=n_img * n_cls).reshape(n_img, n_cls)
    return GroundTruthIndex(
        image_ids=image_ids,
        stems=stems,
        category_ids=category_ids,
        classes=tuple(str(c["name"]) for c in categories),
        boxes=boxes,
        areas=areas,
        crowd=crowd,
        starts=starts,
        n_regular=n_regular,
    )


@dataclass(frozen=True)
class ClassMatches:
    """One class's kept detections, in pycocotools' ranking order (score desc, image, rank in image).

    ``tp[t, a, j]`` / ``fp[t, a, j]``: detection j is a true / false positive at IoU threshold t and
    area range a (neither: ignored)."""

    image: np.ndarray  # (n,) int64 image index
    score: np.ndarray  # (n,) float64
    tp: np.ndarray  # (T, A, n) bool
    fp: np.ndarray  # (T, A, n) bool


@dataclass(frozen=True)
class MatchRecords:
    """Match records of one set of detections against a ground truth (see the module docstring)."""

    ground_truth: GroundTruthIndex
    max_det: int
    per_class: tuple[ClassMatches, ...]  # (K,)


def detection_arrays(detections: Sequence[Mapping] | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """COCO results (a list of {image_id, category_id, bbox [x, y, w, h], score}) as arrays
    ``image_id (n,), category_id (n,), bbox (n, 4) float64, score (n,) float64``; a dict of such
    arrays is passed through. InputError for a malformed entry."""
    if isinstance(detections, Mapping):
        return {
            "image_id": np.asarray(detections["image_id"], np.int64).reshape(-1),
            "category_id": np.asarray(detections["category_id"], np.int64).reshape(-1),
            "bbox": np.asarray(detections["bbox"], np.float64).reshape(-1, 4),
            "score": np.asarray(detections["score"], np.float64).reshape(-1),
        }
    try:
        return {
            "image_id": np.fromiter((d["image_id"] for d in detections), np.int64, len(detections)),
            "category_id": np.fromiter((d["category_id"] for d in detections), np.int64, len(detections)),
            "bbox": np.array([d["bbox"] for d in detections], np.float64).reshape(-1, 4),
            "score": np.fromiter((d["score"] for d in detections), np.float64, len(detections)),
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"detections are not COCO results (image_id, category_id, bbox [x, y, w, h], score): {exc}") from None


def match_detections(gt: GroundTruthIndex, detections: Sequence[Mapping] | Mapping[str, np.ndarray], max_det: int = 300) -> MatchRecords:
    """Match COCO results against `gt` at every IoU threshold and area range (module docstring).

    Detections of categories the ground truth does not have are left out (pycocotools evaluates
    the ground truth's categories only); a detection of an image the ground truth does not have is
    an InputError (pycocotools refuses such results too)."""
    if max_det < 1:
        raise InputError(f"max_det must be >= 1, got {max_det}")
    arrays = detection_arrays(detections)
    n_cls = gt.n_classes
    img = _lookup(gt.image_ids, arrays["image_id"], "detection", "image")
    known = np.isin(arrays["category_id"], gt.category_ids)
    img = img[known]
    cls = np.searchsorted(gt.category_ids, arrays["category_id"][known])
    box, score = arrays["bbox"][known], arrays["score"][known]

    # per (image, class) cell: score descending, stable; keep the first max_det
    cell = img * n_cls + cls
    order = _stable_order(cell, -score)
    img, cls, box, score, cell = img[order], cls[order], box[order], score[order], cell[order]
    rank = np.arange(len(cell)) - np.searchsorted(cell, cell, side="left")
    keep = rank < max_det
    img, cls, box, score, cell = img[keep], cls[keep], box[keep], score[keep], cell[keep]

    status = _greedy_match(gt, cell, box)  # (T, A, n) int8: 1 TP, 0 unmatched, -1 matched to an ignored box
    # pycocotools' ranking per class: score descending, then image, then rank in the image (the
    # current order within a cell), i.e. a stable sort of the current order by (class, -score)
    ranked = _stable_order(cls, -score)
    status, img, cls, box, score = status[:, :, ranked], img[ranked], cls[ranked], box[ranked], score[ranked]
    det_area = box[:, 2] * box[:, 3]
    inside = np.array([(det_area >= lo) & (det_area <= hi) for _, lo, hi in AREA_RANGES])  # (A, n)
    tp = status == 1
    fp = (status == 0) & inside[None]  # unmatched detections outside the area range are ignored
    bounds = np.searchsorted(cls, np.arange(n_cls + 1))
    per_class = tuple(
        ClassMatches(image=img[i:j], score=score[i:j], tp=tp[:, :, i:j], fp=fp[:, :, i:j]) for i, j in zip(bounds[:-1], bounds[1:])
    )
    return MatchRecords(ground_truth=gt, max_det=int(max_det), per_class=per_class)


def _stable_order(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Indices sorting by `major`, then `minor`, then position (two stable sorts)."""
    order = np.argsort(minor, kind="stable")
    return order[np.argsort(major[order], kind="stable")]


def box_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of paired boxes ``det[j]`` / ``gt[j]`` ([x, y, w, h], (n, 4) float64) -> (n,).

    The arithmetic of pycocotools' ``bbIou`` (maskApi.c), operation by operation, so that values on
    a threshold (0.5 exactly, say) compare the same: w = min(x+w) - max(x), 0 when <= 0; h alike;
    union = det area for a crowd box, else (det area + gt area) - intersection."""
    w = np.minimum(det[:, 2] + det[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(det[:, 0], gt[:, 0])
    h = np.minimum(det[:, 3] + det[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(det[:, 1], gt[:, 1])
    da = det[:, 2] * det[:, 3]
    ga = gt[:, 2] * gt[:, 3]
    inter = w * h
    union = np.where(crowd, da, da + ga - inter)
    positive = (w > 0) & (h > 0)
    out = np.zeros(len(w))
    np.divide(inter, union, out=out, where=positive)
    return out


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray, what: str, kind: str) -> np.ndarray:
    """Index of each id in `sorted_ids`; InputError naming the first id that is not there."""
    pos = np.searchsorted(sorted_ids, ids)
    pos_clipped = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    bad = (pos >= len(sorted_ids)) | (sorted_ids[pos_clipped] != ids) if len(sorted_ids) else np.ones(len(ids), bool)
    if bad.any():
        raise InputError(f"{what} refers to {kind} id {int(ids[np.argmax(bad)])}, which the ground truth does not have")
    return pos.astype(np.int64)


def _candidate_pairs(gt: GroundTruthIndex, cell: np.ndarray, box: np.ndarray):
    """(det, gt) pairs of the same cell with IoU >= the lowest threshold, sorted by det then by
    (IoU, annotation order): returns det, gt index, iou and the pair's rank within its det."""
    counts = gt.starts[cell + 1] - gt.starts[cell]
    cum = np.cumsum(counts)
    dets_all, gts_all, ious_all = [], [], []
    lowest = min(IOU_THRESHOLDS[0], 1 - 1e-10)
    start = 0
    while start < len(cell):  # chunks of detections with a bounded number of pairs
        base = cum[start - 1] if start else 0
        stop = min(max(int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right")), start + 1), len(cell))
        c = counts[start:stop]
        det = np.repeat(np.arange(start, stop), c)
        offset = np.arange(len(det)) - np.repeat(np.cumsum(c) - c, c)
        g = gt.starts[cell[det]] + offset
        iou = box_iou(box[det], gt.boxes[g], gt.crowd[g])
        ok = iou >= lowest
        dets_all.append(det[ok])
        gts_all.append(g[ok])
        ious_all.append(iou[ok])
        start = stop
    det = np.concatenate(dets_all) if dets_all else np.zeros(0, np.int64)
    g = np.concatenate(gts_all) if gts_all else np.zeros(0, np.int64)
    iou = np.concatenate(ious_all) if ious_all else np.zeros(0)
    order = np.lexsort((g, iou, det))
    det, g, iou = det[order], g[order], iou[order]
    seg_first = np.searchsorted(det, det, side="left")
    return det, g, iou, np.arange(len(det)) - seg_first


def _greedy_match(gt: GroundTruthIndex, cell: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Status (T, A, n) int8 of every detection: 1 matched to a non-ignored box, -1 matched to an
    ignored one, 0 unmatched. `cell` must be sorted, detections of a cell in score order.

    The sequential greedy rule is run in rounds over all cells at once: each unresolved detection
    picks its preferred free box; in each cell the detections before the first one whose pick an
    earlier detection of this round already holds are final (their picks cannot change any more),
    the rest pick again next round. A detection with no candidate left stays unmatched for good."""
    n = len(cell)
    n_t, n_a = len(IOU_THRESHOLDS), len(AREA_RANGES)
    status = np.zeros((n_t, n_a, n), np.int8)
    p_det, p_gt, p_iou, p_rank = _candidate_pairs(gt, cell, box)
    if not len(p_det):
        return status
    big = int(p_rank.max()) + 1
    crowd = gt.crowd
    for a, (_, lo, hi) in enumerate(AREA_RANGES):
        regular_gt = ~crowd & ~((gt.areas < lo) | (gt.areas > hi))
        p_regular = regular_gt[p_gt]
        for t, thr in enumerate(IOU_THRESHOLDS):
            ok = p_iou >= min(thr, 1 - 1e-10)
            d, g, reg = p_det[ok], p_gt[ok], p_regular[ok]
            key = reg.astype(np.int64) * big + p_rank[ok]
            taken = np.zeros(len(crowd), bool)
            out = status[t, a]
            while len(d):
                # preferred pair per detection: the largest key (regular first, then IoU, then later box)
                seg = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
                best = np.maximum.reduceat(key, seg)
                ends = np.r_[seg[1:], len(d)]
                seg_of_pair = np.repeat(np.arange(len(seg)), ends - seg)
                pick = np.flatnonzero(key == best[seg_of_pair])  # one pair per detection (keys are unique per detection)
                pd, pg, preg = d[pick], g[pick], reg[pick]
                # first claim of each non-crowd box wins; a later claim in the same round blocks its cell
                contested = ~crowd[pg]
                first_claim = np.zeros(len(pd), bool)
                _, first_idx = np.unique(pg[contested], return_index=True)
                first_claim[np.flatnonzero(contested)[first_idx]] = True
                blocked = contested & ~first_claim
                final = np.ones(len(pd), bool)
                if blocked.any():
                    pc = cell[pd]
                    bc, bfirst = np.unique(pc[blocked], return_index=True)
                    block_at = np.full(len(pd), np.iinfo(np.int64).max)
                    where = np.searchsorted(bc, pc)
                    hit = (where < len(bc)) & (bc[np.minimum(where, len(bc) - 1)] == pc)
                    block_at[hit] = pd[np.flatnonzero(blocked)[bfirst]][where[hit]]
                    final = pd < block_at
                fd, fg = pd[final], pg[final]
                out[fd] = np.where(preg[final], 1, -1)
                taken[fg[~crowd[fg]]] = True
                # drop resolved detections and taken boxes; what is left picks again
                resolved = np.zeros(n, bool)
                resolved[fd] = True
                keep = ~resolved[d] & ~taken[g]
                d, g, reg, key = d[keep], g[keep], reg[keep], key[keep]
    return status
