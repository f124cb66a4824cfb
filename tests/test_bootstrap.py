"""The paired bootstrap (fusedet.eval.bootstrap): resamples, per-resample AP against pycocotools on
the resampled image sets, percentile intervals, paired differences and p-values, classes missing
from a resample."""

from __future__ import annotations

import numpy as np
import pytest
from coco_family import pycocotools_family, random_coco

from fusedet.errors import InputError
from fusedet.eval.bootstrap import (
    image_weights,
    paired_bootstrap,
    paired_difference,
    percentile_interval,
    resample_counts,
    scores,
)
from fusedet.eval.coco_match import index_ground_truth, match_detections
from fusedet.events import RecordingEvents


def test_resample_counts_are_seeded_draws_with_replacement():
    a = resample_counts(50, 400, seed=3)
    assert a.shape == (400, 50) and (a.sum(axis=1) == 50).all() and a.min() >= 0
    assert np.array_equal(a, resample_counts(50, 400, seed=3))
    assert not np.array_equal(a, resample_counts(50, 400, seed=4))
    # each image is drawn Binomial(50, 1/50) times: mean 1, and about 36.4 % of the images are left out
    assert a.mean() == pytest.approx(1.0)
    assert (a == 0).mean() == pytest.approx((1 - 1 / 50) ** 50, abs=0.02)
    # the same draws as numpy's integers(0, n) from a generator of that seed
    picks = np.random.default_rng(3).integers(0, 50, size=(400, 50))
    assert np.array_equal(a[7], np.bincount(picks[7], minlength=50))
    w = image_weights(10, [2, 5, 7], 20, seed=1)
    assert (w[:, [0, 1, 3, 4, 6, 8, 9]] == 0).all() and np.array_equal(w[:, [2, 5, 7]], resample_counts(3, 20, 1))
    with pytest.raises(InputError):
        resample_counts(0, 10, 0)


def test_each_resample_equals_pycocotools_on_the_resampled_set():
    rng = np.random.default_rng(8)
    gt, dets = random_coco(rng, n_images=20, crowd=0.0, ties=False)
    dets2 = [dict(d, score=float(np.clip(d["score"] + rng.normal(0, 0.2), 0, 1))) for d in dets]
    index = index_ground_truth(gt)
    records = {"a": match_detections(index, dets), "b": match_detections(index, dets2)}
    events = RecordingEvents()
    samples = paired_bootstrap(records, "ap50", resamples=4, seed=9, events=events)
    assert events.done("bootstrap") == 2
    counts = resample_counts(len(gt["images"]), 4, seed=9)
    ids = sorted(im["id"] for im in gt["images"])
    for row in range(4):
        big = {"categories": gt["categories"], "images": [], "annotations": []}
        big_dets = {"a": [], "b": []}
        for image_id, count in zip(ids, counts[row]):
            for copy in range(count):
                new = image_id * 100 + copy
                big["images"].append({"id": new})
                big["annotations"] += [dict(x, image_id=new, id=len(big["annotations"]) + j + 1)
                                       for j, x in enumerate(x for x in gt["annotations"] if x["image_id"] == image_id)]
                for name, d in (("a", dets), ("b", dets2)):
                    big_dets[name] += [dict(x, image_id=new) for x in d if x["image_id"] == image_id]
        for name in ("a", "b"):
            ref = pycocotools_family(big, big_dets[name])["ap50"]
            got = samples[name][row]
            assert np.array_equal(np.isnan(got[:-1]), np.isnan(ref))
            np.testing.assert_allclose(got[:-1][~np.isnan(ref)], ref[~np.isnan(ref)], atol=1e-6)
            assert got[-1] == pytest.approx(np.nanmean(ref))  # mAP of the resample


def test_class_without_ground_truth_in_a_resample_is_left_out():
    # class b has one box, in image 1 only; class a has a box in every image
    images = [{"id": i} for i in range(1, 9)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0} for i in range(1, 9)]
    annotations.append({"id": 99, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0})
    gt = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    dets = [{"image_id": i, "category_id": 1, "bbox": [0, 0, 20, 20 if i % 2 else 8], "score": 0.1 * i} for i in range(1, 9)]
    dets.append({"image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.5})
    records = {"s": match_detections(index_ground_truth(gt), dets)}
    samples = paired_bootstrap(records, "ap50", resamples=300, seed=0)["s"]
    drawn = resample_counts(8, 300, 0)[:, 0] > 0
    assert np.isnan(samples[~drawn, 1]).all() and np.allclose(samples[drawn, 1], 100.0)
    np.testing.assert_allclose(samples[~drawn, 2], samples[~drawn, 0])  # mAP = AP of a alone
    np.testing.assert_allclose(samples[drawn, 2], (samples[drawn, 0] + 100.0) / 2)
    low, high = percentile_interval(samples)
    assert low[1] == pytest.approx(100.0) and high[1] == pytest.approx(100.0)  # only the resamples that hold b
    assert 0 < drawn.mean() < 1


def test_percentile_interval_and_paired_difference():
    x = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [4.0, np.nan], [10.0, np.nan]])
    low, high = percentile_interval(x, 0.5)
    assert (low[0], high[0]) == tuple(np.percentile(x[:, 0], [25, 75])) and np.isnan(low[1]) and np.isnan(high[1])
    a = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    b = np.array([[2.0], [2.0], [2.0], [2.0], [2.0]])  # differences -1, 0, 1, 2, 3
    (d,) = paired_difference(a, b, np.array([3.0]), np.array([2.0]))
    assert d.delta == 1.0 and d.p == pytest.approx(2 * 2 / 5)  # shares <= 0: 2/5, >= 0: 4/5
    assert (d.low, d.high) == pytest.approx(tuple(np.percentile([-1, 0, 1, 2, 3], [2.5, 97.5]))) and not d.excludes_zero
    (d,) = paired_difference(a + 5, b, np.array([8.0]), np.array([2.0]))
    assert d.p == 0.0 and d.excludes_zero
    (d,) = paired_difference(a, a, np.array([1.0]), np.array([1.0]))
    assert d.p == 1.0 and d.low == d.high == 0.0  # identical sources: at most 1
    assert paired_difference(np.full((3, 1), np.nan), b[:3], np.array([np.nan]), np.array([2.0])) == [None]
    with pytest.raises(InputError):
        percentile_interval(x, 1.5)


def test_covered_mask_and_identical_sources_pair_exactly():
    rng = np.random.default_rng(2)
    gt, dets = random_coco(rng, n_images=15)
    index = index_ground_truth(gt)
    rec = match_detections(index, dets)
    full = scores(rec, "ap50", None, covered=np.array([True, False, True]))
    assert np.isnan(full[0, 1]) and full[0, -1] == pytest.approx(np.nanmean(full[0, [0, 2]]))
    samples = paired_bootstrap({"x": rec, "y": match_detections(index, list(dets))}, "ap50", resamples=50, seed=1)
    assert np.array_equal(samples["x"], samples["y"], equal_nan=True)
