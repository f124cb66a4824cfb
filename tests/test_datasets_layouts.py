"""Layouts people hold: M3FD as TarDAL lays it out (ir/ vi/ labels/ YOLO, meta/pred.txt) and with the
release's folder names, FLIR-aligned and KAIST, each built in a tmp folder from the real labelled
M3FD pairs of shared/data/m3fd_samples and checked box for box against the same pairs read through
the M3FD VOC layout (within 2 px: VOC stores 1-based integer corners). Also split files."""

from __future__ import annotations

import codecs
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusedet.datasets.bbgt import BbgtObject, bbgt_to_xyxy, read_bbgt, write_bbgt
from fusedet.datasets.kaist import kaist_stem
from fusedet.datasets.registry import DATASETS, load_dataset
from fusedet.datasets.splits import apply_split_file, read_split_file
from fusedet.datasets.voc import VocObject, write_voc
from fusedet.datasets.yolo_labels import read_class_names, read_yolo_labels, yolo_to_xyxy
from fusedet.errors import InputError

W, H = 1024, 768
TARDAL_ORDER = ["People", "Car", "Bus", "Lamp", "Motorcycle", "Truck"]


@pytest.fixture(scope="module")
def samples(shared_data):
    src = shared_data / "m3fd_samples"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    names = read_class_names(src / "classes.txt")
    assert names == TARDAL_ORDER  # the id order of the labels
    labels = {p.stem: read_yolo_labels(p) for p in sorted((src / "labels").glob("*.txt"))}
    return src, labels


@pytest.fixture(scope="module")
def voc_reference(samples, tmp_path_factory):
    """The pairs read through the M3FD VOC layout (labels written as VOC XML with integer corners)."""
    src, labels = samples
    root = tmp_path_factory.mktemp("voc") / "M3FD"
    _link_images(src, root, "Ir", "Vis")
    for stem, rows in labels.items():
        boxes = np.round(yolo_to_xyxy(rows, W, H))
        write_voc(root / "Annotation" / f"{stem}.xml", filename=f"{stem}.png", width=W, height=H, depth=3,
                  objects=[VocObject(TARDAL_ORDER[int(c)], *map(float, b)) for c, b in zip(rows[:, 0], boxes)])
    ds = load_dataset("m3fd", root)
    assert ds.layout == "voc: Ir/, Vis/, Annotation/*.xml"
    return {r.stem: r for r in ds.records}


def _link_images(src: Path, root: Path, ir: str, vis: str, rename=lambda stem, kind: f"{stem}.png") -> None:
    for sub, dst, kind in (("ir", ir, "ir"), ("vi", vis, "vis")):
        for image in sorted((src / sub).glob("*.png")):
            target = root / dst / rename(image.stem, kind)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(image)


def _boxes_of(record, label):
    return record.boxes[[i for i, lbl in enumerate(record.labels) if lbl == label]]


def _assert_same_boxes(records, reference, label_pairs):
    """For (our label, reference label) pairs: the same boxes, in order, within 2 px."""
    for stem, record in records.items():
        for ours, theirs in label_pairs:
            got, want = _boxes_of(record, ours), _boxes_of(reference[stem], theirs)
            assert got.shape == want.shape, (stem, ours)
            np.testing.assert_allclose(got, want, atol=2.0)


# ---------------------------------------------------------------- M3FD, YOLO layouts

