"""The AP engine (fusedet.eval.coco_match + ap_engine) against pycocotools: full sets, subsets and
weighted resamples, on random detections and on the demo detector's detections of demo data."""

from __future__ import annotations

import numpy as np
import pytest
from coco_family import FAMILY, pycocotools_family, random_coco

from fusedet.errors import InputError
from fusedet.eval.ap_engine import average_precision, mean_over_classes
from fusedet.eval.coco_match import box_iou, index_ground_truth, match_detections


def _engine(gt: dict, dets: list[dict], max_det: int = 300) -> dict[str, np.ndarray]:
    records = match_detections(index_ground_truth(gt), dets, max_det=max_det)
    return {m: average_precision(records, m)[0] for m in FAMILY}


def _assert_equal(mine: dict[str, np.ndarray], ref: dict[str, np.ndarray], tol: float = 1e-6) -> None:
    for metric in FAMILY:
        assert np.array_equal(np.isnan(mine[metric]), np.isnan(ref[metric])), (metric, mine[metric], ref[metric])
        both = ~np.isnan(ref[metric])
        np.testing.assert_allclose(mine[metric][both], ref[metric][both], rtol=0, atol=tol, err_msg=metric)


@pytest.mark.parametrize("seed", range(8))
def test_full_set_equals_pycocotools_on_random_detections(seed):
    rng = np.random.default_rng(seed)
    gt, dets = random_coco(rng, crowd=0.15 if seed % 2 else 0.0)
    max_det = 4 if seed in (2, 5) else 300  # cut per image and class, as pycocotools' maxDets
    ref = pycocotools_family(gt, dets, max_det)
    _assert_equal(_engine(gt, dets, max_det), ref)
    assert (~np.isnan(ref["ap50"])).sum() >= 2 and np.nanmax(ref["ap50"]) > 10  # a non-trivial case


def test_subset_of_images_equals_pycocotools_on_that_subset():
    rng = np.random.default_rng(11)
    gt, dets = random_coco(rng, n_images=40, crowd=0.1)
    records = match_detections(index_ground_truth(gt), dets)
    ids = sorted(im["id"] for im in gt["images"])
    keep = set(ids[::3]) | set(ids[5:12])
    weights = np.array([1.0 if i in keep else 0.0 for i in ids])
    sub_gt = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
              "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    ref = pycocotools_family(sub_gt, [d for d in dets if d["image_id"] in keep])
    _assert_equal({m: average_precision(records, m, weights)[0] for m in FAMILY}, ref)


def test_image_multiplicities_equal_pycocotools_on_the_set_with_copies():
    rng = np.random.default_rng(5)
    gt, dets = random_coco(rng, n_images=25, crowd=0.1, ties=False)  # distinct scores: copies tie only with themselves
    records = match_detections(index_ground_truth(gt), dets)
    ids = sorted(im["id"] for im in gt["images"])
    counts = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)))
    big = {"categories": gt["categories"], "images": [], "annotations": []}
    big_dets = []
    for image_id, count in zip(ids, counts):
        for copy in range(count):
            new = image_id * 100 + copy
            big["images"].append({"id": new})
            big["annotations"] += [dict(a, image_id=new, id=len(big["annotations"]) + j + 1)
                                   for j, a in enumerate(a for a in gt["annotations"] if a["image_id"] == image_id)]
            big_dets += [dict(d, image_id=new) for d in dets if d["image_id"] == image_id]
    ref = pycocotools_family(big, big_dets)
    _assert_equal({m: average_precision(records, m, counts)[0] for m in FAMILY}, ref)
    # a batch of weight rows gives each row's own AP
    batch = average_precision(records, "ap50", np.stack([np.ones(len(ids)), counts]))
    np.testing.assert_allclose(batch[1], ref["ap50"], atol=1e-6)
    np.testing.assert_allclose(batch[0], _engine(gt, dets)["ap50"], atol=1e-12)


