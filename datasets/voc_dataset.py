"""A dataset of IR/VIS pairs with one Pascal VOC XML per pair (the M3FD and LLVIP layouts).

Rules shared by the readers built on it:
- the annotation folder must exist (InputError otherwise); XML files are found in it and in its
  subfolders, matched to pairs by stem;
- a pair without an XML file is **skipped** and its stem listed in ``warnings.unannotated_images``
  (counting it as an image without objects would turn every detection on it into a false positive);
  if no pair has one, InputError;
  an XML file without a pair is reported in ``warnings.notes``; an XML file with no ``<object>``
  is a valid image without objects;
- image sizes come from the image headers; an IR/VIS size mismatch raises InputError naming both
  files; an XML ``<size>`` that disagrees with the images is reported in the notes (boxes are taken
  in image pixels);
- objects marked ``difficult`` are kept as ordinary objects (COCO-style AP has no "difficult" flag)
  and counted in the notes;
- class names, clipping and empty boxes: see :mod:`fusedet.datasets.annotations`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fusedet.datasets.annotations import ClassMap, files_by_stem, labelled_pairs, make_record, note_unmatched
from fusedet.datasets.io import few
from fusedet.datasets.layout import child_dir, find_pairs
from fusedet.datasets.records import DatasetWarnings, DetectionDataset
from fusedet.datasets.splits import assign_splits
from fusedet.datasets.voc import read_voc
from fusedet.errors import InputError


def load_voc_dataset(
    name: str,
    root: str | Path,
    *,
    ir_names: Sequence[str],
    vis_names: Sequence[str],
    annotation_names: Sequence[str],
    class_map: ClassMap,
    seed: int,
    split_file: str | os.PathLike | None = None,
    layout: str = "",
    options: dict | None = None,
) -> DetectionDataset:
    """Read a VOC-annotated pair dataset (see the module docstring for the rules).

    `split_file` (:func:`fusedet.datasets.splits.read_split_file`) replaces the dataset's own split;
    `layout` is recorded on the dataset (default: the folder names found).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: dataset root is not a folder")
    ann_dir = child_dir(root, annotation_names)
    if ann_dir is None:
        hint = ""
        if child_dir(root, ["labels"]) is not None:
            hint = " (found labels/: YOLO text labels are not read by this reader, convert them to VOC XML)"
        raise InputError(f"{root}: missing annotation folder {annotation_names[0]}/ (Pascal VOC XML, one per pair){hint}")
    pairs = find_pairs(root, ir_names, vis_names)
    xml_files = files_by_stem(ann_dir, ".xml", "annotation file")
    stems = [p.stem for p in pairs]
    splits, split_info, notes = assign_splits(
        stems, root=root, seed=seed, folder_splits={p.stem: p.folder_split for p in pairs}, split_file=split_file
    )
    warnings = DatasetWarnings(notes=notes)
    records = []
    size_mismatch: list[str] = []
    difficult = 0
    for pair, split, xml, width, height in labelled_pairs(pairs, splits, xml_files, warnings):
        annotation = read_voc(xml)
        if annotation.width is not None and (annotation.width, annotation.height) != (width, height):
            size_mismatch.append(f"{pair.stem} ({annotation.width}x{annotation.height} vs {width}x{height})")
        difficult += sum(obj.difficult for obj in annotation.objects)
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
    if size_mismatch:
        warnings.notes.append(
            f"{len(size_mismatch)} annotation(s) give a <size> other than the image's (boxes taken in image pixels): "
            f"{few(size_mismatch)}"
        )
    if difficult:
        warnings.notes.append(f"{difficult} object(s) marked difficult were kept as ordinary objects")
    if not layout:
        ir_dir, vis_dir = pairs[0].ir_path.parent, pairs[0].vis_path.parent
        layout = f"voc: {_rel(ir_dir, root)}/, {_rel(vis_dir, root)}/, {ann_dir.name}/*.xml"
    return DetectionDataset(
        name=name,
        root=root,
        classes=list(class_map.classes),
        records=records,
        warnings=warnings,
        split_info=split_info,
        layout=layout,
        options=dict(options or {}),
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
