"""The one text reader (byte-order marks, UTF-16, declared XML encodings, undecodable files) and
class-name normalisation, through every reader that takes text: VOC XML, split lists, split
tables, classes.txt, YOLO label files, CSV."""

from __future__ import annotations

import codecs
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusedet.datasets.class_names import ClassMatcher, name_key
from fusedet.datasets.registry import load_dataset
from fusedet.datasets.text import clean_name, decode_text, parse_xml, read_csv_rows, read_lines, read_text, shown
from fusedet.datasets.voc import read_voc
from fusedet.datasets.yolo_labels import read_class_list, read_yolo_labels
from fusedet.errors import InputError

ENCODINGS = [
    ("utf-8-sig", codecs.BOM_UTF8),
    ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-32-le", codecs.BOM_UTF32_LE),
]


def _bytes(text: str, codec: str, bom: bytes) -> bytes:
    body = text.encode(codec)
    return body if body.startswith(bom) else bom + body


@pytest.mark.parametrize("codec, bom", ENCODINGS)
def test_byte_order_marks_are_removed_and_name_the_encoding(tmp_path, codec, bom):
    path = tmp_path / "list.txt"
    path.write_bytes(_bytes("00000\r\nIr/00001.png\r\n", codec, bom))
    assert read_text(path) == "00000\r\nIr/00001.png\r\n"
    assert read_lines(path) == ["00000", "Ir/00001.png"]


