"""AP and mAP of any subset or weighted resample of the images, from match records alone.

The records come from :func:`fusedet.eval.coco_match.match_detections` (one matching pass). An image
weight says how many times the image counts: 1 for every image is the full set, 0/1 a subset, and
the multiplicities of a bootstrap resample (an image drawn twice counts twice). AP is pycocotools'
``COCOeval.accumulate`` for one class, IoU threshold and area range: detections ranked by score,
cumulative true and false positives, recall = TP / (non-ignored ground-truth boxes), precision =
TP / (TP + FP + eps) with eps = np.spacing(1), precision made non-increasing from the right, and AP
the mean of that precision at the 101 recall points 0, 0.01, ..., 1 (0 beyond the highest recall).
A class without a non-ignored ground-truth box in the weighted set has no AP (NaN).

Computation (numpy only, many weight vectors at once): precision only matters at true-positive
ranks (the first rank reaching a recall point is a true positive, and the envelope's maximum is
taken at one), so for each true positive the false positives ranked above it are counted per image
once (a matrix F: true positives x images, one row per distinct run of false positives); then for
a batch of weight vectors W (B x images) the cumulative false positives are W @ F^T, the cumulative
true positives a cumulative sum of the weights of the true positives' images, and AP follows from
array operations on B x (true positives). With weight 1 everywhere the counts, divisions and
comparisons are those of pycocotools, so full-set AP equals it up to summation order (~1e-15).

Metrics (COCO's names): ``ap50`` AP at IoU 0.5, area all; ``ap50_95`` mean AP over the IoU
thresholds 0.50:0.05:0.95, area all; ``ap_small`` / ``ap_medium`` / ``ap_large`` the same over the
small / medium / large ranges. Values are in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from fusedet.errors import InputError
from fusedet.eval.coco_match import IOU_THRESHOLDS, ClassMatches, MatchRecords

RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)  # pycocotools Params.recThrs

# metric -> (IoU threshold indices, area range index)
METRICS: dict[str, tuple[tuple[int, ...], int]] = {
    "ap50": ((0,), 0),
    "ap50_95": (tuple(range(len(IOU_THRESHOLDS))), 0),
    "ap_small": (tuple(range(len(IOU_THRESHOLDS))), 1),
    "ap_medium": (tuple(range(len(IOU_THRESHOLDS))), 2),
    "ap_large": (tuple(range(len(IOU_THRESHOLDS))), 3),
}
METRIC_LABELS = {
    "ap50": "AP@0.5",
    "ap50_95": "AP@[.5:.95]",
    "ap_small": "AP_S@[.5:.95] (area < 32^2)",
    "ap_medium": "AP_M@[.5:.95] (32^2 <= area <= 96^2)",
    "ap_large": "AP_L@[.5:.95] (area > 96^2)",
}

_FLOAT32_EXACT = 2**24  # integer sums below this are exact in float32
_BATCH_ELEMENTS = 4_000_000  # resamples x true positives processed at once


def as_weights(weights: np.ndarray | Sequence | None, n_images: int) -> np.ndarray:
    """Weights as a (B, I) float64 array: None -> one row of ones; (I,) -> one row. Non-negative."""
    if weights is None:
        return np.ones((1, n_images))
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] != n_images:
        raise InputError(f"image weights must have shape (B, {n_images}) or ({n_images},), got {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all():
        raise InputError("image weights must be finite and non-negative")
    return w


def average_precision(records: MatchRecords, metric: str = "ap50", weights: np.ndarray | Sequence | None = None) -> np.ndarray:
    """Per-class AP in percent for each weight vector: (B, K), NaN where the class has no
    non-ignored ground-truth box in the weighted set. `weights`: (B, I), (I,) or None (all images)."""
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    gt = records.ground_truth
    w = as_weights(weights, gt.n_images)
    thresholds, area = METRICS[metric]
    active = np.flatnonzero(w.any(axis=0))
    col_of = np.full(gt.n_images, -1, np.int64)
    col_of[active] = np.arange(len(active))
    w_act = w[:, active]
    exact32 = bool(np.all(w_act == np.round(w_act)) and w_act.max(initial=0) * max(len(m.image) for m in records.per_class) < _FLOAT32_EXACT) \
        if records.per_class else True
    wt = np.ascontiguousarray(w_act.T.astype(np.float32 if exact32 else np.float64))  # (I_active, B)
    out = np.empty((w.shape[0], gt.n_classes))
    for k, matches in enumerate(records.per_class):
        n_pos = w_act @ gt.n_regular[area, active, k].astype(np.float64)
        per_t = [_class_ap(matches, t, area, wt, col_of, n_pos) for t in thresholds]
        out[:, k] = np.mean(per_t, axis=0) if len(per_t) > 1 else per_t[0]
    return out


def mean_over_classes(ap: np.ndarray, include: np.ndarray | None = None) -> np.ndarray:
    """mAP per row of a (B, K) AP array: the mean over the classes with an AP (not NaN) among
    `include` (a (K,) bool mask, default all); NaN where no class has one."""
    values = ap if include is None else np.where(include[None, :], ap, np.nan)
    defined = ~np.isnan(values)
    count = defined.sum(axis=1)
    total = np.where(defined, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _class_ap(m: ClassMatches, t: int, a: int, wt: np.ndarray, col_of: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """AP (percent) of one class at threshold index t, area index a, for each column of wt
    (I_active, B); n_pos (B,) its non-ignored ground-truth boxes."""
    result = np.where(n_pos > 0, 0.0, np.nan)
    col = col_of[m.image]
    live = col >= 0
    is_tp = m.tp[t, a] & live
    counted = np.flatnonzero(is_tp | (m.fp[t, a] & live))
    is_tp = is_tp[counted]
    if not is_tp.any():
        return result
    if wt.shape[1] == 1:  # one weight vector: cumulative sums over the ranking, no counting matrix
        w = wt[col[counted], 0].astype(np.float64)
        tp = np.cumsum(np.where(is_tp, w, 0.0))[is_tp]
        fp = np.cumsum(np.where(is_tp, 0.0, w))[is_tp]
        if n_pos[0] > 0:
            result[0] = 100.0 * _interpolated_ap(tp[:, None], fp[:, None], n_pos[:1])[0]
        return result
    last = np.flatnonzero(is_tp)[-1]  # false positives after the last true positive change nothing
    counted, is_tp = counted[: last + 1], is_tp[: last + 1]
    # runs: maximal sequences of true positives without a false positive between them. Within a run
    # precision rises, so every rank of a run has the run's last precision as envelope; only the
    # cumulative counts at run ends matter.
    run_start = is_tp & np.r_[True, ~is_tp[:-1]]
    n_runs = int(run_start.sum())
    starts_so_far = np.cumsum(run_start)
    # a false positive counts before run `starts_so_far`, a true positive in run `starts_so_far - 1`
    row = np.where(is_tp, n_runs + starts_so_far - 1, starts_so_far)
    n_cols = wt.shape[0]
    counts = sparse.csr_matrix((np.ones(len(row), wt.dtype), (row, col[counted])), shape=(2 * n_runs, n_cols))
    rows = np.flatnonzero(n_pos > 0)
    step = max(1, _BATCH_ELEMENTS // max(n_runs, 1))
    for start in range(0, len(rows), step):
        b = rows[start : start + step]
        per_run = counts @ (wt[:, b] if len(b) < wt.shape[1] else wt)  # (2 R, b) weighted counts per run
        fp = np.cumsum(per_run[:n_runs], axis=0, dtype=np.float64)  # false positives before each run
        tp = np.cumsum(per_run[n_runs:], axis=0, dtype=np.float64)  # true positives through each run
        result[b] = 100.0 * _interpolated_ap(tp, fp, n_pos[b])
    return result


def _interpolated_ap(tp: np.ndarray, fp: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """101-point AP from cumulative TP/FP at the ends of the runs of true positives: (R, B) -> (B,)
    in [0, 1]."""
    recall = tp / n_pos[None, :]
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
    # recall point r takes the envelope at the first rank with recall >= r: the run ending at or after it
    reached = _points_reached(recall)
    points = np.diff(reached, axis=0, prepend=0)
    return np.einsum("ij,ij->j", envelope, points) / len(RECALL_THRESHOLDS)


def _points_reached(recall: np.ndarray) -> np.ndarray:
    """How many recall points are <= each recall value (recall in [0, 1]); the same comparisons as
    ``np.searchsorted(RECALL_THRESHOLDS, recall, side="right")``, without a binary search."""
    last = len(RECALL_THRESHOLDS) - 1
    guess = np.minimum((recall * last).astype(np.int64), last)  # within one of the answer
    guess -= RECALL_THRESHOLDS[guess] > recall
    guess += (guess < last) & (RECALL_THRESHOLDS[np.minimum(guess + 1, last)] <= recall)
    return guess + 1
