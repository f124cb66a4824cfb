"""train-fuser's data layer: every layout a dataset reader accepts is found as it is (with the readers'
own code), --data-split gives the readers' splits, fingerprints follow the files, and bad folders or a
crop larger than a pair fail before any pair is decoded. Tiny synthetic pairs, no training."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusedet import train_data
from fusedet.datasets.bbgt import BbgtObject, write_bbgt
from fusedet.datasets.registry import load_dataset
from fusedet.datasets.splits import seeded_split
from fusedet.datasets.voc import write_voc
from fusedet.errors import InputError
from fusedet.train_data import CropDataset, describe_training, find_training_data


def _image(path: Path, seed: int, size=(40, 48), colour=False) -> Path:
    rng = np.random.default_rng(seed)
    shape = (*size, 3) if colour else size
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))
    return path


def _pairs(ir_dir: Path, vis_dir: Path, stems, ext=".png", size=(40, 48)) -> None:
    for i, stem in enumerate(stems):
        _image(ir_dir / f"{stem}{ext}", i, size)
        _image(vis_dir / f"{stem}{ext}", 100 + i, size, colour=True)


def _kaist(root: Path, annotations: bool) -> dict[str, str]:
    """Frames set00/V000/I00000..1 (train sets) and set06/V001/I00000 (test sets) -> their stems' splits."""
    frames = {("set00", "V000", "I00000"): "train", ("set00", "V000", "I00001"): "train", ("set06", "V001", "I00000"): "test"}
    for i, (s, v, name) in enumerate(frames):
        _image(root / "images" / s / v / "lwir" / f"{name}.jpg", i)
        _image(root / "images" / s / v / "visible" / f"{name}.jpg", 10 + i, colour=True)
        if annotations:
            write_bbgt(root / "annotations" / s / v / f"{name}.txt", [BbgtObject("person", 5, 5, 10, 20)])
    return {f"{s}_{v}_{name}": split for (s, v, name), split in frames.items()}