@pytest.mark.parametrize("ir, vis, ext, classes_txt", [
    ("ir", "vi", True, None),  # TarDAL: file names with extensions in meta/, no classes.txt
    ("Ir", "Vis", False, None),  # the release's folder names with YOLO labels
    ("ir", "vi", True, "0 people\n1 car\n2 bus\n3 light\n4 moto\n5 trunk\n"),  # DCEvo's spellings
])
def test_m3fd_yolo_layouts_give_the_voc_boxes(samples, voc_reference, tmp_path, ir, vis, ext, classes_txt):
    src, labels = samples
    root = tmp_path / "m3fd"
    _link_images(src, root, ir, vis)
    (root / "labels").mkdir()
    for stem in labels:
        (root / "labels" / f"{stem}.txt").write_bytes((src / "labels" / f"{stem}.txt").read_bytes())
    if classes_txt:
        (root / "labels" / "classes.txt").write_bytes(codecs.BOM_UTF8 + classes_txt.encode())
    stems = sorted(p.stem for p in (src / "ir").glob("*.png"))
    name = (lambda s: f"{s}.png") if ext else (lambda s: s)
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("".join(f"{name(s)}\n" for s in stems[:6]))
    (root / "meta" / "val.txt").write_text("".join(f"{name(s)}\r\n" for s in stems[6:8]))
    (root / "meta" / "pred.txt").write_bytes("".join(f"{name(s)}\r\n" for s in stems[8:]).encode("utf-16"))
    ds = load_dataset("m3fd", root)
    assert ds.layout.startswith(f"yolo ({'TarDAL' if ir == 'ir' else 'release folder names'}): {ir}/, {vis}/, labels/*.txt")
    assert ("classes.txt" in ds.layout) == bool(classes_txt)
    assert ds.classes == ["People", "Car", "Bus", "Motorcycle", "Truck", "Lamp"]
    assert ds.warnings.unannotated_images == ["00471"] and not ds.warnings.unknown_classes
    splits = {r.stem: r.split for r in ds.records}
    assert [s for s in stems if splits.get(s) == "test"] == [s for s in stems[8:] if s != "00471"]
    assert ds.split_info.method == "split lists" and "pred.txt is the test split" in ds.split_source
    assert ds.instance_counts() == {"People": 90, "Car": 47, "Bus": 2, "Motorcycle": 1, "Truck": 0, "Lamp": 13}  # PROVENANCE.md
    _assert_same_boxes({r.stem: r for r in ds.records}, voc_reference, [(c, c) for c in ds.classes])


def test_m3fd_classes_txt_order_is_followed(samples, tmp_path):
    src, labels = samples
    root = tmp_path / "m3fd"
    _link_images(src, root, "ir", "vi")
    (root / "labels").mkdir()
    for stem in labels:
        (root / "labels" / f"{stem}.txt").write_bytes((src / "labels" / f"{stem}.txt").read_bytes())
    (root / "classes.txt").write_text("Car\nPeople\nBus\nLamp\nMotorcycle\nTruck\n")  # ids 0 and 1 swapped
    counts = load_dataset("m3fd", root).instance_counts()
    assert counts["Car"] == 90 and counts["People"] == 47


def test_m3fd_root_with_voc_and_yolo_reads_voc_unless_asked(samples, tmp_path):
    src, labels = samples
    root = tmp_path / "m3fd"
    _link_images(src, root, "Ir", "Vis")
    stem = next(iter(labels))
    write_voc(root / "Annotation" / f"{stem}.xml", filename="x.png", width=W, height=H, depth=3, objects=[VocObject("Car", 0, 0, 9, 9)])
    (root / "labels").mkdir()
    (root / "labels" / f"{stem}.txt").write_bytes((src / "labels" / f"{stem}.txt").read_bytes())
    ds = load_dataset("m3fd", root)
    assert ds.layout.startswith("voc") and ds.instance_counts()["Car"] == 1 and any("YOLO labels not read" in n for n in ds.warnings.notes)
    ds = load_dataset("m3fd", root, annotations="yolo")
    assert ds.layout.startswith("yolo") and ds.instance_counts() == {
        c: sum(int(TARDAL_ORDER[int(k)] == c) for k in labels[stem][:, 0]) for c in ds.classes
    }


# ---------------------------------------------------------------- FLIR-aligned

