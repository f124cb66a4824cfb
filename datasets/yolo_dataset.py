"""A dataset of IR/VIS pairs with one YOLO text label file per pair (MSRS, M3FD as TarDAL lays it out).

Rules shared by the readers built on it:
- pairs are found by :func:`fusedet.datasets.layout.find_pairs`; label files are found in the label
  folder and its subfolders (``classes.txt`` excepted) and matched to pairs by stem;
- class ids index `id_names` (from a ``classes.txt`` or the dataset's documented order); the
  names are then matched onto the dataset's classes by its :class:`ClassMap` (normalised names,
  shared alias table), so a ``classes.txt`` that says ``people`` or ``moto`` still lands on M3FD's
  People and Motorcycle; an id outside the list is counted in ``warnings.unknown_classes`` as
  ``"id K"``, a name matching no class under its own name;
- an empty label file is an image without objects; a pair without a label file is skipped and
  listed in ``warnings.unannotated_images`` (InputError if no pair has one);
- boxes are clipped/dropped and counted as in :mod:`fusedet.datasets.annotations`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fusedet.datasets.annotations import ClassMap, files_by_stem, labelled_pairs, make_record, note_unmatched
from fusedet.datasets.layout import find_pairs
from fusedet.datasets.records import DatasetWarnings, DetectionDataset
from fusedet.datasets.splits import assign_splits
from fusedet.datasets.yolo_labels import read_yolo_labels, yolo_to_xyxy


def load_yolo_dataset(
    name: str,
    root: Path,
    *,
    ir_names: Sequence[str],
    vis_names: Sequence[str],
    label_dir: Path,
    id_names: Sequence[str],
    class_map: ClassMap,
    seed: int,
    layout: str,
    split_file: str | os.PathLike | None = None,
    table: Path | None = None,
    notes: Sequence[str] = (),
    options: dict | None = None,
) -> DetectionDataset:
    """Read a YOLO-labelled pair dataset (see the module docstring for the rules)."""
    pairs = find_pairs(root, ir_names, vis_names)
    stems = [p.stem for p in pairs]
    splits, split_info, split_notes = assign_splits(
        stems, root=root, seed=seed, folder_splits={p.stem: p.folder_split for p in pairs}, table=table, split_file=split_file
    )
    label_files = files_by_stem(label_dir, ".txt", "label file", skip=["classes.txt"])
    warnings = DatasetWarnings(notes=[*notes, *split_notes])
    records = []
    for pair, split, label_path, width, height in labelled_pairs(pairs, splits, label_files, warnings):
        rows = read_yolo_labels(label_path)
        boxes = yolo_to_xyxy(rows, width, height)
        names = [id_names[int(c)] if int(c) < len(id_names) else f"id {int(c)}" for c in rows[:, 0]]
        records.append(
            make_record(
                stem=pair.stem,
                ir_path=pair.ir_path,
                vis_path=pair.vis_path,
                width=width,
                height=height,
                objects=[(n, *map(float, b)) for n, b in zip(names, boxes)],
                split=split,
                class_map=class_map,
                warnings=warnings,
            )
        )
    note_unmatched(warnings, records, label_dir, label_files, stems, kind="label file", naming="label files")
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
