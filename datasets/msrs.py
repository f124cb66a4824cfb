"""MSRS (Tang et al., 2022) pairs with YOLO text labels (Lele-3/MSRS-detection-label): person, bicycle, car.

Layout read (as the MSRS detection-label release has it; folder names case-insensitive)::

    ROOT/ir/00004N.png  ROOT/vi/00004N.png         (or ir/{train,test}/..., or {train,test}/ir/...)
    ROOT/labels/00004N.txt       YOLO ``class xc yc w h``, normalised; the "fusion" labels (default)
    ROOT/labels_ir/, labels_vi/  the labels drawn on the infrared / visible images
    ROOT/classes.txt             ``0 person`` ... (else person, bicycle, car)
    ROOT/split.txt               ``STEM split`` lines (optional)

Split: ``split_file`` if given, else ``meta/{train,val,test}.txt``, else ``split.txt``, else the image subfolders, else seeded
70/10/20. An empty label file is an image without objects; a pair without a label file is skipped
and listed in ``warnings.unannotated_images`` (InputError if no pair has one); a class id outside classes.txt is counted in
``warnings.unknown_classes`` as ``"id K"``. Boxes are clipped/dropped as in
:mod:`fusedet.datasets.annotations`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fusedet.datasets.annotations import ClassMap
from fusedet.datasets.layout import child_dir
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.yolo_dataset import load_yolo_dataset
from fusedet.datasets.yolo_labels import read_class_list
from fusedet.errors import InputError

MSRS_CLASSES: tuple[str, ...] = ("person", "bicycle", "car")
# label variant aliases -> folder name
LABEL_VARIANTS: dict[str, str] = {"fusion": "labels", "ir": "labels_ir", "vi": "labels_vi", "vis": "labels_vi"}


def load_msrs(
    root: str | Path, *, seed: int = 0, labels: str = "labels", split_file: str | os.PathLike | None = None
) -> DetectionDataset:
    """Read an MSRS folder; `labels` picks the label folder: labels (fusion, default), labels_ir, labels_vi.

    The aliases fusion / ir / vi name the same three folders. `split_file` (``STEM SPLIT`` lines or a
    plain stem list, :func:`fusedet.datasets.splits.read_split_file`) replaces the dataset's own split.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: dataset root is not a folder")
    folder_name = LABEL_VARIANTS.get(labels.lower(), labels)
    label_dir = child_dir(root, [folder_name])
    if label_dir is None:
        raise InputError(f"{root}: missing label folder {folder_name}/ (YOLO text labels, one per pair)")
    classes_file = next((p / "classes.txt" for p in (label_dir, root) if (p / "classes.txt").is_file()), None)
    classes, notes = read_class_list(classes_file) if classes_file else (list(MSRS_CLASSES), [])
    return load_yolo_dataset(
        "msrs",
        root,
        ir_names=["ir", "infrared"],
        vis_names=["vi", "vis", "visible"],
        label_dir=label_dir,
        id_names=classes,
        class_map=ClassMap(classes),
        seed=seed,
        layout=f"msrs: ir/, vi/, {label_dir.name}/*.txt (YOLO)" + (f", {classes_file.relative_to(root)}" if classes_file else ""),
        split_file=split_file,
        table=root / "split.txt",
        notes=notes,
        options={"labels": label_dir.name},
    )