FLIR_NAMES = {"People": "person", "Car": "car", "Motorcycle": "bicycle", "Lamp": "dog", "Bus": "bus"}
FLIR_XML = ("<Annotation>\n<filename>{stem}.jpeg</filename>\n"
            "<size><width>{w}</width><height>{h}</height><depth>3</depth></size>\n{objects}</Annotation>\n")
FLIR_OBJ = "<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>\n"


def _flir_root(samples, tmp_path, nested=False):
    src, labels = samples
    root = tmp_path / "FLIR_aligned"
    data = root / "align" if nested else root
    names = {}
    for i, stem in enumerate(sorted(p.stem for p in (src / "ir").glob("*.png"))):
        names[stem] = f"FLIR_{i:05d}"
    _link_images(src, data, "JPEGImages", "JPEGImages",
                 rename=lambda stem, kind: names[stem] + ("_PreviewData.jpeg" if kind == "ir" else "_RGB.jpg"))
    (data / "AnnotatedImages").mkdir()  # boxes drawn on the frames: must never be read
    (data / "Annotations").mkdir()
    for stem, rows in labels.items():
        boxes = np.round(yolo_to_xyxy(rows, W, H)).astype(int)
        objects = "".join(FLIR_OBJ.format(name=FLIR_NAMES[TARDAL_ORDER[int(c)]], x1=b[0] + 1, y1=b[1] + 1, x2=b[2], y2=b[3])
                          for c, b in zip(rows[:, 0], boxes))
        text = FLIR_XML.format(stem=names[stem], w=W, h=H, objects=objects)
        (data / "Annotations" / f"{names[stem]}_PreviewData.xml").write_text(text)
    flir_stems = sorted(names.values())
    (data / "align_train.txt").write_bytes(codecs.BOM_UTF8 + "".join(f"{s}_PreviewData\r\n" for s in flir_stems[:7]).encode())
    (data / "align_validation.txt").write_text("".join(f"{s}_PreviewData\n" for s in flir_stems[7:]))
    return root, names


@pytest.mark.parametrize("nested", [False, True])
def test_flir_aligned_layout_gives_the_voc_boxes_and_counts_dogs(samples, voc_reference, tmp_path, nested):
    root, names = _flir_root(samples, tmp_path, nested)
    ds = load_dataset("flir", root)
    assert ds.classes == ["person", "bicycle", "car"] and ds.layout.startswith("flir-aligned: JPEGImages/")
    by_flir = {v: k for k, v in names.items()}
    assert all(r.ir_path.name.endswith("_PreviewData.jpeg") and r.vis_path.name.endswith("_RGB.jpg") for r in ds.records)
    assert ds.warnings.unknown_classes == {"dog": 13, "bus": 2}  # M3FD's lamps and buses stand in for stray classes
    assert any(n.startswith("13 dog box(es) skipped") for n in ds.warnings.notes)
    flir_stems = sorted(names.values())
    assert {r.stem for r in ds.split("test")} == set(flir_stems[7:]) - {names["00471"]}  # validation = test
    assert ds.split("val") == [] and "align_validation.txt is the test split" in ds.split_source
    records = {by_flir[r.stem]: r for r in ds.records}
    _assert_same_boxes(records, voc_reference, [("person", "People"), ("car", "Car"), ("bicycle", "Motorcycle")])
    assert ds.instance_counts() == {"person": 90, "bicycle": 1, "car": 47}


def test_flir_unpaired_frame_and_split_file(samples, tmp_path):
    root, names = _flir_root(samples, tmp_path)
    split = tmp_path / "mine.txt"
    split.write_text("FLIR_00001_RGB.jpg train\nFLIR_00002 test\n")
    ds = load_dataset("flir", root, split_file=split)
    assert {r.stem: r.split for r in ds.records} == {"FLIR_00001": "train", "FLIR_00002": "test"}
    assert ds.split_info.method == "split file" and ds.split_info.left_out == len(names) - 2
    (root / "JPEGImages" / "FLIR_00003_RGB.jpg").unlink()
    with pytest.raises(InputError, match=r"no RGB partner for: FLIR_00003_PreviewData\.jpeg"):
        load_dataset("flir", root)