def test_utf16_without_mark_crlf_and_stray_marks_between_concatenated_files(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("a\r\nb\r\n".encode("utf-16-le"))
    assert read_lines(path) == ["a", "b"]
    path.write_bytes("\ufeffa\n".encode() + "\ufeffb\u200b \n\n".encode())  # two files with BOMs, concatenated
    assert read_lines(path) == ["a", "b", ""]


def test_undecodable_and_binary_files_are_one_line_errors_naming_the_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("0 行人\n".encode("gbk"))  # GBK without any declaration: not UTF-8
    with pytest.raises(InputError, match=r"classes\.txt: cannot decode as utf-8 .*offset 2"):
        read_text(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    with pytest.raises(InputError, match=r"classes\.txt: not a text file"):
        read_text(path)
    with pytest.raises(InputError, match=r"nothere\.txt: no such split list"):
        read_text(tmp_path / "nothere.txt", kind="split list")


XML = '<?xml version="1.0" encoding="{enc}"?>\n<annotation><size><width>64</width><height>48</height></size>{objects}</annotation>\n'
OBJ = "<object><name>{name}</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>"


@pytest.mark.parametrize("declared, codec, name", [
    ("GBK", "gbk", "行人"),
    ("GB2312", "gb18030", "喆人"),  # 喆 is in GBK/GB18030 but not GB2312: Windows tools write it under the old name
    ("gb2312", "gb2312", "汽车"),
    ("Big5", "big5", "行人"),
    ("Shift_JIS", "cp932", "歩行者"),
    ("ISO-8859-1", "latin-1", "Piéton"),
    ("windows-1252", "cp1252", "Fußgänger"),
    ("UTF-16", "utf-16", "行人"),  # with its own BOM
])
def test_voc_xml_in_declared_legacy_encodings(tmp_path, declared, codec, name):
    path = tmp_path / "a.xml"
    path.write_bytes(XML.format(enc=declared, objects=OBJ.format(name=name) + OBJ.format(name="People")).encode(codec))
    annotation = read_voc(path)
    assert [o.name for o in annotation.objects] == [name, "People"]
    assert (annotation.width, annotation.height) == (64, 48)
    assert annotation.objects[0].x1 == 1.0 and annotation.objects[0].y2 == 20.0


def test_xml_declared_encoding_errors_and_utf16_without_mark(tmp_path):
    path = tmp_path / "a.xml"
    path.write_bytes(XML.format(enc="klingon-7", objects="").encode())
    with pytest.raises(InputError, match=r"a\.xml: declares an unknown encoding 'klingon-7'"):
        read_voc(path)
    path.write_bytes(XML.format(enc="UTF-8", objects=OBJ.format(name="行人")).encode("gbk"))
    with pytest.raises(InputError, match=r"a\.xml: cannot decode as UTF-8 \(its XML declaration"):
        read_voc(path)
    path.write_bytes(XML.format(enc="UTF-16", objects=OBJ.format(name="Car")).encode("utf-16-le"))
    assert read_voc(path).objects[0].name == "Car"
    path.write_bytes(codecs.BOM_UTF8 + XML.format(enc="GBK", objects=OBJ.format(name="行人")).encode())  # the mark wins
    assert parse_xml(path).find("object/name").text == "行人"
    path.write_bytes(b"<annotation><object></annotation>")
    with pytest.raises(InputError, match=r"a\.xml: malformed XML"):
        read_voc(path)


def test_names_are_normalised_and_shown_with_repr_when_invisible():
    assert clean_name("\ufeffPeople\u200b") == "People" and clean_name("Ｃａｒ") == "Car" and clean_name(" street\u00a0lamp ") == "street lamp"
    assert name_key("Motor-Cycle") == name_key("motor cycle") == name_key("MOTOR_CYCLE\u200d")
    assert shown("00000") == "00000" and shown("\ufeff00000") == "'\\ufeff00000'" and shown("a\u00a0b") == "'a\\xa0b'"
    assert shown("行人") == "行人" and shown(" x") == "' x'"


def test_class_matcher_exact_first_then_one_alias_table():
    m3fd = ClassMatcher(["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"])
    names = ["person", "PEDESTRIAN", "ｐｅｏｐｌｅ", "People\u200b", "moto", "trunk", "street light", "traffic light", "dog"]
    got = {n: m3fd.match(n) for n in names}
    assert got == {"person": "People", "PEDESTRIAN": "People", "ｐｅｏｐｌｅ": "People", "People\u200b": "People", "moto": "Motorcycle",
                   "trunk": "Truck", "street light": "Lamp", "traffic light": None, "dog": None}
    kaist_like = ClassMatcher(["person", "people"])  # two classes of one alias group stay apart
    assert kaist_like.match("pedestrian") is None and kaist_like.match("People") == "people"
    # a model with both 'people' and 'person': only the exact name maps onto People
    assert m3fd.match_all({0: "people", 1: "person", 2: "car"}) == {0: "People", 2: "Car"}
    assert m3fd.match_all({0: "person", 1: "car"}) == {0: "People", 1: "Car"}
    with pytest.raises(ValueError, match="same name"):
        ClassMatcher(["person", "Person"])


def test_classes_txt_and_label_files_with_marks_and_invisible_characters(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_bytes(codecs.BOM_UTF8 + "0 per\u200bson\u200b\r\n1 bicycle\r\n2 ｃａｒ\r\n".encode())
    names, notes = read_class_list(classes)
    assert names == ["person", "bicycle", "car"]
    assert len(notes) == 2 and "'per\\u200bson' read as 'person'" in notes[0] and "'ｃａｒ' read as 'car'" in notes[1]
    classes.write_bytes("person\nPerson\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"classes\.txt: class names person and Person are the same name"):
        read_class_list(classes)
    label = tmp_path / "00000.txt"
    label.write_bytes("0  0.5 0.5 0.25 0.5 \r\n".encode("utf-16"))
    np.testing.assert_allclose(read_yolo_labels(label), [[0, 0.5, 0.5, 0.25, 0.5]])


def test_csv_rows_through_the_reader(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_bytes(codecs.BOM_UTF8 + 'stem,group\r\n00000,"night, rain"\r\n\u200b00001 ,day\r\n'.encode())
    assert read_csv_rows(path) == [["stem", "group"], ["00000", "night, rain"], ["00001", "day"]]


def test_decode_text_is_the_same_function_readers_use():
    assert decode_text("\ufeffx".encode("utf-8")) == "x"
    assert decode_text(codecs.BOM_UTF16_BE + "x".encode("utf-16-be")) == "x"


# ---- every reader's text inputs, saved the Windows way ----

def _png(path: Path, width=64, height=48, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width) if channels == 1 else (height, width, channels)
    assert cv2.imwrite(str(path), np.full(shape, 90, np.uint8))


def _windows(path: Path, text: str, codec: str = "utf-8-sig") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", "\r\n").encode(codec))


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16"])
def test_m3fd_voc_reader_with_marked_split_lists_and_gbk_xml(tmp_path, codec):
    root = tmp_path / "m3fd"
    for stem in ("00000", "00001", "00002"):
        _png(root / "Ir" / f"{stem}.png")
        _png(root / "Vis" / f"{stem}.png", channels=3)
        body = XML.format(enc="GBK", objects=OBJ.format(name="Ｐｅｏｐｌｅ\u3000") + OBJ.format(name="行人") + OBJ.format(name="Car"))
        (root / "Annotation").mkdir(exist_ok=True)
        (root / "Annotation" / f"{stem}.xml").write_bytes(body.encode("gbk"))
    _windows(root / "meta" / "test.txt", "00000\n", codec)
    _windows(root / "meta" / "train.txt", "00001.png\n00002\n", codec)
    ds = load_dataset("m3fd", root)
    assert {r.stem: r.split for r in ds.records} == {"00000": "test", "00001": "train", "00002": "train"}
    assert ds.instance_counts() == {"People": 3, "Car": 3, "Bus": 0, "Motorcycle": 0, "Truck": 0, "Lamp": 0}
    assert ds.warnings.unknown_classes == Counter({"行人": 3})
    assert any("'行人' x3" in m for m in ds.warnings.messages())


def test_msrs_reader_with_marked_classes_split_table_and_labels(tmp_path):
    root = tmp_path / "msrs"
    for stem in ("00001D", "00002N"):
        _png(root / "ir" / f"{stem}.png")
        _png(root / "vi" / f"{stem}.png", channels=3)
        _windows(root / "labels" / f"{stem}.txt", "2 0.5 0.5 0.25 0.5\n0 0.25 0.25 0.125 0.25\n", "utf-16")
    _windows(root / "classes.txt", "0 person\n1 bicycle\n2 c\u200bar\n")
    _windows(root / "split.txt", "00001D train\n00002N test\n")
    ds = load_dataset("msrs", root)
    assert ds.classes == ["person", "bicycle", "car"]
    assert {r.stem: r.split for r in ds.records} == {"00001D": "train", "00002N": "test"}
    assert ds.instance_counts() == {"person": 2, "bicycle": 0, "car": 2}
    np.testing.assert_allclose(ds.records[0].boxes, [[24, 12, 40, 36], [12, 6, 20, 18]])
    assert any("'c\\u200bar' read as 'car'" in n for n in ds.warnings.notes)


def test_llvip_reader_with_marked_meta_lists(tmp_path):
    root = tmp_path / "llvip"
    for stem in ("010001", "010002"):
        _png(root / "infrared" / f"{stem}.jpg")
        _png(root / "visible" / f"{stem}.jpg", channels=3)
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_bytes(XML.format(enc="utf-8", objects=OBJ.format(name="person")).encode("utf-16"))
    _windows(root / "meta" / "test.txt", "010002.jpg\n", "utf-16")
    _windows(root / "meta" / "train.txt", "010001\n")
    ds = load_dataset("llvip", root)
    assert {r.stem: r.split for r in ds.records} == {"010001": "train", "010002": "test"}
    assert ds.instance_counts() == {"person": 2}


def test_bom_split_case_from_shared_cases(shared_data):
    """shared/cases/03: meta/test.txt is EF BB BF '00000' CRLF; the test split must be {00000}."""
    case = shared_data.parent / "cases" / "03-split-file-bom" / "case"
    if not case.is_dir():
        pytest.skip(f"{case} not found")
    ds = load_dataset("m3fd", case)
    assert [r.stem for r in ds.split("test")] == ["00000"] and [r.stem for r in ds.split("train")] == ["00001"]
    assert len(ds.split("all")) == 2
