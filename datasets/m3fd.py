"""M3FD (Liu et al., CVPR 2022; "M3FD_Detection"): 4200 IR/VIS pairs, 1024x768, in every layout people hold.

Layouts read (folder names case-insensitive; found automatically, recorded in ``dataset.layout``)::

    VOC (the release):         ROOT/Ir/00000.png  ROOT/Vis/00000.png  ROOT/Annotation/00000.xml
    YOLO (TarDAL, the authors' code):
                               ROOT/ir/00000.png  ROOT/vi/00000.png   ROOT/labels/00000.txt
    YOLO, release folder names: ROOT/Ir/  ROOT/Vis/  ROOT/labels/
    splits (optional):         ROOT/meta/train.txt, val.txt, test.txt, and TarDAL's pred.txt (= test);
                               one stem or file name (``00000.png``) per line

The VOC layout is read by :mod:`fusedet.datasets.voc_dataset`, the YOLO ones by
:mod:`fusedet.datasets.yolo_dataset`. YOLO class ids follow ``classes.txt`` (in ``ROOT/`` or
``labels/``; ``id name`` lines or one name per line) when there is one, else TarDAL's order
(``loader/m3fd.py``): People, Car, Bus, Lamp, Motorcycle, Truck. A root holding both
``Annotation/`` and ``labels/`` is read from the VOC files unless ``annotations="yolo"``.

Without split files the split is seeded, 70/10/20 (:func:`fusedet.datasets.splits.seeded_split`).
Classes, in the column order of the DMNet paper's Table VII (category ids 1..6 of ground_truth.json):
People, Car, Bus, Motorcycle, Truck, Lamp. Names are matched through the shared alias table
(:mod:`fusedet.datasets.class_names`: person/pedestrian, motor/moto/motorbike, trunk,
light/streetlamp/streetlight, ...); any other name is counted in ``warnings.unknown_classes``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fusedet.datasets.annotations import ClassMap
from fusedet.datasets.layout import child_dir
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.voc_dataset import load_voc_dataset
from fusedet.datasets.yolo_dataset import load_yolo_dataset
from fusedet.datasets.yolo_labels import read_class_list
from fusedet.errors import InputError

M3FD_CLASSES: tuple[str, ...] = ("People", "Car", "Bus", "Motorcycle", "Truck", "Lamp")
# The YOLO class-id order of TarDAL's loader/m3fd.py (and of DCEvo's data/M3FD.yaml).
TARDAL_CLASS_ORDER: tuple[str, ...] = ("People", "Car", "Bus", "Lamp", "Motorcycle", "Truck")
IR_NAMES = ["Ir", "ir", "infrared"]
VIS_NAMES = ["Vis", "vi", "visible"]
ANNOTATION_NAMES = ["Annotation", "Annotations"]


def m3fd_class_map() -> ClassMap:
    return ClassMap(M3FD_CLASSES)


def load_m3fd(
    root: str | Path,
    *,
    seed: int = 0,
    name: str = "m3fd",
    annotations: str = "auto",
    split_file: str | os.PathLike | None = None,
) -> DetectionDataset:
    """Read an M3FD folder in any of the layouts of the module docstring (also the demo generator's output).

    `annotations`: "auto" (VOC when ``Annotation/`` exists, else YOLO ``labels/``), "voc" or "yolo".
    `split_file` replaces the dataset's own split (:func:`fusedet.datasets.splits.read_split_file`).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: dataset root is not a folder")
    kind = str(annotations).lower()
    if kind not in ("auto", "voc", "yolo"):
        raise InputError(f"annotations={annotations!r}: expected auto, voc or yolo")
    ann_dir, label_dir = child_dir(root, ANNOTATION_NAMES), child_dir(root, ["labels"])
    if kind == "auto":
        kind = "voc" if ann_dir is not None or label_dir is None else "yolo"
    if kind == "voc":
        dataset = load_voc_dataset(
            name, root, ir_names=IR_NAMES, vis_names=VIS_NAMES, annotation_names=ANNOTATION_NAMES,
            class_map=m3fd_class_map(), seed=seed, split_file=split_file,
        )
        if label_dir is not None:
            dataset.warnings.notes.append(f"{label_dir}: YOLO labels not read (the VOC files in {ann_dir.name}/ were); annotations=yolo reads them")
        return dataset
    if label_dir is None:
        raise InputError(f"{root}: annotations=yolo but there is no labels/ folder (YOLO text labels, one per pair)")
    classes_file = next((p / "classes.txt" for p in (root, label_dir) if (p / "classes.txt").is_file()), None)
    if classes_file is not None:
        id_names, notes = read_class_list(classes_file)
        order = f"class ids from {classes_file.relative_to(root)}"
    else:
        id_names, notes = list(TARDAL_CLASS_ORDER), []
        order = "class ids in TarDAL's order (" + ", ".join(TARDAL_CLASS_ORDER) + ")"
    ir_dir, vis_dir = child_dir(root, IR_NAMES), child_dir(root, VIS_NAMES)
    folders = f"{ir_dir.name if ir_dir else 'ir'}/, {vis_dir.name if vis_dir else 'vi'}/, {label_dir.name}/*.txt"
    tardal = "TarDAL" if (ir_dir and ir_dir.name == "ir" and vis_dir and vis_dir.name == "vi") else "release folder names"
    return load_yolo_dataset(
        name,
        root,
        ir_names=IR_NAMES,
        vis_names=VIS_NAMES,
        label_dir=label_dir,
        id_names=id_names,
        class_map=m3fd_class_map(),
        seed=seed,
        layout=f"yolo ({tardal}): {folders}; {order}",
        split_file=split_file,
        notes=notes,
        options={"annotations": "yolo"} if annotations != "auto" else {},
    )