def test_iou_is_pycocotools_arithmetic_on_threshold_boundaries():
    from pycocotools import mask

    rng = np.random.default_rng(0)
    det = np.round(rng.uniform(0, 50, (200, 4)))
    det[:, 2:] += 1
    gt = det.copy()
    gt[:100, 2] *= 2  # IoU exactly 0.5 for these
    gt[100:, :2] += np.round(rng.uniform(-20, 20, (100, 2)))
    crowd = rng.uniform(size=200) < 0.3
    ref = np.array([mask.iou([d.tolist()], [g.tolist()], [int(c)])[0, 0] for d, g, c in zip(det, gt, crowd)])
    assert np.array_equal(box_iou(det, gt, crowd), ref)
    assert (ref[:100][~crowd[:100]] == 0.5).all()


def test_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
            {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9}]
    records = match_detections(index_ground_truth(gt), dets)
    ap = average_precision(records, "ap50", np.array([[1, 1], [0, 2]]))
    assert ap[0, 0] == pytest.approx(100.0) and np.isnan(ap[0, 1])
    assert np.isnan(ap[1]).all()  # image 1 not drawn: no ground truth of either class
    assert mean_over_classes(ap).tolist()[0] == pytest.approx(100.0) and np.isnan(mean_over_classes(ap)[1])
    assert mean_over_classes(np.array([[50.0, 10.0]]), include=np.array([True, False]))[0] == 50.0


def test_bad_input_is_an_input_error():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": []}
    index = index_ground_truth(gt)
    with pytest.raises(InputError, match="image id 5"):
        match_detections(index, [{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(InputError, match="COCO results"):
        match_detections(index, [{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(InputError, match="annotation"):
        index_ground_truth({**gt, "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]})
    with pytest.raises(InputError, match="image id 9"):
        index_ground_truth({**gt, "annotations": [{"id": 1, "image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1}]})
    records = match_detections(index, [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 1.0}])  # unknown class: left out
    assert len(records.per_class[0].image) == 0
    with pytest.raises(InputError, match="shape"):
        average_precision(records, "ap50", np.ones(3))
    with pytest.raises(InputError, match="unknown metric"):
        average_precision(records, "ap75")


@pytest.fixture(scope="module")
def demo_detections(tmp_path_factory):
    """The demo detector's detections on the visible and infrared images of a small demo set."""
    from fusedet.datasets import generate_demo, load_dataset
    from fusedet.datasets.io import read_ir, read_vis
    from fusedet.detector import Detector
    from fusedet.eval.detection_ap import coco_detections, coco_ground_truth

    root = generate_demo(tmp_path_factory.mktemp("demo") / "demo", n_pairs=18, seed=2)
    dataset = load_dataset("demo", root)
    records = [r for split in ("train", "val", "test") for r in dataset.split(split)]
    detector = Detector("demo", "cpu", conf=0.001, max_det=300)
    gt = coco_ground_truth(records, dataset.classes)
    out = {}
    for name, read in (("vi", read_vis), ("ir", read_ir)):
        found = detector.detect([read(r.vis_path if name == "vi" else r.ir_path) for r in records], dataset.classes)
        out[name] = coco_detections(((i + 1, f) for i, f in enumerate(found)), dataset.classes)
    return gt, out


def test_demo_detector_on_demo_data_equals_pycocotools(demo_detections):
    gt, dets = demo_detections
    for name, d in dets.items():
        assert len(d) > 100, name
        ref = pycocotools_family(gt, d)
        _assert_equal(_engine(gt, d), ref)
        assert np.nanmean(ref["ap50"]) > 5  # the detector finds things


def test_demo_ap50_rows_round_like_the_pycocotools_wrapper(demo_detections):
    from fusedet.eval.detection_ap import average_precision as coco_ap
    from fusedet.eval.detection_ap import mean_ap

    gt, dets = demo_detections
    names = [c["name"] for c in gt["categories"]]
    for d in dets.values():
        ref = coco_ap(gt, d)
        mine = _engine(gt, d)["ap50"]
        assert {n: (None if np.isnan(v) else round(float(v), 4)) for n, v in zip(names, mine)} == \
            {n: (None if v is None else round(v, 4)) for n, v in ref.items()}
        assert round(float(mean_over_classes(mine[None])[0]), 4) == round(mean_ap(ref), 4)
