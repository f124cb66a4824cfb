"""Dataset readers (M3FD, MSRS, LLVIP) on tiny folders built here and on the real files in shared/data."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusedet.datasets.registry import DATASETS, load_dataset
from fusedet.datasets.voc import VocObject, write_voc
from fusedet.datasets.yolo_labels import read_class_names, read_yolo_labels, yolo_to_xyxy
from fusedet.errors import InputError


def _png(path: Path, width: int, height: int, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width) if channels == 1 else (height, width, channels)
    assert cv2.imwrite(str(path), np.full(shape, 90, np.uint8))


def _voc(path: Path, objects: list[tuple], width: int = 64, height: int = 48) -> None:
    write_voc(path, filename=path.stem + ".png", width=width, height=height, depth=3,
              objects=[VocObject(*o) for o in objects])


def _m3fd(root: Path, stems=("00000", "00001", "00002", "00003"), size=(64, 48)) -> Path:
    for i, stem in enumerate(stems):
        _png(root / "Ir" / f"{stem}.png", *size)
        _png(root / "Vis" / f"{stem}.png", *size, channels=3)
        _voc(root / "Annotation" / f"{stem}.xml", [("People", 10, 5, 20, 40), ("Car", 30 + i, 20, 60, 40)], *size)
    return root


def test_m3fd_reads_boxes_classes_sizes_and_meta_splits(tmp_path):
    root = _m3fd(tmp_path / "m3fd")
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("00000\n00001\n")
    (root / "meta" / "val.txt").write_text("00002\n")
    (root / "meta" / "test.txt").write_text("00003\n")
    ds = load_dataset("m3fd", root)
    assert ds.name == "m3fd" and ds.classes == ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]
    assert [r.stem for r in ds.records] == ["00000", "00001", "00002", "00003"]
    assert [r.split for r in ds.records] == ["train", "train", "val", "test"]
    assert ds.split_source == "split lists meta/train.txt, meta/val.txt, meta/test.txt: 2 train, 1 val, 1 test pairs"
    assert ds.layout == "voc: Ir/, Vis/, Annotation/*.xml"
    assert ds.describe_split("test") == f"test: 1 of 4 pairs, from {ds.split_source}"
    assert ds.provenance()["split"]["files"] == ["meta/train.txt", "meta/val.txt", "meta/test.txt"]
    r = ds.split("test")[0]
    assert (r.width, r.height) == (64, 48) and r.ir_path == root / "Ir" / "00003.png" and r.vis_path == root / "Vis" / "00003.png"
    assert r.labels == ("People", "Car")
    np.testing.assert_array_equal(r.boxes, [[10, 5, 20, 40], [33, 20, 60, 40]])
    assert r.boxes.dtype == np.float32 and not ds.warnings
    assert ds.instance_counts("train") == {"People": 2, "Car": 2, "Bus": 0, "Motorcycle": 0, "Truck": 0, "Lamp": 0}


def test_m3fd_without_meta_uses_a_recorded_deterministic_seeded_split(tmp_path):
    root = _m3fd(tmp_path / "m3fd", stems=[f"{i:05d}" for i in range(20)])
    a, b, c = (load_dataset("m3fd", root, seed=s) for s in (7, 7, 8))
    assert a.split_source == "seeded split (seed 7, 70/10/20 train/val/test of 20 sorted stems): 14 train, 2 val, 4 test pairs"
    assert a.split_info.to_dict()["seed"] == 7 and a.split_info.counts == {"train": 14, "val": 2, "test": 4}
    assert Counter(r.split for r in a.records) == Counter({"train": 14, "val": 2, "test": 4})
    assert [r.split for r in a.records] == [r.split for r in b.records]
    assert [r.split for r in a.records] != [r.split for r in c.records]


def test_m3fd_missing_annotation_folder_is_a_clear_error(tmp_path):
    root = _m3fd(tmp_path / "m3fd")
    shutil.rmtree(root / "Annotation")
    with pytest.raises(InputError, match=r"missing annotation folder Annotation/"):
        load_dataset("m3fd", root)
    (root / "labels").mkdir()  # a YOLO label folder without label files for these pairs
    (root / "labels" / "00000.xml").write_text("<annotation/>")
    with pytest.raises(InputError, match=r"labels: no pair has a label file here"):
        load_dataset("m3fd", root)


def test_m3fd_malformed_xml_names_the_file(tmp_path):
    root = _m3fd(tmp_path / "m3fd")
    bad = root / "Annotation" / "00002.xml"
    bad.write_text("<annotation><object><name>Car</name>")
    with pytest.raises(InputError, match="malformed XML") as info:
        load_dataset("m3fd", root)
    assert str(bad) in str(info.value)


def test_m3fd_image_without_annotation_is_skipped_and_listed(tmp_path):
    root = _m3fd(tmp_path / "m3fd")
    (root / "Annotation" / "00001.xml").unlink()
    (root / "Annotation" / "99999.xml").write_text("<annotation/>")
    ds = load_dataset("m3fd", root)
    assert [r.stem for r in ds.records] == ["00000", "00002", "00003"]
    assert ds.warnings.unannotated_images == ["00001"]
    assert any("1 pair(s) have no annotation file" in n and "00001" in n for n in ds.warnings.notes)
    assert any("have no image pair: 99999" in n for n in ds.warnings.notes)


def test_m3fd_annotation_folder_matching_no_image_is_an_error(tmp_path):
    root = _m3fd(tmp_path / "m3fd", stems=["00000", "00001"])
    for xml in (root / "Annotation").glob("*.xml"):
        xml.rename(xml.with_name("M3FD_" + xml.name))
    with pytest.raises(InputError, match="no pair has an annotation file"):
        load_dataset("m3fd", root)


def test_m3fd_pair_with_different_sizes_names_both_files(tmp_path):
    root = _m3fd(tmp_path / "m3fd")
    _png(root / "Vis" / "00002.png", 80, 48, channels=3)
    with pytest.raises(InputError, match="different sizes") as info:
        load_dataset("m3fd", root)
    assert str(root / "Ir" / "00002.png") in str(info.value) and str(root / "Vis" / "00002.png") in str(info.value)
    assert "64x48" in str(info.value) and "80x48" in str(info.value)


def test_m3fd_image_without_partner_is_an_error(tmp_path):
    root = _m3fd(tmp_path / "m3fd")
    (root / "Vis" / "00003.png").unlink()
    with pytest.raises(InputError, match="unpaired images.*00003"):
        load_dataset("m3fd", root)


def test_m3fd_counts_unknown_classes_clips_and_drops_boxes(tmp_path):
    root = _m3fd(tmp_path / "m3fd", stems=["00000"])
    _voc(root / "Annotation" / "00000.xml", [
        ("person", 1, 1, 10, 10), ("TRUNK", 5, 5, 30, 30), ("light", 0, 0, 4, 40),
        ("bicycle", 1, 1, 5, 5), ("bicycle", 2, 2, 6, 6), ("Tree", 1, 1, 3, 3),
        ("Car", -9, 10, 70, 60),  # reaches outside 64x48 -> clipped
        ("Car", 64, 10, 80, 20),  # entirely right of the image -> empty -> dropped
        ("Bus", 20, 30, 20, 40),  # zero width -> dropped
    ])
    ds = load_dataset("m3fd", root)
    r = ds.records[0]
    assert r.labels == ("People", "Truck", "Lamp", "Car")
    np.testing.assert_array_equal(r.boxes[3], [0, 10, 64, 48])
    assert ds.warnings.unknown_classes == Counter({"bicycle": 2, "Tree": 1})
    assert ds.warnings.clipped_boxes == 1 and ds.warnings.dropped_boxes == 2


def test_m3fd_xml_size_disagreeing_with_the_images_is_reported(tmp_path):
    root = _m3fd(tmp_path / "m3fd", stems=["00000"])
    _voc(root / "Annotation" / "00000.xml", [("Car", 1, 1, 10, 10)], width=1024, height=768)
    ds = load_dataset("m3fd", root)
    assert any("<size> other than the image's" in n and "00000 (1024x768 vs 64x48)" in n for n in ds.warnings.notes)


def test_m3fd_reader_on_real_m3fd_pairs_with_labels_converted_to_voc(tmp_path, shared_data):
    """shared/data/m3fd_samples has DCEvo's YOLO labels of 10 real M3FD pairs: write them as VOC XML
    (with the images linked, not copied) and read them back through the m3fd reader."""
    src = shared_data / "m3fd_samples"
    names = read_class_names(src / "classes.txt")  # People, Car, Bus, Lamp, Motorcycle, Truck (M3FD's id order)
    root = tmp_path / "M3FD"
    for sub, dst in (("ir", "Ir"), ("vi", "Vis")):
        (root / dst).mkdir(parents=True)
        for image in (src / sub).glob("*.png"):
            (root / dst / image.name).symlink_to(image)
    expected = {}
    for label in sorted((src / "labels").glob("*.txt")):
        rows = read_yolo_labels(label)
        boxes = np.round(yolo_to_xyxy(rows, 1024, 768))
        expected[label.stem] = boxes
        _voc(root / "Annotation" / f"{label.stem}.xml",
             [(names[int(c)], *map(float, b)) for c, b in zip(rows[:, 0], boxes)], 1024, 768)
    ds = load_dataset("m3fd", root, seed=0)
    assert len(ds.records) == 10 and ds.warnings.unannotated_images == ["00471"]  # 00471 has no label upstream
    assert all((r.width, r.height) == (1024, 768) for r in ds.records)
    counts = ds.instance_counts()
    assert counts == {"People": 90, "Car": 47, "Bus": 2, "Motorcycle": 1, "Truck": 0, "Lamp": 13}  # PROVENANCE.md
    for r in ds.records:
        np.testing.assert_allclose(r.boxes, np.clip(expected[r.stem], 0, [1024, 768, 1024, 768]), atol=1e-4)


@pytest.mark.parametrize("variant, counts", [
    ("labels", {"person": 662, "bicycle": 98, "car": 347}),
    ("ir", {"person": 861, "bicycle": 185, "car": 284}),
    ("labels_vi", {"person": 345, "bicycle": 99, "car": 297}),
])
def test_msrs_reader_on_shared_data_matches_documented_counts(shared_data, variant, counts):
    ds = load_dataset("msrs", shared_data / "msrs", labels=variant)
    assert ds.classes == ["person", "bicycle", "car"] and len(ds.records) == 271
    assert ds.split_source == "split table split.txt: 0 train, 0 val, 271 test pairs" and {r.split for r in ds.records} == {"test"}
    assert ds.instance_counts() == counts  # PROVENANCE.md, per label variant
    assert all((r.width, r.height) == (640, 480) for r in ds.records)
    assert not ds.warnings  # float noise at the border (x1 = -1e-14) is clipped without a warning
    empty = {"labels": 25, "ir": 14, "labels_vi": 63}[variant]
    assert sum(len(r.labels) == 0 for r in ds.records) == empty


def test_msrs_reader_tiny_folder_empty_labels_unknown_ids_and_missing_labels(tmp_path):
    root = tmp_path / "msrs"
    for stem in ("a", "b", "c"):
        _png(root / "ir" / f"{stem}.png", 40, 20)
        _png(root / "vi" / f"{stem}.png", 40, 20, channels=3)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0  0.5  0.5  0.5  0.5 \n7 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "b.txt").write_text("")
    ds = load_dataset("msrs", root, seed=1)
    assert [r.stem for r in ds.records] == ["a", "b"] and ds.warnings.unannotated_images == ["c"]
    np.testing.assert_allclose(ds.records[0].boxes, [[10, 5, 30, 15]])
    assert ds.records[0].labels == ("person",) and ds.records[1].boxes.shape == (0, 4)
    assert ds.warnings.unknown_classes == Counter({"id 7": 1})
    assert ds.split_source.startswith("seeded split (seed 1")
    with pytest.raises(InputError, match="missing label folder labels_ir/"):
        load_dataset("msrs", root, labels="ir")
    (root / "labels_vi").mkdir()
    with pytest.raises(InputError, match="labels_vi: no pair has a label file"):
        load_dataset("msrs", root, labels="vi")


def test_llvip_reader_splits_from_subfolders_and_flat_layout(tmp_path):
    root = tmp_path / "LLVIP"
    for split, stems in (("train", ["010001", "010002"]), ("test", ["190001"])):
        for stem in stems:
            _png(root / "infrared" / split / f"{stem}.jpg", 64, 48, channels=3)
            _png(root / "visible" / split / f"{stem}.jpg", 64, 48, channels=3)
            _voc(root / "Annotations" / f"{stem}.xml", [("person", 5, 5, 15, 40), ("car", 1, 1, 9, 9)])
    ds = load_dataset("llvip", root)
    assert ds.classes == ["person"] and [(r.stem, r.split) for r in ds.records] == [
        ("010001", "train"), ("010002", "train"), ("190001", "test")]
    assert ds.split_source == "folders (test, train): 2 train, 0 val, 1 test pairs" and ds.warnings.unknown_classes == Counter({"car": 3})
    flat = tmp_path / "flat"
    for stem in ("1", "2", "3"):
        _png(flat / "infrared" / f"{stem}.jpg", 64, 48)
        _png(flat / "visible" / f"{stem}.jpg", 64, 48, channels=3)
        _voc(flat / "Annotations" / f"{stem}.xml", [("People", 5, 5, 15, 40)])
    ds = load_dataset("llvip", flat, seed=0)
    assert len(ds.records) == 3 and ds.split_source.startswith("seeded split")
    assert all(r.labels == ("person",) for r in ds.records)


def test_registry_rejects_unknown_names_options_and_missing_roots(tmp_path):
    assert set(DATASETS) == {"m3fd", "msrs", "llvip", "flir", "kaist", "demo"}
    with pytest.raises(InputError, match="unknown dataset 'coco'; choose one of m3fd, msrs, llvip, flir, kaist, demo"):
        load_dataset("coco", tmp_path)
    with pytest.raises(InputError, match="'msrs' has no option colour; its options: labels"):
        load_dataset("msrs", tmp_path, colour="x")
    with pytest.raises(InputError, match="'m3fd' needs a root folder"):
        load_dataset("m3fd")
    with pytest.raises(InputError, match="dataset root is not a folder"):
        load_dataset("llvip", tmp_path / "nowhere")