# ---------------------------------------------------------------- KAIST

KAIST_LABELS = {"People": "person", "Motorcycle": "cyclist", "Bus": "people", "Lamp": "person?", "Car": "car"}


def _kaist_root(samples, tmp_path, with_images_dir=True, image_sets=True):
    """Frames as set06/V000 (first five) and set01/V002 (rest); objects written as bbGt v3 with
    1-based [l t w h]; a People box gets occlusion flag 2 (heavy) when its index is odd."""
    src, labels = samples
    root = tmp_path / "kaist"
    images = root / "images" if with_images_dir else root
    stems = sorted(p.stem for p in (src / "ir").glob("*.png"))
    frame = {s: (("set06", "V000") if i < 5 else ("set01", "V002"), f"I{i:05d}") for i, s in enumerate(stems)}
    written = {}
    for stem in stems:
        (sv, image) = frame[stem]
        for sub, kind in (("ir", "lwir"), ("vi", "visible")):
            target = images / sv[0] / sv[1] / kind / f"{image}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(src / sub / f"{stem}.png")
        if stem not in labels:
            continue
        objects = []
        for k, (c, b) in enumerate(zip(labels[stem][:, 0], np.round(yolo_to_xyxy(labels[stem], W, H)))):
            name = KAIST_LABELS[TARDAL_ORDER[int(c)]]
            occ = 2 if (name == "person" and k % 2) else 0
            objects.append(BbgtObject(name, b[0] + 1, b[1] + 1, b[2] - b[0], b[3] - b[1], occ))
        path = root / "annotations" / sv[0] / sv[1] / f"{image}.txt"
        write_bbgt(path, objects)
        if stem == stems[0]:
            path.write_bytes(codecs.BOM_UTF8 + path.read_bytes().replace(b"\n", b"\r\n"))  # Windows-saved
        written[kaist_stem(f"{sv[0]}/{sv[1]}/{image}")] = (stem, objects)
    if image_sets:
        (root / "imageSets").mkdir()
        test = [f"{frame[s][0][0]}/{frame[s][0][1]}/{frame[s][1]}" for s in stems[:5]]
        train = [f"{frame[s][0][0]}/{frame[s][0][1]}/{frame[s][1]}" for s in stems[5:]]
        (root / "imageSets" / "test-all-20.txt").write_bytes(codecs.BOM_UTF8 + "\r\n".join(test).encode() + b"\r\n")
        (root / "imageSets" / "train-all-02.txt").write_text("\n".join(train) + "\n")
    return root, written


def test_kaist_layout_gives_the_voc_person_boxes_and_ignore_regions(samples, voc_reference, tmp_path):
    root, written = _kaist_root(samples, tmp_path)
    ds = load_dataset("kaist", root)
    assert ds.classes == ["person"] and ds.options == {"subset": "all"} and ds.layout.startswith("kaist: images/setXX/VXXX/")
    assert ds.split_info.method == "image sets" and {r.stem[:5] for r in ds.split("test")} == {"set06"}
    assert ds.warnings.unknown_classes == {"car": 47}
    records = {written[r.stem][0]: r for r in ds.records}
    _assert_same_boxes(records, voc_reference, [("person", "People")])
    for stem, record in records.items():  # people/cyclist/person? are ignore regions of class person
        ref = voc_reference[stem]
        want = np.concatenate([_boxes_of(ref, c) for c in ("Bus", "Motorcycle", "Lamp")]) if len(ref.labels) else np.zeros((0, 4))
        got = record.ignore_boxes
        assert len(got) == len(want) and record.ignore_labels == ("person",) * len(want)
        key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
        np.testing.assert_allclose(key(got), key(np.asarray(want, np.float32)), atol=2.0)