LAYOUTS = {
    # name: (builder(root), expected stems, words the description holds)
    "msrs/tardal flat ir, vi with labels": (
        lambda r: (_pairs(r / "ir", r / "vi", ["00001D", "00002N"]), (r / "labels").mkdir()), ["00001D", "00002N"], "ir/ + vi/"),
    "m3fd Ir, Vis": (lambda r: _pairs(r / "Ir", r / "Vis", ["00000", "00001"]), ["00000", "00001"], "Ir/ + Vis/"),
    "llvip split subfolders": (
        lambda r: (_pairs(r / "infrared" / "train", r / "visible" / "train", ["010001", "010002"], ".jpg"),
                   _pairs(r / "infrared" / "test", r / "visible" / "test", ["190001"], ".jpg")),
        ["010001", "010002", "190001"], "infrared/test/ + visible/test/"),
    "split-first": (
        lambda r: (_pairs(r / "train" / "ir", r / "train" / "vi", ["a"]), _pairs(r / "test" / "ir", r / "test" / "vi", ["b"])),
        ["a", "b"], "train/ir/ + train/vi/"),
    "thermal, rgb": (lambda r: _pairs(r / "Thermal", r / "RGB", ["x"]), ["x"], "Thermal/ + RGB/"),
    "kaist": (lambda r: _kaist(r, annotations=False), ["set00_V000_I00000", "set00_V000_I00001", "set06_V001_I00000"], "kaist"),
    "flir-aligned": (
        lambda r: [(_image(r / "JPEGImages" / f"FLIR_0000{i}_PreviewData.jpeg", i),
                    _image(r / "JPEGImages" / f"FLIR_0000{i}_RGB.jpg", 9 + i, colour=True)) for i in (1, 2)],
        ["FLIR_00001", "FLIR_00002"], "flir-aligned"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_reader_layout_is_found_as_it_is(tmp_path, layout):
    build, stems, words = LAYOUTS[layout]
    root = tmp_path / "data"
    build(root)
    found = find_training_data([root])
    assert [p.stem for p in found.pairs] == stems and [p.key for p in found.pairs] == [f"data/{s}" for s in stems]
    assert found.found == len(stems) and found.roots == (str(root.resolve()),)
    assert words in found.descriptions[0] and f"all {len(stems)} pairs" in found.descriptions[0]
    dataset = CropDataset(found, crop=32)  # and the pairs decode: IR, visible luma
    assert dataset.pairs == len(stems) and dataset[0][0].shape == (1, 32, 32)


def test_data_split_is_the_readers_split(tmp_path):
    llvip = tmp_path / "LLVIP"
    LAYOUTS["llvip split subfolders"][0](llvip)
    train = find_training_data([llvip], "train")
    assert [p.stem for p in train.pairs] == ["010001", "010002"] and train.found == 3
    assert "2 of 3 pairs (train split: folders" in train.descriptions[0]
    assert [p.stem for p in find_training_data([llvip], "test").pairs] == ["190001"]
    with pytest.raises(InputError, match="the val split of .* has no pairs"):
        find_training_data([llvip], "val")

    # a VOC M3FD root without split files: the reader's seeded split (seed 0), pair for pair
    m3fd = tmp_path / "M3FD"
    stems = [f"{i:05d}" for i in range(12)]
    _pairs(m3fd / "Ir", m3fd / "Vis", stems)
    for stem in stems:
        write_voc(m3fd / "Annotation" / f"{stem}.xml", filename=f"{stem}.png", width=48, height=40, depth=3, objects=[])
    reader = load_dataset("m3fd", m3fd)
    for split in ("train", "val", "test"):
        ours = [p.stem for p in find_training_data([m3fd], split).pairs]
        assert ours == [r.stem for r in reader.split(split)] == sorted(s for s, sp in seeded_split(stems, 0).items() if sp == split)
    # split lists (meta/*.txt) and an MSRS split table win over the seeded split, as in the readers
    (m3fd / "meta").mkdir()
    (m3fd / "meta" / "train.txt").write_text("00003\n00005.png\n")
    (m3fd / "meta" / "test.txt").write_text("00007\n")
    assert [p.stem for p in find_training_data([m3fd], "train").pairs] == ["00003", "00005"]
    msrs = tmp_path / "msrs"
    _pairs(msrs / "ir", msrs / "vi", ["00001D", "00002N", "00003N"])
    (msrs / "split.txt").write_text("00001D train\n00002N test\n00003N train\n")
    assert [p.stem for p in find_training_data([msrs], "train").pairs] == ["00001D", "00003N"]


def test_kaist_split_comes_from_its_reader(tmp_path):
    root = tmp_path / "kaist"
    splits = _kaist(root, annotations=True)
    train = find_training_data([root], "train")
    assert [p.stem for p in train.pairs] == sorted(s for s, sp in splits.items() if sp == "train")
    assert "set numbers" in train.descriptions[0]
    bare = tmp_path / "bare"
    _kaist(bare, annotations=False)
    with pytest.raises(InputError, match="comes from the kaist reader"):
        find_training_data([bare], "train")


def test_fingerprint_follows_the_files(tmp_path):
    a, b = tmp_path / "one" / "data", tmp_path / "two" / "data"
    _pairs(a / "ir", a / "vi", ["p0", "p1"])
    _pairs(b / "ir", b / "vi", ["p0"])
    both = find_training_data([a, b])
    assert [p.key for p in both.pairs] == ["data#1/p0", "data#1/p1", "data#2/p0"]  # same folder names kept apart
    first = find_training_data([a]).fingerprint()
    assert first == find_training_data([a]).fingerprint()
    path = a / "vi" / "p1.png"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten: a new modification time
    changed = find_training_data([a]).fingerprint()
    assert [k for k in first if first[k] != changed[k]] == ["data/p1"]
    moved = tmp_path / "moved" / "data"
    moved.parent.mkdir()
    a.rename(moved)  # a moved folder keeps its files' stamps
    assert find_training_data([moved]).fingerprint() == changed
    info = describe_training(find_training_data([moved], "all"), 32, 2, ("auto", "auto"))
    assert info == {"dirs": [str(moved.resolve())], "pairs": 2, "crop": 32, "crops_per_pair": 2, "fingerprint": changed}


def test_bad_folders_and_small_pairs_fail_before_decoding(tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("a pair was decoded")

    monkeypatch.setattr(train_data, "read_pair", no_decoding)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="expected one infrared subfolder .* found: images"):
        find_training_data([tmp_path / "empty"])
    with pytest.raises(InputError, match="not a folder"):
        find_training_data([tmp_path / "missing"])
    two = tmp_path / "two"
    _pairs(two / "ir", two / "vi", ["a"])
    _pairs(two / "infrared", two / "visible", ["a"])
    with pytest.raises(InputError, match="more than one infrared subfolder"):
        find_training_data([two])
    lonely = tmp_path / "lonely"
    _pairs(lonely / "ir", lonely / "vi", ["a"])
    _image(lonely / "ir" / "b.png", 5)
    with pytest.raises(InputError, match="b.png"):
        find_training_data([lonely])
    with pytest.raises(InputError, match="unknown data split 'trainval'"):
        find_training_data([lonely], "trainval")

    mixed = tmp_path / "mixed"
    _pairs(mixed / "ir", mixed / "vi", ["big"], size=(64, 64))
    _pairs(mixed / "ir", mixed / "vi", ["small"], size=(24, 80))
    found = find_training_data([mixed])
    found.check_crop(24)
    with pytest.raises(InputError, match=r"1 pair\(s\) smaller than the crop size 32: mixed/small; the smallest, .*small.png, "
                                         r"is 80x24 \(W x H\): use --crop 24 or less"):
        found.check_crop(32)
    _image(mixed / "vi" / "big.png", 3, size=(60, 64), colour=True)  # IR and visible differ: found from headers too
    with pytest.raises(InputError, match="different sizes"):
        find_training_data([mixed]).check_crop(8)
