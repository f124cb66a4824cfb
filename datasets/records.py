"""The record every detection dataset yields, whatever its on-disk layout (M3FD, MSRS, LLVIP, demo)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fusedet.errors import InputError

if TYPE_CHECKING:
    from fusedet.datasets.splits import SplitInfo

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class DetectionRecord:
    """One annotated IR/VIS pair.

    `boxes` is an N x 4 float32 array of pixel coordinates (x1, y1, x2, y2), already clipped to the
    image; `labels` holds the N class names (canonical names of the dataset's `classes`).

    `ignore_boxes` (M x 4, same convention) with `ignore_labels` (M class names) are ignore regions:
    objects the benchmark neither asks for nor penalises (KAIST's ``people``/``cyclist``/``person?``
    and the persons outside its "reasonable" subset, as in the Caltech/KAIST evaluation code). A
    detection that falls on one is neither a true nor a false positive: COCO ground truth writes them
    as ``iscrowd: 1`` annotations of their class, which pycocotools treats exactly so (matched by the
    intersection over the detection's area, the Caltech ``bbGt compOas`` rule for ignore boxes).
    """

    stem: str
    ir_path: Path
    vis_path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: tuple[str, ...]
    split: str
    ignore_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", tuple(self.labels))
        if len(self.labels) != len(boxes):
            raise ValueError(f"{self.stem}: {len(boxes)} boxes but {len(self.labels)} labels")
        ignore = np.asarray(self.ignore_boxes, dtype=np.float32).reshape(-1, 4)
        object.__setattr__(self, "ignore_boxes", ignore)
        object.__setattr__(self, "ignore_labels", tuple(self.ignore_labels))
        if len(self.ignore_labels) != len(ignore):
            raise ValueError(f"{self.stem}: {len(ignore)} ignore boxes but {len(self.ignore_labels)} ignore labels")


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

    def messages(self) -> list[str]:
        """Every warning as one printable line; unknown class names are shown with ``repr`` (invisible
        characters visible), most frequent first. Pairs without annotation are in the notes."""
        out = []
        if self.unknown_classes:
            total = sum(self.unknown_classes.values())
            listed = ", ".join(f"{name!r} x{n}" for name, n in sorted(self.unknown_classes.items(), key=lambda kv: (-kv[1], kv[0])))
            out.append(f"{total} box(es) with a class name matching none of the dataset's classes were skipped: {listed}")
        if self.dropped_boxes:
            out.append(f"{self.dropped_boxes} empty box(es) dropped after clipping to the image")
        if self.clipped_boxes:
            out.append(f"{self.clipped_boxes} box(es) reached outside the image and were clipped")
        out.extend(self.notes)
        return out


@dataclass
class DetectionDataset:
    """A whole dataset: its canonical class names (category ids follow this order), records and warnings."""

    name: str
    root: Path
    classes: list[str]
    records: list[DetectionRecord]
    warnings: DatasetWarnings = field(default_factory=DatasetWarnings)
    split_source: str = ""  # e.g. "meta/test.txt" or "seeded split (seed 0, 70/10/20)"; = split_info.describe()
    split_info: SplitInfo | None = None  # how the splits were made (files, seed, counts), for run.json
    layout: str = ""  # the on-disk layout the reader found, e.g. "voc: Ir/, Vis/, Annotation/*.xml"
    options: dict[str, Any] = field(default_factory=dict)  # reader options that changed the records (KAIST subset, ...)
    stem_of_line: Callable[[str], str] | None = field(default=None, repr=False)  # split-list line -> stem, if not the default

    def __post_init__(self) -> None:
        if self.split_info is not None:
            counts = Counter(r.split for r in self.records)
            self.split_info = replace(self.split_info, counts={s: counts.get(s, 0) for s in SPLITS})
            self.split_source = self.split_info.describe()

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

    def describe_split(self, name: str | None) -> str:
        """One printable line saying which pairs split `name` holds and where that comes from, e.g.
        ``test: 61 of 271 pairs, from split file splits/msrs.txt (STEM SPLIT lines)`` or
        ``all: 271 pairs (every pair of every split)``."""
        chosen = self.split(name)
        if name in (None, "all"):
            return f"all: {len(chosen)} pairs (every pair of every split)"
        source = self.split_source or "the reader"
        return f"{name}: {len(chosen)} of {len(self.records)} pairs, from {source}"

    def provenance(self) -> dict[str, Any]:
        """What run.json records about the data: name, root, layout, options, split method and counts."""
        return {
            "name": self.name,
            "root": str(self.root),
            "layout": self.layout,
            "options": dict(self.options),
            "split": self.split_info.to_dict() if self.split_info is not None else {"description": self.split_source},
            "pairs": len(self.records),
            "classes": list(self.classes),
        }