def test_kaist_reasonable_subset_matches_the_benchmark_rule(samples, tmp_path):
    root, written = _kaist_root(samples, tmp_path)
    ds = load_dataset("kaist", root, subset="reasonable")
    for record in ds.records:
        objects = written[record.stem][1]
        persons = [o for o in objects if o.label == "person"]
        keep = [o for o in persons if o.height >= 55 and o.occlusion <= 1 and o.left >= 5 and o.top >= 5
                and o.left + o.width <= W - 5 and o.top + o.height <= H - 5]
        assert len(record.boxes) == len(keep)
        assert len(record.ignore_boxes) == len(objects) - len(keep) - sum(o.label == "car" for o in objects)
        np.testing.assert_allclose(record.boxes, np.clip(np.reshape([bbgt_to_xyxy(o) for o in keep], (-1, 4)), 0, [W, H, W, H]))
    assert ds.options == {"subset": "reasonable"} and any("outside the reasonable subset" in n for n in ds.warnings.notes)


def test_kaist_set_number_split_without_image_sets_and_without_images_dir(samples, tmp_path):
    root, written = _kaist_root(samples, tmp_path, with_images_dir=False, image_sets=False)
    ds = load_dataset("kaist", root)
    assert ds.split_info.method == "set numbers"
    assert {r.split for r in ds.records if r.stem.startswith("set06")} == {"test"}
    assert {r.split for r in ds.records if r.stem.startswith("set01")} == {"train"}


def test_kaist_partial_image_sets_and_options(samples, tmp_path):
    root, _ = _kaist_root(samples, tmp_path)
    (root / "imageSets" / "train-all-02.txt").write_text("set00/V000/I99999\n")  # none on disk: skipped
    ds = load_dataset("kaist", root)
    assert {r.split for r in ds.records} == {"test"} and any("none of its 1 frames is on disk" in n for n in ds.warnings.notes)
    (root / "imageSets" / "test-all-20.txt").write_text("set06/V000/I00000\nset06/V000/I77777\n")
    with pytest.raises(InputError, match=r"test-all-20\.txt: 1 listed stem\(s\) have no image pair: set06_V000_I77777"):
        load_dataset("kaist", root)
    with pytest.raises(InputError, match=r"subset='hard'"):
        load_dataset("kaist", root, subset="hard")
    with pytest.raises(InputError, match=r"test_list='nope'.*test-all-20"):
        load_dataset("kaist", root, test_list="nope")


