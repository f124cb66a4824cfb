"""Export a dataset's train and val splits as an ultralytics YOLO dataset, one folder per source.

Under ``CACHE/yolo/<dataset>-<hash>/``::

    SOURCE-<hash>/images/{train,val}/STEM.png   what the detector sees for that source (8-bit; IR gray,
                                                visible RGB, fused RGB hard-linked from the fused cache)
    SOURCE-<hash>/labels/{train,val}/STEM.txt   `class x_center y_center width height`, normalised

The export folder's hash covers the dataset's train/val records (stems, boxes, labels, the pair files'
stamps) and each source folder's hash its identity, so an export is reused, and an interrupted export
resumes (finished files are kept). The cache is the machine's by default
(fusedet.fused_cache.default_cache_dir), so every fine-tuning run on the machine shares the export;
files are written atomically, so concurrent runs may. A run's data yaml (`write_data_yaml`: the
folders of its sources, its own folder as ``path``, all absolute, and the class names in order) lives
in its own output folder. A dataset without val pairs is validated on its train pairs. Every path
handed to ultralytics is absolute, so nothing depends on the working folder or on ultralytics' own
datasets folder. `data_fingerprint` gives each train/val pair's stamp, which a training folder
records to refuse reuse on other data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusedet.datasets.atomic import atomic_path, write_text_atomic
from fusedet.datasets.io import write_image
from fusedet.datasets.records import DetectionDataset
from fusedet.datasets.value_range import RangeLog
from fusedet.errors import InputError
from fusedet.events import Events, as_events
from fusedet.hashing import file_stamp
from fusedet.settings import RunSettings
from fusedet.sources import FusedSource, Source

TRAIN_SPLITS = ("train", "val")


def yolo_labels(boxes: np.ndarray, labels: Sequence[str], width: int, height: int, classes: Sequence[str]) -> str:
    """YOLO txt content: one `class xc yc w h` line per box (pixel xyxy `boxes`, N x 4), coordinates
    normalised to [0, 1] by the image's `width` and `height`."""
    index = {c: i for i, c in enumerate(classes)}
    lines = []
    for (x1, y1, x2, y2), label in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels):
        xc, yc = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{index[label]} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def export_root(dataset: DetectionDataset, cache_dir: str | os.PathLike) -> Path:
    """The export folder of `dataset`: its name and a hash of its train/val records (stems, boxes,
    labels, and the pair files' paths, sizes and modification times)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([dataset.name, str(dataset.root), list(dataset.classes)]).encode())
    for record in (r for r in dataset.records if r.split in TRAIN_SPLITS):
        digest.update(f"{record.stem}|{record.split}|{record.width}x{record.height}|{record.labels}".encode())
        digest.update(f"{file_stamp(record.ir_path)}|{file_stamp(record.vis_path)}".encode())
        digest.update(np.ascontiguousarray(record.boxes, dtype=np.float32).tobytes())
    return Path(cache_dir).resolve() / "yolo" / f"{dataset.name}-{digest.hexdigest()[:12]}"


def data_fingerprint(dataset: DetectionDataset) -> dict[str, str]:
    """stem -> ``SPLIT|WxH|LABELS_HASH|IR_NAME:SIZE:MTIME_NS|VIS_NAME:SIZE:MTIME_NS`` for every train/val
    pair: changes when a pair is added, removed, moved between splits, relabelled or rewritten."""
    out = {}
    for record in (r for r in dataset.records if r.split in TRAIN_SPLITS):
        boxes = hashlib.sha256(json.dumps(list(record.labels)).encode())
        boxes.update(np.ascontiguousarray(record.boxes, dtype=np.float32).tobytes())
        stamps = "|".join(_name_stamp(Path(p)) for p in (record.ir_path, record.vis_path))
        out[record.stem] = f"{record.split}|{record.width}x{record.height}|{boxes.hexdigest()[:12]}|{stamps}"
    return out


def _name_stamp(path: Path) -> str:
    _, size, mtime = file_stamp(path).rsplit("|", 2)  # RESOLVED_PATH|SIZE|MTIME_NS: the name is enough here
    return f"{path.name}:{size}:{mtime}"


def source_folder(root: Path, source: Source, run: RunSettings) -> Path:
    """The export folder of one source: its name plus a hash of what defines its images (the source,
    and the value ranges its images are read with)."""
    ident = json.dumps([source.identity(), run.ir_range, run.vis_range], sort_keys=True)
    return root / f"{source.name}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"


def _image_path(folder: Path, record) -> Path:
    return folder / "images" / record.split / f"{record.stem}.png"


def _label_path(folder: Path, record) -> Path:
    return folder / "labels" / record.split / f"{record.stem}.txt"


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (no second copy of a fused image), copying where links fail; atomic."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def export_source(
    dataset: DetectionDataset,
    source: Source,
    root: Path,
    run: RunSettings,
    batch: int = 8,
    events: Events | None = None,
    log: RangeLog | None = None,
) -> dict[str, Path]:
    """Write the train/val images and labels of one source (finished files are kept); returns
    split -> image folder."""
    events = as_events(events)
    folder = source_folder(root, source, run)
    records = [r for r in dataset.records if r.split in TRAIN_SPLITS]
    todo = [r for r in records if not (_image_path(folder, r).is_file() and _label_path(folder, r).is_file())]
    stage = f"{source.name}: export"
    events.start(stage, total=len(records))
    events.advance(stage, len(records) - len(todo))
    cached = isinstance(source, FusedSource)
    for chunk, images in source.images(todo, run, batch, log):
        for record, image in zip(chunk, images):
            if not cached:
                write_image(_image_path(folder, record), image)
            text = yolo_labels(record.boxes, record.labels, record.width, record.height, dataset.classes)
            write_text_atomic(_label_path(folder, record), text)
        events.advance(stage, len(chunk), chunk[-1].stem)
    if cached:  # every cache write has finished once the stream is exhausted
        for record in todo:
            link_or_copy(source.cache(run).path(record), _image_path(folder, record))
    events.finish(stage)
    return {split: folder / "images" / split for split in TRAIN_SPLITS}


def export_sources(
    dataset: DetectionDataset,
    sources: Sequence[Source],
    run: RunSettings,
    batch: int = 8,
    events: Events | None = None,
    log: RangeLog | None = None,
) -> tuple[Path, dict[str, dict[str, Path]]]:
    """Export every source's train/val images and labels under ``run.cache_dir``; returns (export root,
    source name -> split -> image folder). Value-range decisions are counted in `log`. InputError when
    the dataset has no train pairs."""
    if not dataset.split("train"):
        raise InputError(f"dataset {dataset.name!r} has no train pairs to fine-tune on (split: {dataset.split_source})")
    if run.cache_dir is None:
        raise InputError("export_sources needs run settings with a cache_dir")
    root = export_root(dataset, run.cache_dir)
    dirs = {s.name: export_source(dataset, s, root, run, batch, events, log) for s in sources}
    return root, dirs


def write_data_yaml(path: Path, image_dirs: Sequence[dict[str, Path]], classes: Sequence[str], has_val: bool) -> Path:
    """An ultralytics data yaml listing the image folders (absolute paths) of one or more sources; its
    ``path`` is the yaml's own folder (absolute), so ultralytics never joins a path to its datasets folder."""
    import yaml

    data = {
        "path": str(Path(path).resolve().parent),
        "train": [str(Path(d["train"]).resolve()) for d in image_dirs],
        "val": [str(Path(d["val" if has_val else "train"]).resolve()) for d in image_dirs],
        "names": dict(enumerate(classes)),
    }
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
    return path
