"""KAIST multispectral pedestrian benchmark (Hwang et al., CVPR 2015): 95k aligned colour/thermal
frames, 640 x 512, from 12 drives (set00-set05 train, set06-set11 test), labelled person, people,
cyclist and person? in Piotr Dollar's bbGt text format.

Layout read (folder names case-insensitive; ``images/`` may be left out)::

    ROOT/images/set06/V000/visible/I00019.jpg     visible (RGB)
    ROOT/images/set06/V000/lwir/I00019.jpg        thermal (long-wave IR, stored as 3 equal channels)
    ROOT/annotations/set06/V000/I00019.txt        ``% bbGt version=3`` + one object per line
                                                  (also flat: annotations/set06_V000_I00019.txt)
    ROOT/imageSets/train-all-02.txt, test-all-20.txt, ...   lines ``set06/V000/I00019`` (optional)

A frame's stem is ``set06_V000_I00019``; split lines may name a frame as ``set06/V000/I00019``, as
the stem, or by an image path. Splits: a user's split file, else ``imageSets/`` lists (train:
``train_list`` option or the first of train-all-02, train-all-04, train-all-20, train20 present;
test: ``test_list`` or test-all-20, test20 — the standard 2252-frame test set), else the set number
(set00-set05 train, set06-set11 test). KAIST has no val split. A list none of whose frames is on
disk (the user holds only the test part) is skipped with a note; a list naming some absent frames is
an error. ``annotations=`` picks another annotation folder (the improved test annotations of Liu et
al. or the sanitised training ones of Li et al., laid out the same way).

Labels, mapped as the benchmark's own evaluation does (``kaist_eval_full.m``: ``lbls={'person'}``,
``ilbls={'people','person?','cyclist'}``): ``person`` boxes are the ground truth of the one class
``person``; ``people`` (a crowd), ``cyclist`` and ``person?`` (unsure) boxes, and boxes flagged
``ign``, are **ignore regions** (:class:`fusedet.datasets.records.DetectionRecord`): a detection on
them is neither a true nor a false positive. Any other label is counted in
``warnings.unknown_classes``. Option ``subset``:

- ``all`` (default): every ``person`` box counts;
- ``reasonable`` (the benchmark's headline setting): a ``person`` counts when its height is at least
  55 px, its occlusion is none or partial (flag 0 or 1), and it lies inside the image less a 5 px
  border (x in [5, W - 5], y in [5, H - 5] in bbGt's 1-based coordinates: ``xRng [5 635]``,
  ``yRng [5 507]`` for 640 x 512); every other person becomes an ignore region.

Boxes are bbGt's ``[l t w h]`` in 1-based pixels, converted to 0-based edges by
:func:`fusedet.datasets.bbgt.bbgt_to_xyxy` and clipped to the image (counted as usual).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from fusedet.datasets.annotations import ClassMap, labelled_pairs, make_record, note_unmatched
from fusedet.datasets.bbgt import bbgt_to_xyxy, read_bbgt
from fusedet.datasets.io import IMAGE_EXTENSIONS, few
from fusedet.datasets.layout import PairFiles, child_dir
from fusedet.datasets.records import DatasetWarnings, DetectionDataset
from fusedet.datasets.splits import (
    SplitInfo,
    assign_splits,
    check_listed,
    read_named_lists,
    relative_name,
    restrict_to_listed,
)
from fusedet.errors import InputError

KAIST_CLASSES: tuple[str, ...] = ("person",)
IGNORE_LABELS: tuple[str, ...] = ("people", "person?", "cyclist")
SUBSETS: tuple[str, ...] = ("all", "reasonable")
REASONABLE_MIN_HEIGHT = 55.0  # px, kaist_eval_full.m 'Reasonable-all' hRng [55 inf]
REASONABLE_MAX_OCCLUSION = 1  # vType {'none', 'partial'}: occ flags 0 and 1
BORDER = 5.0  # px, xRng [5 635], yRng [5 507] for 640 x 512 frames
TRAIN_SETS, TEST_SETS = range(0, 6), range(6, 12)
TRAIN_LISTS = ("train-all-02", "train-all-04", "train-all-20", "train20")
TEST_LISTS = ("test-all-20", "test20")
ANNOTATION_NAMES = ("annotations", "annotation", "annotations-txt", "annotations_txt")
_FRAME = re.compile(r"(set\d+)[/\\_](V\d+)[/\\_](?:.*[/\\_])?(I\d+)", re.IGNORECASE)


def kaist_stem(line: str) -> str:
    """``set06/V000/I00019``, ``set06_V000_I00019``, ``images/set06/V000/lwir/I00019.jpg`` -> ``set06_V000_I00019``."""
    text = line.strip().replace("\\", "/")
    text = re.sub(r"\.(jpe?g|png|bmp|tiff?|txt|xml)$", "", text, flags=re.IGNORECASE)
    match = _FRAME.search(text)
    if match is None:
        return text
    s, v, i = match.groups()
    return f"{s.lower()}_{v.upper()}_{i.upper()}"


def _frames(image_root: Path) -> list[PairFiles]:
    pairs: dict[str, PairFiles] = {}
    lonely: list[str] = []
    for set_dir in sorted(p for p in image_root.iterdir() if p.is_dir() and re.fullmatch(r"set\d+", p.name, re.IGNORECASE)):
        for video in sorted(p for p in set_dir.iterdir() if p.is_dir() and re.fullmatch(r"V\d+", p.name, re.IGNORECASE)):
            lwir, visible = child_dir(video, ["lwir"]), child_dir(video, ["visible"])
            if lwir is None or visible is None:
                raise InputError(f"{video}: expected lwir/ and visible/ folders")
            vis_files = {p.stem: p for p in visible.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}
            seen = set()
            for ir in sorted(p for p in lwir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
                stem = kaist_stem(f"{set_dir.name}/{video.name}/{ir.stem}")
                seen.add(ir.stem)
                if ir.stem not in vis_files:
                    lonely.append(str(ir))
                    continue
                pairs[stem] = PairFiles(stem, ir, vis_files[ir.stem], None)
            lonely += [str(p) for s, p in vis_files.items() if s not in seen]
    if lonely:
        raise InputError(f"unpaired KAIST frames (lwir/ and visible/ must hold the same frames): {few(sorted(lonely))}")
    if not pairs:
        raise InputError(f"{image_root}: no KAIST frames (setXX/VXXX/lwir/IXXXXX.jpg with visible/ beside it)")
    return [pairs[s] for s in sorted(pairs)]


def _annotation_files(ann_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(ann_dir.rglob("*.txt")):
        rel = path.relative_to(ann_dir).as_posix()
        stem = kaist_stem(rel)
        if not _FRAME.search(rel):
            continue
        if stem in found:
            raise InputError(f"two annotation files for {stem!r}: {found[stem]}, {path}")
        found[stem] = path
    return found


def _pick_list(sets_dir: Path, wanted: str | None, defaults: tuple[str, ...], kind: str) -> Path | None:
    files = {p.stem.lower(): p for p in sets_dir.iterdir() if p.is_file() and p.suffix.lower() == ".txt"}
    if wanted is not None:
        path = Path(wanted).expanduser()
        if path.is_file():
            return path
        found = files.get(Path(wanted).stem.lower())
        if found is None:
            raise InputError(f"{kind}={wanted!r}: no such list in {sets_dir} (lists there: {', '.join(sorted(files)) or 'none'})")
        return found
    for name in defaults:
        if name in files:
            return files[name]
    candidates = [p for name, p in sorted(files.items()) if name.startswith(kind.split("_")[0])]
    if len(candidates) > 1:
        raise InputError(f"{sets_dir}: several {kind.split('_')[0]} lists ({', '.join(p.name for p in candidates)}); choose one with {kind}=NAME")
    return candidates[0] if candidates else None


def _image_set_splits(stems, root, sets_dir, train_list, test_list):
    chosen = [(p, s) for p, s in ((_pick_list(sets_dir, train_list, TRAIN_LISTS, "train_list"), "train"),
                                    (_pick_list(sets_dir, test_list, TEST_LISTS, "test_list"), "test")) if p is not None]
    if not chosen:
        return None
    present, notes, used = set(stems), [], []
    for path, split in chosen:
        listed = read_named_lists([(path, split)], line_stem=kaist_stem)
        if listed and not present.intersection(listed):
            notes.append(f"{relative_name(path, root)}: none of its {len(listed)} frames is on disk; list not used")
        else:
            used.append((path, split))
    if not used:
        raise InputError(f"{sets_dir}: no frame of {', '.join(p.name for p, _ in chosen)} is on disk under {root}")
    mapping = read_named_lists(used, line_stem=kaist_stem)
    names = [relative_name(p, root) for p, _ in used]
    notes += check_listed(mapping, stems, names, root)
    return restrict_to_listed(stems, mapping, SplitInfo("image sets", tuple(names), detail="KAIST has no val split"), notes)


def _set_number_splits(stems):
    mapping, other = {}, []
    for stem in stems:
        number = int(stem[3:].split("_")[0])
        split = "train" if number in TRAIN_SETS else "test" if number in TEST_SETS else None
        if split is None:
            other.append(stem)
        else:
            mapping[stem] = split
    notes = [f"{len(other)} frame(s) from sets outside set00-set11 were left out: {few(other)}"] if other else []
    info = SplitInfo("set numbers", detail="set00-set05 train, set06-set11 test; KAIST has no val split", left_out=len(other))
    return mapping, info, notes


def load_kaist(
    root: str | Path,
    *,
    seed: int = 0,
    subset: str = "all",
    annotations: str | None = None,
    train_list: str | None = None,
    test_list: str | None = None,
    split_file: str | os.PathLike | None = None,
) -> DetectionDataset:
    """Read a KAIST folder (see the module docstring for the layout, the options and the label mapping)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: dataset root is not a folder")
    subset = str(subset).lower()
    if subset not in SUBSETS:
        raise InputError(f"subset={subset!r}: expected one of {', '.join(SUBSETS)}")
    image_root = child_dir(root, ["images"]) or root
    if annotations is not None:
        ann_dir = Path(annotations).expanduser()
        ann_dir = ann_dir if ann_dir.is_absolute() else root / ann_dir
        if not ann_dir.is_dir():
            raise InputError(f"annotations={annotations!r}: {ann_dir} is not a folder")
    else:
        ann_dir = child_dir(root, ANNOTATION_NAMES)
        if ann_dir is None:
            raise InputError(f"{root}: missing annotation folder annotations/ (bbGt text files, annotations/setXX/VXXX/IXXXXX.txt)")
    pairs = _frames(image_root)
    stems = [p.stem for p in pairs]
    sets_dir = child_dir(root, ["imageSets", "image_sets"])
    if split_file is not None:
        splits, info, notes = assign_splits(stems, root=root, seed=seed, split_file=split_file, line_stem=kaist_stem)
    else:
        chosen = _image_set_splits(stems, root, sets_dir, train_list, test_list) if sets_dir is not None else None
        if chosen is None and (train_list or test_list):
            raise InputError(f"{root}: train_list/test_list given but there is no imageSets/ folder")
        splits, info, notes = chosen if chosen is not None else _set_number_splits(stems)
    ann_files = _annotation_files(ann_dir)
    warnings = DatasetWarnings(notes=list(notes))
    class_map = ClassMap(KAIST_CLASSES)
    ignored = Counter()
    records = []
    for pair, split, ann, width, height in labelled_pairs(pairs, splits, ann_files, warnings):
        objects, ignore_boxes = [], []
        for obj in read_bbgt(ann):
            label = obj.label.strip().lower()
            box = bbgt_to_xyxy(obj)
            if label == "person" and not obj.ignore:
                if subset == "all" or _reasonable(obj, width, height):
                    objects.append(("person", *box))
                else:
                    ignored["person outside the reasonable subset"] += 1
                    ignore_boxes.append(box)
            elif label in IGNORE_LABELS or (label == "person" and obj.ignore):
                ignored[label + (" (ign flag)" if label == "person" else "")] += 1
                ignore_boxes.append(box)
            else:
                objects.append((obj.label, *box))  # an unknown label: counted by make_record
        record = make_record(
            stem=pair.stem, ir_path=pair.ir_path, vis_path=pair.vis_path, width=width, height=height,
            objects=objects, split=split, class_map=class_map, warnings=warnings,
        )
        clipped = np.clip(np.asarray(ignore_boxes, np.float32).reshape(-1, 4), 0, [width, height, width, height])
        keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        records.append(replace(record, ignore_boxes=clipped[keep], ignore_labels=("person",) * int(keep.sum())))
    note_unmatched(warnings, records, ann_dir, ann_files, stems, kind="annotation file", naming="annotation files")
    if ignored:
        listed = ", ".join(f"{name} {n}" for name, n in sorted(ignored.items(), key=lambda kv: -kv[1]))
        warnings.notes.append(f"{sum(ignored.values())} ignore region(s), neither true nor false positives when matched: {listed}")
    return DetectionDataset(
        name="kaist",
        root=root,
        classes=list(KAIST_CLASSES),
        records=records,
        warnings=warnings,
        split_info=info,
        layout=f"kaist: {relative_name(image_root, root) if image_root != root else '.'}/setXX/VXXX/{{visible,lwir}}/IXXXXX, "
        f"{relative_name(ann_dir, root)}/ (bbGt)" + (f", {sets_dir.name}/" if sets_dir is not None and split_file is None else ""),
        options={"subset": subset, **({"annotations": str(annotations)} if annotations else {}),
                 **({"train_list": train_list} if train_list else {}), **({"test_list": test_list} if test_list else {})},
        stem_of_line=kaist_stem,
    )


def _reasonable(obj, width: int, height: int) -> bool:
    """The benchmark's "reasonable" person: tall enough, at most partly occluded, inside the border."""
    inside = (obj.left >= BORDER and obj.left + obj.width <= width - BORDER
              and obj.top >= BORDER and obj.top + obj.height <= height - BORDER)
    return obj.height >= REASONABLE_MIN_HEIGHT and obj.occlusion <= REASONABLE_MAX_OCCLUSION and inside