def test_bbgt_reader_versions_and_errors(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("% bbGt version=3\nperson 10 20 30 60 1 10 20 30 40 0 0\n")
    [obj] = read_bbgt(path)
    assert (obj.label, obj.left, obj.top, obj.width, obj.height, obj.occlusion) == ("person", 10, 20, 30, 60, 1)
    assert bbgt_to_xyxy(obj) == (9.0, 19.0, 39.0, 79.0)
    path.write_text("person 10 20 30 60 0 0 0 0 0\n")  # no header: version 0, ten fields
    assert read_bbgt(path)[0].ignore is False
    path.write_text("% bbGt version=3\nperson 10 20 30 60 0 0 0 0 0\n")
    with pytest.raises(InputError, match=r"a\.txt:2: bbGt version 3 has 12 fields per object, found 10"):
        read_bbgt(path)
    path.write_text("% bbGt version=9\n")
    with pytest.raises(InputError, match="unknown bbGt version 9"):
        read_bbgt(path)
    assert kaist_stem("images/set06/V000/lwir/I00019.jpg") == kaist_stem("set06_V000_I00019") == "set06_V000_I00019"


def test_registry_lists_the_new_datasets_and_their_options():
    assert {"flir", "kaist"} <= set(DATASETS)
    assert DATASETS["kaist"].options() == ["subset", "annotations", "train_list", "test_list"]
    assert DATASETS["m3fd"].options() == ["annotations"] and "split_file" not in DATASETS["msrs"].options()


# ---------------------------------------------------------------- split files

@pytest.fixture()
def msrs(shared_data):
    root = shared_data / "msrs"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


def test_split_file_with_stem_split_lines_replaces_the_dataset_split(msrs, tmp_path):
    stems = sorted(p.stem for p in (msrs / "ir").glob("*.png"))
    split = tmp_path / "msrs_split.txt"
    lines = [f"{s}.png {'train' if i % 5 < 3 else 'val' if i % 5 == 3 else 'test'}" for i, s in enumerate(stems)]
    split.write_bytes(codecs.BOM_UTF8 + "\r\n".join(["# my split", *lines]).encode())
    ds = load_dataset("msrs", msrs, split_file=split)
    of = ["train" if i % 5 < 3 else "val" if i % 5 == 3 else "test" for i in range(len(stems))]
    counts = {s: of.count(s) for s in ("train", "val", "test")}
    assert ds.split_info.counts == counts and ds.split_info.files == (str(split),)
    assert ds.split_source == f"split file {split} (STEM SPLIT lines): {counts['train']} train, {counts['val']} val, {counts['test']} test pairs"
    assert ds.describe_split("test") == f"test: {counts['test']} of {len(stems)} pairs, from {ds.split_source}"
    assert ds.describe_split("all") == f"all: {len(stems)} pairs (every pair of every split)"


def test_plain_stem_list_split_file_and_unknown_stems_shown_with_repr(msrs, tmp_path):
    stems = sorted(p.stem for p in (msrs / "ir").glob("*.png"))
    plain = tmp_path / "held_out.txt"
    plain.write_text("\n".join(stems[:10]) + "\n")
    ds = load_dataset("msrs", msrs, split_file=plain)
    assert [r.stem for r in ds.split("test")] == stems[:10] and len(ds.records) == 10
    assert "a plain stem list, read as test" in ds.split_source and ds.split_info.left_out == len(stems) - 10
    train = tmp_path / "train.txt"  # named for its split
    train.write_text(stems[0] + "\n")
    assert read_split_file(train)[0] == {stems[0]: "train"}
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{stems[0]}\u200b test\n99999Z test\n")
    with pytest.raises(InputError, match=r"bad\.txt: 2 listed stem\(s\) have no image pair: '" + stems[0] + r"\\u200b', 99999Z"):
        load_dataset("msrs", msrs, split_file=bad)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text(f"{stems[0]} test\n{stems[1]}\n")
    with pytest.raises(InputError, match="mixes 'STEM SPLIT' lines and plain stems"):
        load_dataset("msrs", msrs, split_file=mixed)
    with pytest.raises(InputError, match=r"nothere\.txt: no such split file"):
        load_dataset("msrs", msrs, split_file=tmp_path / "nothere.txt")
    with pytest.raises(InputError, match=r": a folder, not a split file"):
        load_dataset("msrs", msrs, split_file=msrs)


def test_apply_split_file_to_a_loaded_dataset(msrs, tmp_path):
    ds = load_dataset("msrs", msrs)
    stems = [r.stem for r in ds.records]
    split = tmp_path / "s.txt"
    split.write_text(f"{stems[0]} train\n{stems[1]} val\n")
    applied = apply_split_file(ds, split)
    assert [(r.stem, r.split) for r in applied.records] == [(stems[0], "train"), (stems[1], "val")]
    assert applied.split_info.left_out == len(stems) - 2 and ds.records[0].split == "test"  # the original is untouched
    split.write_text("nope train\n")
    with pytest.raises(InputError, match=r"no record in dataset 'msrs'"):
        apply_split_file(ds, split)


def test_images_of_the_layouts_decode(samples, tmp_path):
    """Symlinked PNGs named .jpeg/.jpg decode by content (the FLIR and KAIST names)."""
    root, _ = _flir_root(samples, tmp_path)
    record = load_dataset("flir", root).records[0]
    assert cv2.imread(str(record.ir_path)).shape == (H, W, 3)
