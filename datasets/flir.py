"""FLIR-aligned (Zhang et al., "Multispectral fusion for object detection with cyclic fuse-and-refine
blocks", ICIP 2020): 5142 thermal/RGB pairs of the FLIR ADAS v1 set, the RGB frame registered to
the thermal one, 640 x 512; the RGB-thermal detection benchmark of CFR, CFT, ICAFusion and others.

Layout read (the aligned release; folder names case-insensitive; ``ROOT`` may also hold it as
``ROOT/align/``)::

    ROOT/JPEGImages/FLIR_00002_PreviewData.jpeg   thermal (8-bit, stored as 3 equal channels)
    ROOT/JPEGImages/FLIR_00002_RGB.jpg            visible, registered to the thermal frame
    ROOT/Annotations/FLIR_00002_PreviewData.xml   Pascal VOC, root element <Annotation>, drawn on the thermal frame
    ROOT/align_train.txt, align_validation.txt    one stem per line (FLIR_00002_PreviewData); also under ImageSets/Main/
    ROOT/AnnotatedImages/                         the frames with boxes drawn on them: never read

Quirks, as the release and the papers using it have them:
- a pair's stem is ``FLIR_XXXXX`` (the ``_PreviewData`` / ``_RGB`` suffixes removed), in split
  lists too, so a list may name either file or the bare stem;
- ``align_validation.txt`` (1013 pairs) is the set every paper reports on: it is fusedet's
  **test** split; ``align_train.txt`` (4129 pairs) is train; there is no val split. Without the
  lists the split is seeded 70/10/20;
- classes are person, bicycle, car (FLIR's own ``bicycle`` class covers bicycles and motorcycles:
  COCO's motorcycle does not map onto it); the few ``dog`` boxes are not a benchmark class: they are
  skipped and counted in ``warnings.unknown_classes`` (and a note says how many);
- the XML root element is ``<Annotation>`` (read like VOC's ``<annotation>``); VOC's 1-based corners
  become pixel edges as in :mod:`fusedet.datasets.voc`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fusedet.datasets.annotations import ClassMap, files_by_stem, labelled_pairs, make_record, note_unmatched
from fusedet.datasets.class_names import name_key
from fusedet.datasets.io import IMAGE_EXTENSIONS, few
from fusedet.datasets.layout import PairFiles, child_dir
from fusedet.datasets.records import DatasetWarnings, DetectionDataset
from fusedet.datasets.splits import (
    SEEDED_RATIOS,
    SplitInfo,
    assign_splits,
    check_listed,
    read_named_lists,
    relative_name,
    restrict_to_listed,
    seeded_split,
)
from fusedet.datasets.voc import read_voc
from fusedet.errors import InputError

FLIR_CLASSES: tuple[str, ...] = ("person", "bicycle", "car")
SPLIT_LISTS: tuple[tuple[str, str], ...] = (("align_train.txt", "train"), ("align_validation.txt", "test"))
_THERMAL = re.compile(r"^(?P<stem>.+)_PreviewData$", re.IGNORECASE)
_RGB = re.compile(r"^(?P<stem>.+)_RGB$", re.IGNORECASE)


def flir_stem(name: str) -> str:
    """``FLIR_00002_PreviewData.jpeg`` / ``FLIR_00002_RGB.jpg`` / ``JPEGImages/FLIR_00002`` -> ``FLIR_00002``."""
    base = Path(name.replace("\\", "/")).name
    stem = Path(base).stem if Path(base).suffix.lower() in (*IMAGE_EXTENSIONS, ".xml", ".txt") else base
    for pattern in (_THERMAL, _RGB):
        match = pattern.match(stem)
        if match:
            return match.group("stem")
    return stem


def _find_root(root: Path) -> Path:
    if child_dir(root, ["JPEGImages"]) is not None:
        return root
    for name in ("align", "aligned", "FLIR_aligned", "FLIR_align"):
        inner = child_dir(root, [name])
        if inner is not None and child_dir(inner, ["JPEGImages"]) is not None:
            return inner
    raise InputError(f"{root}: no JPEGImages/ folder (FLIR-aligned: JPEGImages/FLIR_XXXXX_PreviewData.jpeg and FLIR_XXXXX_RGB.jpg)")


def _pairs(image_dir: Path) -> list[PairFiles]:
    thermal: dict[str, Path] = {}
    rgb: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        for pattern, found in ((_THERMAL, thermal), (_RGB, rgb)):
            match = pattern.match(path.stem)
            if match:
                stem = match.group("stem")
                if stem in found:
                    raise InputError(f"{image_dir}: two images for {stem!r}: {found[stem].name}, {path.name}")
                found[stem] = path
    if not thermal and not rgb:
        raise InputError(f"{image_dir}: no FLIR_XXXXX_PreviewData / FLIR_XXXXX_RGB images in this folder")
    lonely_t = [thermal[s].name for s in thermal if s not in rgb]
    lonely_r = [rgb[s].name for s in rgb if s not in thermal]
    if lonely_t or lonely_r:
        parts = [f"no RGB partner for: {few(lonely_t)}"] if lonely_t else []
        parts += [f"no thermal partner for: {few(lonely_r)}"] if lonely_r else []
        raise InputError(f"{image_dir}: unpaired images: " + "; ".join(parts))
    return [PairFiles(stem, thermal[stem], rgb[stem], None) for stem in sorted(thermal)]


def _split_lists(root: Path) -> list[tuple[Path, str]]:
    places = [root, root / "ImageSets" / "Main", root / "ImageSets"]
    found = []
    for name, split in SPLIT_LISTS:
        path = next((p / name for p in places if (p / name).is_file()), None)
        if path is not None:
            found.append((path, split))
    return found


def load_flir(root: str | Path, *, seed: int = 0, split_file: str | os.PathLike | None = None) -> DetectionDataset:
    """Read a FLIR-aligned folder (see the module docstring); `split_file` replaces its own split
    (:func:`fusedet.datasets.splits.read_split_file`, stems as in ``align_*.txt``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: dataset root is not a folder")
    root = _find_root(root)
    image_dir = child_dir(root, ["JPEGImages"])
    ann_dir = child_dir(root, ["Annotations", "Annotation"])
    if ann_dir is None:
        raise InputError(f"{root}: missing annotation folder Annotations/ (VOC XML, FLIR_XXXXX_PreviewData.xml)")
    pairs = _pairs(image_dir)
    stems = [p.stem for p in pairs]
    lists = _split_lists(root)
    if split_file is None and lists:
        mapping = read_named_lists(lists, line_stem=flir_stem)
        names = [relative_name(p, root) for p, _ in lists]
        notes = check_listed(mapping, stems, names, root)
        info = SplitInfo("split lists", tuple(names), detail="align_validation.txt is the test split, as in the papers")
        splits, info, notes = restrict_to_listed(stems, mapping, info, notes)
    elif split_file is None:
        splits, info, notes = seeded_split(stems, seed), SplitInfo("seeded", seed=int(seed), stems=len(stems), ratios=SEEDED_RATIOS), []
    else:
        splits, info, notes = assign_splits(stems, root=root, seed=seed, split_file=split_file, line_stem=flir_stem)
    xml_by_name = files_by_stem(ann_dir, ".xml", "annotation file")
    xml_files: dict[str, Path] = {}
    for name, path in xml_by_name.items():
        stem = flir_stem(name)
        if stem in xml_files:
            raise InputError(f"two annotation files for {stem!r}: {xml_files[stem]}, {path}")
        xml_files[stem] = path
    warnings = DatasetWarnings(notes=list(notes))
    class_map = ClassMap(FLIR_CLASSES)
    records = []
    for pair, split, xml, width, height in labelled_pairs(pairs, splits, xml_files, warnings):
        annotation = read_voc(xml)
        records.append(
            make_record(
                stem=pair.stem,
                ir_path=pair.ir_path,
                vis_path=pair.vis_path,
                width=width,
                height=height,
                objects=[(o.name, o.x1, o.y1, o.x2, o.y2) for o in annotation.objects],
                split=split,
                class_map=class_map,
                warnings=warnings,
            )
        )
    note_unmatched(warnings, records, ann_dir, xml_files, stems, kind="annotation file", naming="XML files")
    dogs = sum(n for name, n in warnings.unknown_classes.items() if name_key(name) in ("dog", "dogs"))
    if dogs:
        warnings.notes.append(f"{dogs} dog box(es) skipped: FLIR-aligned's benchmark classes are person, bicycle, car")
    split_names = ", ".join(relative_name(p, root) for p, _ in lists) or "no split lists"
    return DetectionDataset(
        name="flir",
        root=root,
        classes=list(FLIR_CLASSES),
        records=records,
        warnings=warnings,
        split_info=info,
        layout=f"flir-aligned: {image_dir.name}/*_PreviewData.jpeg + *_RGB.jpg, {ann_dir.name}/*.xml (VOC), {split_names}",
        stem_of_line=flir_stem,
    )
