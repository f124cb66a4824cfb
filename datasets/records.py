"""The record every detection dataset yields, whatever its on-disk layout (M3FD, MSRS, LLVIP, demo)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusedet.errors import InputError

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class DetectionRecord:
    """One annotated IR/VIS pair.

    `boxes` is an N x 4 float32 array of pixel coordinates (x1, y1, x2, y2), already clipped to the
    image; `labels` holds the N class names (canonical names of the dataset's `classes`).
    """

    stem: str
    ir_path: Path
    vis_path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: tuple[str, ...]
    split: str

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        object.__setattr__(self, "boxes", boxes)
        if len(self.labels) != len(boxes):
            raise ValueError(f"{self.stem}: {len(boxes)} boxes but {len(self.labels)} labels")


@dataclass
class DatasetWarnings:
    """What a reader skipped or fixed, reported in run.json and on the terminal (never silently)."""

    unknown_classes: Counter = field(default_factory=Counter)  # name -> instances skipped
    dropped_boxes: int = 0  # empty after clipping to the image
    clipped_boxes: int = 0  # reached outside the image and were clipped
    unannotated_images: list[str] = field(default_factory=list)  # stems without an annotation file
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "unknown_classes": dict(sorted(self.unknown_classes.items())),
            "dropped_boxes": self.dropped_boxes,
            "clipped_boxes": self.clipped_boxes,
            "unannotated_images": list(self.unannotated_images),
            "notes": list(self.notes),
        }

    def __bool__(self) -> bool:
        return bool(self.unknown_classes or self.dropped_boxes or self.clipped_boxes or self.unannotated_images or self.notes)


@dataclass
class DetectionDataset:
    """A whole dataset: its canonical class names (category ids follow this order), records and warnings."""

    name: str
    root: Path
    classes: list[str]
    records: list[DetectionRecord]
    warnings: DatasetWarnings = field(default_factory=DatasetWarnings)
    split_source: str = ""  # e.g. "meta/test.txt" or "seeded split (seed 0, 70/10/20)"

    def split(self, name: str | None) -> list[DetectionRecord]:
        """Records of split `name` (train/val/test), or all records for None/"all"."""
        if name in (None, "all"):
            return list(self.records)
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; use one of {', '.join(SPLITS)} or all")
        return [r for r in self.records if r.split == name]

    def instance_counts(self, split: str | None = None) -> dict[str, int]:
        counts = Counter(label for r in self.split(split) for label in r.labels)
        return {c: counts.get(c, 0) for c in self.classes}
