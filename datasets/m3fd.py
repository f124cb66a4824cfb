"""M3FD (Liu et al., CVPR 2022; "M3FD_Detection"): 4200 IR/VIS pairs, 1024x768, Pascal VOC boxes.

Layout read (folder names case-insensitive; see :mod:`fusedet.datasets.voc_dataset` for the rules)::

    ROOT/Ir/00000.png  ROOT/Vis/00000.png  ROOT/Annotation/00000.xml
    ROOT/meta/train.txt, val.txt, test.txt   (optional; one stem per line)

Without ``meta/`` the split is seeded, 70/10/20 (:func:`fusedet.datasets.splits.seeded_split`).
Classes, in the column order of the DMNet paper's Table VII (category ids 1..6 of ground_truth.json):
People, Car, Bus, Motorcycle, Truck, Lamp. Accepted spellings (case, spaces, ``_`` and ``-``
ignored): see :data:`M3FD_ALIASES`; any other name is counted in ``warnings.unknown_classes``.
"""

from __future__ import annotations

from pathlib import Path

from fusedet.datasets.annotations import ClassMap
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.voc_dataset import load_voc_dataset

M3FD_CLASSES: tuple[str, ...] = ("People", "Car", "Bus", "Motorcycle", "Truck", "Lamp")
# Spellings met in M3FD conversions: DCEvo's data/M3FD.yaml writes "people, car, bus, light, moto, trunk".
M3FD_ALIASES: dict[str, str] = {
    "person": "People",
    "persons": "People",
    "pedestrian": "People",
    "cars": "Car",
    "motor": "Motorcycle",
    "moto": "Motorcycle",
    "motorbike": "Motorcycle",
    "trunk": "Truck",
    "light": "Lamp",
    "streetlamp": "Lamp",
    "streetlight": "Lamp",
}


def m3fd_class_map() -> ClassMap:
    return ClassMap(M3FD_CLASSES, M3FD_ALIASES)


def load_m3fd(root: str | Path, *, seed: int = 0, name: str = "m3fd") -> DetectionDataset:
    """Read an M3FD-layout folder (the real M3FD, or the demo generator's output)."""
    return load_voc_dataset(
        name,
        root,
        ir_names=["Ir", "ir", "infrared"],
        vis_names=["Vis", "vi", "visible"],
        annotation_names=["Annotation", "Annotations"],
        class_map=m3fd_class_map(),
        seed=seed,
    )
