"""LLVIP (Jia et al., ICCV workshops 2021): 15488 aligned IR/VIS pairs at night, 1280x1024, class person.

Layout read (folder names case-insensitive; rules in :mod:`fusedet.datasets.voc_dataset`)::

    ROOT/infrared/{train,test}/010001.jpg  ROOT/visible/{train,test}/010001.jpg  ROOT/Annotations/010001.xml

The split comes from the subfolder. Flat ``infrared/`` and ``visible/`` folders are accepted too;
their split comes from ``meta/{train,val,test}.txt`` if present, else a seeded 70/10/20 split.
The one class is ``person`` (``people``/``pedestrian`` and the rest of the shared alias table accepted).
"""

from __future__ import annotations

import os
from pathlib import Path

from fusedet.datasets.annotations import ClassMap
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.voc_dataset import load_voc_dataset

LLVIP_CLASSES: tuple[str, ...] = ("person",)


def load_llvip(root: str | Path, *, seed: int = 0, split_file: str | os.PathLike | None = None) -> DetectionDataset:
    """Read an LLVIP-layout folder; `split_file` replaces its own split (:func:`fusedet.datasets.splits.read_split_file`)."""
    return load_voc_dataset(
        "llvip",
        root,
        ir_names=["infrared", "ir"],
        vis_names=["visible", "vis", "vi"],
        annotation_names=["Annotations", "Annotation"],
        class_map=ClassMap(LLVIP_CLASSES),
        seed=seed,
        split_file=split_file,
    )
