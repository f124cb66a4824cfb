"""Paired bootstrap of per-class AP and mAP over the test images: percentile intervals, differences
to a baseline and their two-sided p-values.

One resample draws as many images as the set has, uniformly with replacement, from a generator of
its own (``numpy.random.default_rng(seed)``); the drawn multiplicities are image weights for the AP
engine (:mod:`fusedet.eval.ap_engine`). Every source is scored on the same resamples (paired), so
the difference of two sources is taken resample by resample. A class without a ground-truth box in
a resample has no AP there: it is left out of that resample's mAP and of that class's interval
(NaN, skipped by the percentiles).

Intervals are percentile intervals (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
ch. 13): the (1 - level) / 2 and (1 + level) / 2 quantiles of the resampled values, numpy's linear
interpolation. The p-value of a difference is twice the smaller of the shares of resampled
differences <= 0 and >= 0, at most 1.

They describe image-level sampling variation of this test set for fixed detectors: how much the
numbers would move on another test set drawn like this one. Run-to-run training noise (other
seeds) is not in them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fusedet.errors import InputError
from fusedet.eval.ap_engine import average_precision, mean_over_classes
from fusedet.eval.coco_match import MatchRecords
from fusedet.events import Events, as_events


def resample_counts(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """Multiplicities (resamples, n_images) int64 of `resamples` draws of n_images images with
    replacement; row b is resample b. The generator is ``numpy.random.default_rng(seed)``, so the
    same (n_images, resamples, seed) give the same rows."""
    if resamples < 1 or n_images < 1:
        raise InputError(f"need at least one resample and one image (resamples={resamples}, images={n_images})")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_images, size=(resamples, n_images))
    offsets = (np.arange(resamples) * n_images)[:, None]
    return np.bincount((picks + offsets).ravel(), minlength=resamples * n_images).reshape(resamples, n_images)


def image_weights(n_images: int, images: Sequence[int] | np.ndarray | None, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_images) weights: resamples of the images `images` (indices; None: all), zero
    elsewhere. The subset's resamples are those of a set made of these images alone."""
    subset = np.arange(n_images) if images is None else np.asarray(images, np.int64)
    weights = np.zeros((resamples, n_images))
    weights[:, subset] = resample_counts(len(subset), resamples, seed)
    return weights


def scores(records: MatchRecords, metric: str, weights: np.ndarray | None, covered: np.ndarray | None = None) -> np.ndarray:
    """(B, K + 1): per-class AP (percent) then mAP for each weight row; classes outside `covered`
    (a (K,) bool mask: the detector has them) and classes without ground truth are NaN."""
    ap = average_precision(records, metric, weights)
    if covered is not None:
        ap[:, ~np.asarray(covered, bool)] = np.nan
    return np.concatenate([ap, mean_over_classes(ap)[:, None]], axis=1)


def paired_bootstrap(
    records: Mapping[str, MatchRecords],
    metric: str,
    *,
    resamples: int,
    seed: int,
    images: Sequence[int] | np.ndarray | None = None,
    covered: Mapping[str, np.ndarray] | None = None,
    events: Events | None = None,
    stage: str = "bootstrap",
) -> dict[str, np.ndarray]:
    """Per source, (resamples, K + 1) resampled per-class AP and mAP (see :func:`scores`); the same
    resamples of `images` (default all) for every source. Reports one `stage` step per source."""
    events = as_events(events)
    first = next(iter(records.values()))
    weights = image_weights(first.ground_truth.n_images, images, resamples, seed)
    events.start(stage, total=len(records))
    out = {}
    for name, rec in records.items():
        out[name] = scores(rec, metric, weights, None if covered is None else covered.get(name))
        events.advance(stage, 1, status=name)
    events.finish(stage)
    return out


@dataclass(frozen=True)
class Difference:
    """A paired difference: point value, percentile interval and two-sided bootstrap p-value."""

    delta: float
    low: float
    high: float
    p: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (B, C) samples, the percentile interval at `level`, NaN samples skipped;
    (NaN, NaN) for a column without any defined sample."""
    if not 0 < level < 1:
        raise InputError(f"interval level must be in (0, 1), got {level}")
    samples = np.asarray(samples, np.float64)
    q = [50 * (1 - level), 50 * (1 + level)]
    low = np.full(samples.shape[1], np.nan)
    high = np.full(samples.shape[1], np.nan)
    for c in range(samples.shape[1]):
        column = samples[:, c]
        column = column[~np.isnan(column)]
        if len(column):
            low[c], high[c] = np.percentile(column, q)
    return low, high


def paired_difference(
    samples: np.ndarray, baseline: np.ndarray, point: np.ndarray, base_point: np.ndarray, level: float = 0.95
) -> list[Difference | None]:
    """Per column: the difference `point - base_point` with the percentile interval and p-value of
    the resampled differences `samples - baseline` (both (B, C), the same resamples); None where
    the point difference is undefined or no resample has one."""
    diffs = np.asarray(samples, np.float64) - np.asarray(baseline, np.float64)
    low, high = percentile_interval(diffs, level)
    out: list[Difference | None] = []
    for c in range(diffs.shape[1]):
        d = diffs[:, c]
        d = d[~np.isnan(d)]
        delta = float(point[c]) - float(base_point[c])
        if np.isnan(delta) or not len(d):
            out.append(None)
            continue
        p = min(1.0, 2.0 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
        out.append(Difference(delta=delta, low=float(low[c]), high=float(high[c]), p=p))
    return out
