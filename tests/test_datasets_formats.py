"""Annotation formats and splits: Pascal VOC, YOLO text, class names, split files, seeded splits, clipping."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fusedet.datasets.annotations import ClassMap, make_record
from fusedet.datasets.m3fd import m3fd_class_map
from fusedet.datasets.records import DatasetWarnings
from fusedet.datasets.splits import assign_splits, read_split_lists, read_split_table, seeded_split
from fusedet.datasets.voc import VocObject, read_voc, write_voc
from fusedet.datasets.yolo_labels import read_class_names, read_yolo_labels, yolo_to_xyxy
from fusedet.errors import InputError

VOC = """<annotation>
  <filename>00001.png</filename>
  <size><width>1024</width><height>768</height><depth>3</depth></size>
  <object><name>People</name><difficult>0</difficult>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>90</ymax></bndbox></object>
  <object><name> car </name><difficult>1</difficult>
    <bndbox><xmin>100.5</xmin><ymin>200</ymin><xmax>300</xmax><ymax>250.25</ymax></bndbox></object>
</annotation>
"""


def test_voc_read_converts_one_based_inclusive_indices_to_pixel_edges(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(VOC)
    ann = read_voc(path)
    assert (ann.width, ann.height) == (1024, 768)
    assert ann.objects[0] == VocObject("People", 10.0, 20.0, 40.0, 90.0, False)
    # xmin=11..xmax=40 inclusive covers 30 pixel columns: width 30 after conversion
    assert ann.objects[0].x2 - ann.objects[0].x1 == 30
    assert ann.objects[1] == VocObject("car", 99.5, 199.0, 300.0, 250.25, True)


def test_voc_write_then_read_is_exact(tmp_path):
    objects = [VocObject("Lamp", 0.0, 0.0, 5.0, 60.0), VocObject("Bus", 17.0, 3.0, 319.0, 255.0, True)]
    path = write_voc(tmp_path / "x.xml", filename="x.png", width=320, height=256, depth=3, objects=objects)
    text = path.read_text()
    assert "<xmin>1</xmin>" in text and "<xmax>5</xmax>" in text  # 1-based on disk
    ann = read_voc(path)
    assert ann.objects == objects and (ann.width, ann.height) == (320, 256)


@pytest.mark.parametrize(
    "body, message",
    [
        ("<annotation><object>", "malformed XML"),
        ("<root/>", "not a Pascal VOC annotation"),
        ("<annotation><object><bndbox/></object></annotation>", "object 0 has no <name>"),
        ("<annotation><object><name>Car</name></object></annotation>", "has no <bndbox>"),
        ("<annotation><object><name>Car</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax><ymax>3</ymax>"
         "</bndbox></object></annotation>", "<xmin> is not a number"),
        ("<annotation><object><name>Car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
         "</bndbox></object></annotation>", "has no <ymax>"),
    ],
)
def test_voc_bad_files_raise_naming_the_file(tmp_path, body, message):
    path = tmp_path / "bad_00042.xml"
    path.write_text(body)
    with pytest.raises(InputError, match=message) as info:
        read_voc(path)
    assert str(path) in str(info.value)


def test_voc_size_zero_means_unknown(tmp_path):
    path = tmp_path / "z.xml"
    path.write_text("<annotation><size><width>0</width><height>0</height></size></annotation>")
    ann = read_voc(path)
    assert ann.width is None and ann.objects == []


def test_yolo_labels_any_whitespace_empty_files_and_conversion(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("0  0.5  0.25  0.2  0.5 \n\n2\t0.1 0.9 0.2 0.2\n")
    rows = read_yolo_labels(path)
    assert rows.shape == (2, 5) and rows[1, 0] == 2
    boxes = yolo_to_xyxy(rows, 640, 480)
    np.testing.assert_allclose(boxes[0], [256, 0, 384, 240])
    np.testing.assert_allclose(boxes[1], [0, 384, 128, 480])
    empty = tmp_path / "e.txt"
    empty.write_text("")
    assert read_yolo_labels(empty).shape == (0, 5)


@pytest.mark.parametrize(
    "line, message",
    [("0 0.5 0.5 0.1", "expected 5 fields"), ("0 0.5 x 0.1 0.1", "not a number"), ("1.5 0.5 0.5 0.1 0.1", "class id"),
     ("-1 0.5 0.5 0.1 0.1", "class id"), ("0 nan 0.5 0.1 0.1", "non-finite")],
)
def test_yolo_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(InputError, match=message) as info:
        read_yolo_labels(path)
    assert f"{path}:2" in str(info.value)


def test_class_names_with_and_without_ids(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("1 bicycle\n0 person\n2 car\n")
    assert read_class_names(a) == ["person", "bicycle", "car"]
    b = tmp_path / "b.txt"
    b.write_text("People\nCar\n")
    assert read_class_names(b) == ["People", "Car"]
    c = tmp_path / "c.txt"
    c.write_text("0 person\n2 car\n")
    with pytest.raises(InputError, match="without gaps"):
        read_class_names(c)


def test_m3fd_class_map_matches_case_insensitively_and_accepts_documented_aliases():
    cmap = m3fd_class_map()
    assert cmap.classes == ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]
    for name, want in [("people", "People"), ("Person", "People"), ("MOTOR", "Motorcycle"), ("moto", "Motorcycle"),
                       ("trunk", "Truck"), ("light", "Lamp"), ("street_lamp", "Lamp"), ("Street Light", "Lamp")]:
        assert cmap.canonical(name) == want, name
    assert cmap.canonical("bicycle") is None and cmap.canonical("traffic light") is None


def test_make_record_clips_drops_and_counts_unknown_classes():
    warnings = DatasetWarnings()
    record = make_record(
        stem="s", ir_path=Path("i.png"), vis_path=Path("v.png"), width=100, height=50, split="test",
        class_map=ClassMap(["People", "Car"], {"person": "People"}), warnings=warnings,
        objects=[
            ("person", 10, 10, 20, 40),  # kept as is
            ("Car", -5, 30, 120, 60),  # clipped to 0..100 x 30..50
            ("Car", 100, 10, 130, 20),  # empty after clipping -> dropped
            ("Car", 50, 10, 40, 20),  # inverted -> empty -> dropped
            ("Car", 0, 0, 100.000001, 50),  # float noise: clipped, not counted
            ("tree", 1, 1, 2, 2), ("tree", 1, 1, 2, 2), ("dog", 1, 1, 2, 2),
        ],
    )
    assert record.labels == ("People", "Car", "Car")
    np.testing.assert_allclose(record.boxes, [[10, 10, 20, 40], [0, 30, 100, 50], [0, 0, 100, 50]])
    assert warnings.clipped_boxes == 1 and warnings.dropped_boxes == 2
    assert warnings.unknown_classes == Counter({"tree": 2, "dog": 1})


def test_seeded_split_is_deterministic_with_70_10_20_ratios():
    stems = [f"{i:05d}" for i in range(200)]
    a, b = seeded_split(stems, seed=3), seeded_split(list(reversed(stems)), seed=3)
    assert a == b  # input order does not matter, only the seed
    assert Counter(a.values()) == Counter({"train": 140, "val": 20, "test": 40})
    assert seeded_split(stems, seed=4) != a


def test_split_lists_and_table(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "train.txt").write_text("00001\nIr/00002.png\n\n# comment\n")
    (meta / "test.txt").write_text("00003\n")
    mapping, files = read_split_lists(meta)
    assert mapping == {"00001": "train", "00002": "train", "00003": "test"} and len(files) == 2
    (meta / "val.txt").write_text("00003\n")
    with pytest.raises(InputError, match="two split files"):
        read_split_lists(meta)
    table = tmp_path / "split.txt"
    table.write_text("a test\nb Training\n")
    assert read_split_table(table) == {"a": "test", "b": "train"}
    table.write_text("a holdout\n")
    with pytest.raises(InputError, match=r"split.txt:1: unknown split 'holdout'"):
        read_split_table(table)


def test_assign_splits_prefers_meta_then_table_then_folders_then_seed(tmp_path):
    stems = ["a", "b", "c"]
    mapping, info, notes = assign_splits(stems, root=tmp_path, seed=0)
    assert info.describe().startswith("seeded split (seed 0, 70/10/20") and set(mapping) == set(stems)
    mapping, info, _ = assign_splits(stems, root=tmp_path, seed=0, folder_splits={"a": "train", "b": "test", "c": "test"})
    assert mapping == {"a": "train", "b": "test", "c": "test"} and info.method == "folders"
    (tmp_path / "split.txt").write_text("a val\nb test\nc train\n")
    mapping, info, _ = assign_splits(stems, root=tmp_path, seed=0, table=tmp_path / "split.txt")
    assert mapping["a"] == "val" and info.files == ("split.txt",) and info.method == "split table"
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "test.txt").write_text("b\n")
    mapping, info, notes = assign_splits(stems, root=tmp_path, seed=0, table=tmp_path / "split.txt")
    assert mapping == {"b": "test"} and info.files == ("meta/test.txt",) and info.left_out == 2
    assert "2 pair(s) listed in no split file" in notes[0]
    (tmp_path / "meta" / "test.txt").write_text("b\nzz\n")
    with pytest.raises(InputError, match="1 listed stem.*no image pair: zz"):
        assign_splits(stems, root=tmp_path, seed=0)


def test_corrupt_header_error_even_after_ultralytics_patched_pillow(tmp_path):
    """ultralytics wraps PIL.Image.open to fetch a HEIF plugin on unknown files; we must not go there."""
    import ultralytics.utils.patches  # noqa: F401  (applies the patch)

    from fusedet.datasets.headers import image_size

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"bad\.png: unreadable image header"):
        image_size(bad)
