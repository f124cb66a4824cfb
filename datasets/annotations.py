"""From raw annotations to a DetectionRecord: class-name matching, box clipping, warning counts.

Every reader (M3FD, MSRS, LLVIP, demo) funnels its objects through :func:`make_record`, so all of
them treat odd input the same way:
- a class name is matched after normalisation (NFKC, invisible characters removed, case folded,
  spaces, ``_`` and ``-`` ignored) against the dataset's canonical names, then through the shared
  alias table (:mod:`fusedet.datasets.class_names`); an unknown name is skipped and counted in
  ``warnings.unknown_classes`` (name as written -> instances; shown with ``repr`` when it holds
  invisible characters);
- a box reaching outside the image is clipped to it and counted in ``warnings.clipped_boxes`` (an
  overshoot below :data:`CLIP_TOLERANCE` pixels, the rounding noise of normalised YOLO labels, is
  clipped without being counted);
- a box that is empty after clipping (width or height <= 0, including inverted corners) is dropped
  and counted in ``warnings.dropped_boxes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from fusedet.datasets.class_names import ClassMatcher
from fusedet.datasets.headers import pair_size
from fusedet.datasets.io import few
from fusedet.datasets.layout import PairFiles
from fusedet.datasets.records import DatasetWarnings, DetectionRecord
from fusedet.errors import InputError

CLIP_TOLERANCE = 0.01  # pixels


class ClassMap:
    """Canonical class names (their order gives category ids) plus accepted aliases.

    Names are matched by :class:`fusedet.datasets.class_names.ClassMatcher`: normalised (NFKC,
    invisible characters removed, case folded, spaces/``_``/``-`` ignored), exact first, then
    through the shared alias table; `aliases` adds dataset-specific spellings.
    """

    def __init__(self, classes: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
        self.classes: list[str] = list(classes)
        self.matcher = ClassMatcher(self.classes, aliases)

    def canonical(self, name: str) -> str | None:
        """The canonical name for `name`, or None if it is neither a class nor an alias."""
        return self.matcher.match(name)


def make_record(
    *,
    stem: str,
    ir_path: Path,
    vis_path: Path,
    width: int,
    height: int,
    objects: Iterable[tuple[str, float, float, float, float]],
    split: str,
    class_map: ClassMap,
    warnings: DatasetWarnings,
) -> DetectionRecord:
    """Build one record from (name, x1, y1, x2, y2) pixel boxes, updating `warnings` in place."""
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[str] = []
    for name, x1, y1, x2, y2 in objects:
        label = class_map.canonical(name)
        if label is None:
            warnings.unknown_classes[name] += 1
            continue
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 <= cx1 or cy2 <= cy1:
            warnings.dropped_boxes += 1
            continue
        if max(abs(cx1 - x1), abs(cy1 - y1), abs(cx2 - x2), abs(cy2 - y2)) > CLIP_TOLERANCE:
            warnings.clipped_boxes += 1
        boxes.append((cx1, cy1, cx2, cy2))
        labels.append(label)
    return DetectionRecord(
        stem=stem,
        ir_path=Path(ir_path),
        vis_path=Path(vis_path),
        width=int(width),
        height=int(height),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=tuple(labels),
        split=split,
    )


def files_by_stem(folder: Path, suffix: str, kind: str, *, skip: Iterable[str] = ()) -> dict[str, Path]:
    """The files under `folder` (any depth) whose suffix is `suffix` (case-insensitive), by stem, but
    those named in `skip`; two of one stem is an error (`kind`: "label file", ...)."""
    skip = {name.lower() for name in skip}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() != suffix or path.name.lower() in skip:
            continue
        if path.stem in found:
            raise InputError(f"two {kind}s share the stem {path.stem!r}: {found[path.stem]}, {path}")
        found[path.stem] = path
    return found


def labelled_pairs(
    pairs: Iterable[PairFiles], splits: Mapping[str, str], label_files: Mapping[str, Path], warnings: DatasetWarnings
) -> Iterator[tuple[PairFiles, str, Path, int, int]]:
    """(pair, split, label file, width, height) for each pair that has a split and a label file;
    pairs in a split without a label file are listed in ``warnings.unannotated_images``."""
    for pair in pairs:
        split = splits.get(pair.stem)
        if split is None:
            continue
        label_path = label_files.get(pair.stem)
        if label_path is None:
            warnings.unannotated_images.append(pair.stem)
            continue
        width, height = pair_size(pair.stem, pair.ir_path, pair.vis_path)
        yield pair, split, label_path, width, height


def note_unmatched(
    warnings: DatasetWarnings,
    records: Sequence[DetectionRecord],
    label_dir: Path,
    label_stems: Iterable[str],
    pair_stems: Iterable[str],
    *,
    kind: str,
    naming: str,
) -> None:
    """Report pairs without a label file and label files without a pair (`kind`: "label file", ...).

    Pairs without labels were skipped by the reader (they are in `warnings.unannotated_images`);
    when no pair at all has one, the folder is surely wrong and that is an error.
    """
    if not records and warnings.unannotated_images:
        raise InputError(f"{label_dir}: no pair has {_article(kind)} {kind} here ({naming} must be named like the images)")
    if warnings.unannotated_images:
        warnings.notes.append(
            f"pairs without annotation were skipped: {len(warnings.unannotated_images)} pair(s) have no {kind} in {label_dir}: "
            f"{few(warnings.unannotated_images)}"
        )
    orphans = sorted(set(label_stems) - set(pair_stems))
    if orphans:
        warnings.notes.append(f"{len(orphans)} {kind}(s) in {label_dir} have no image pair: {few(orphans)}")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
