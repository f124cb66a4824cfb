"""MSRS (Tang et al., 2022) pairs with YOLO text labels (Lele-3/MSRS-detection-label): person, bicycle, car.

Layout read (as in ``shared/data/msrs``; folder names case-insensitive)::

    ROOT/ir/00004N.png  ROOT/vi/00004N.png         (or ir/{train,test}/..., or {train,test}/ir/...)
    ROOT/labels/00004N.txt       YOLO ``class xc yc w h``, normalised; the "fusion" labels (default)
    ROOT/labels_ir/, labels_vi/  the labels drawn on the infrared / visible images
    ROOT/classes.txt             ``0 person`` ... (else person, bicycle, car)
    ROOT/split.txt               ``STEM split`` lines (optional)

Split: ``meta/{train,val,test}.txt``, else ``split.txt``, else the image subfolders, else seeded
70/10/20. An empty label file is an image without objects; a pair without a label file is skipped
and listed in ``warnings.unannotated_images`` (InputError if no pair has one); a class id outside classes.txt is counted in
``warnings.unknown_classes`` as ``"id K"``. Boxes are clipped/dropped as in
:mod:`fusedet.datasets.annotations`.
"""

from __future__ import annotations

from pathlib import Path

from fusedet.datasets.annotations import ClassMap, files_by_stem, labelled_pairs, make_record, note_unmatched
from fusedet.datasets.layout import child_dir, find_pairs
from fusedet.datasets.records import DatasetWarnings, DetectionDataset
from fusedet.datasets.splits import assign_splits
from fusedet.datasets.yolo_labels import read_class_names, read_yolo_labels, yolo_to_xyxy
from fusedet.errors import InputError

MSRS_CLASSES: tuple[str, ...] = ("person", "bicycle", "car")
# label variant aliases -> folder name
LABEL_VARIANTS: dict[str, str] = {"fusion": "labels", "ir": "labels_ir", "vi": "labels_vi", "vis": "labels_vi"}


def load_msrs(root: str | Path, *, seed: int = 0, labels: str = "labels") -> DetectionDataset:
    """Read an MSRS folder; `labels` picks the label folder: labels (fusion, default), labels_ir, labels_vi.

    The aliases fusion / ir / vi name the same three folders.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: dataset root is not a folder")
    folder_name = LABEL_VARIANTS.get(labels.lower(), labels)
    label_dir = child_dir(root, [folder_name])
    if label_dir is None:
        raise InputError(f"{root}: missing label folder {folder_name}/ (YOLO text labels, one per pair)")
    classes_file = next((p / "classes.txt" for p in (label_dir, root) if (p / "classes.txt").is_file()), None)
    classes = read_class_names(classes_file) if classes_file else list(MSRS_CLASSES)
    class_map = ClassMap(classes)
    pairs = find_pairs(root, ["ir", "infrared"], ["vi", "vis", "visible"])
    stems = [p.stem for p in pairs]
    split_table = root / "split.txt"
    splits, split_source, notes = assign_splits(
        stems, root=root, seed=seed, folder_splits={p.stem: p.folder_split for p in pairs}, table=split_table
    )
    label_files = files_by_stem(label_dir, ".txt", "label file", skip=["classes.txt"])
    warnings = DatasetWarnings(notes=notes)
    records = []
    for pair, split, label_path, width, height in labelled_pairs(pairs, splits, label_files, warnings):
        rows = read_yolo_labels(label_path)
        boxes = yolo_to_xyxy(rows, width, height)
        names = [classes[int(c)] if int(c) < len(classes) else f"id {int(c)}" for c in rows[:, 0]]
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
        name="msrs", root=root, classes=classes, records=records, warnings=warnings, split_source=split_source
    )
