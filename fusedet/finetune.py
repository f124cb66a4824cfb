"""Fine-tune the detector on a source's images (Table VII's protocol) and evaluate it.

1. Export: the records of the train and val splits are written as an ultralytics YOLO dataset, one
   folder per source, under ``CACHE/yolo/<dataset>-<hash>/``::

       SOURCE/images/{train,val}/STEM.png   what the detector sees for that source (8-bit; IR gray,
                                            visible RGB, fused RGB, hard-linked from the fused cache)
       SOURCE/labels/{train,val}/STEM.txt   `class x_center y_center width height`, normalised
       data-SOURCE.yaml / data-shared.yaml  the folders and the dataset's class names in order

   The hash covers the dataset's records and the source, so an export is reused, and an
   interrupted export resumes (finished files are kept). A dataset without val pairs is validated
   on its train pairs (said in run.json): ultralytics needs a val set to pick best.pt.
2. Train with ultralytics (offline-safe, see fusedet.ultralytics_env): `per-source` trains one
   detector per source, `shared` one detector on all sources mixed (each image once per source).
   Plots are off, AMP is on for CUDA only, reader workers default to at most 2. A run killed
   mid-training resumes from its last.pt when the same command is run again, a finished one is
   reused, and a training folder made with other settings (data, start weights, epochs, size,
   batch, seed, options) is an error rather than silently reused.
3. Evaluate on the test split exactly as `fusedet evaluate` does (each source with its own
   detector under `per-source`, every source with the shared one under `shared`).

Start weights: a .pt (COCO-pretrained, or any detection checkpoint) or a model yaml such as
``yolov8n.yaml`` / ``yolov5nu.yaml`` to train from scratch (nothing to download).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusedet.datasets.io import write_image
from fusedet.datasets.records import DetectionDataset
from fusedet.detector import Detector, resolve_weights
from fusedet.errors import InputError
from fusedet.hashing import file_sha256
from fusedet.sources import FusedCache, Source, file_stamp, iter_source_images
from fusedet.tables import write_text_atomic

PROTOCOLS = ("per-source", "shared")
TRAIN_SPLITS = ("train", "val")


@dataclass(frozen=True)
class TrainedDetector:
    """One fine-tuning run: which sources it saw, where its weights are, how long it took."""

    name: str
    sources: tuple[str, ...]
    weights: Path
    data_yaml: Path
    seconds: float
    resumed: bool

    def info(self) -> dict:
        return {
            "sources": list(self.sources),
            "weights": str(self.weights),
            "weights_sha256": file_sha256(self.weights),
            "data_yaml": str(self.data_yaml),
            "train_seconds": round(self.seconds, 1),
            "resumed_or_reused": self.resumed,
        }


def yolo_labels(boxes: np.ndarray, labels: Sequence[str], width: int, height: int, classes: Sequence[str]) -> str:
    """YOLO txt content: one `class xc yc w h` line per box, coordinates normalised to [0, 1]."""
    index = {c: i for i, c in enumerate(classes)}
    lines = []
    for (x1, y1, x2, y2), label in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels):
        xc, yc = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{index[label]} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def export_root(dataset: DetectionDataset, cache_dir: Path) -> Path:
    """The export folder of `dataset`: its name and a hash of its train/val records (stems, boxes,
    labels, and the pair files' paths, sizes and modification times)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([dataset.name, str(dataset.root), list(dataset.classes)]).encode())
    for record in (r for r in dataset.records if r.split in TRAIN_SPLITS):
        digest.update(f"{record.stem}|{record.split}|{record.width}x{record.height}|{record.labels}".encode())
        digest.update(f"{file_stamp(record.ir_path)}|{file_stamp(record.vis_path)}".encode())
        digest.update(np.ascontiguousarray(record.boxes, dtype=np.float32).tobytes())
    return Path(cache_dir) / "yolo" / f"{dataset.name}-{digest.hexdigest()[:12]}"


def export_source(
    dataset: DetectionDataset,
    source: Source,
    root: Path,
    cache_dir: Path,
    *,
    batch: int = 8,
    fuse_batch: int = 1,
    workers: int = 2,
    progress=None,
) -> dict[str, Path]:
    """Write the train/val images and labels of one source (skipping finished files); split -> image dir."""
    folder = root / _source_key(source)
    cache = FusedCache(cache_dir, source.fuser) if source.fuser is not None else None
    records = [r for r in dataset.records if r.split in TRAIN_SPLITS]
    todo = [r for r in records if not (_image_path(folder, r).is_file() and _label_path(folder, r).is_file())]
    task = progress.add_task(f"{source.name}: export", total=len(records), completed=len(records) - len(todo), status="") if progress else None
    for chunk, images in iter_source_images(source, todo, batch=batch, fuse_batch=fuse_batch, workers=workers, cache=cache):
        for record, image in zip(chunk, images):
            if cache is None:
                write_image(_image_path(folder, record), image)
            text = yolo_labels(record.boxes, record.labels, record.width, record.height, dataset.classes)
            write_text_atomic(_label_path(folder, record), text)
        if progress:
            progress.advance(task, len(chunk))
    if cache is not None:  # every cache write has finished once the iteration is over
        for record in todo:
            _link_or_copy(cache.path(record), _image_path(folder, record))
    return {split: folder / "images" / split for split in TRAIN_SPLITS}


def _source_key(source: Source) -> str:
    """Folder name of a source's export: its name plus a hash of what defines its images."""
    ident = json.dumps(source.identity(), sort_keys=True)
    return f"{source.name}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"


def _image_path(folder: Path, record) -> Path:
    return folder / "images" / record.split / f"{record.stem}.png"


def _label_path(folder: Path, record) -> Path:
    return folder / "labels" / record.split / f"{record.stem}.txt"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (no second copy of a fused image), copying where links fail; atomic."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_data_yaml(path: Path, image_dirs: Sequence[dict[str, Path]], classes: Sequence[str], has_val: bool) -> Path:
    """An ultralytics data yaml listing the image folders of one or more sources."""
    import yaml

    data = {
        "train": [str(d["train"]) for d in image_dirs],
        "val": [str(d["val" if has_val else "train"]) for d in image_dirs],
        "names": dict(enumerate(classes)),
    }
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
    return path


def train_detector(
    data_yaml: Path,
    start: str | os.PathLike,
    run_dir: Path,
    *,
    epochs: int,
    imgsz: int,
    batch: int,
    device: str,
    workers: int,
    seed: int = 0,
    progress_name: str = "",
    options: dict | None = None,
) -> tuple[Path, float, bool]:
    """Train (or resume, or reuse) one ultralytics detector; returns (best.pt, seconds, resumed/reused).
    `options` are more ultralytics train() arguments (they override ours)."""
    from fusedet.ultralytics_env import prepare

    prepare()
    from ultralytics import YOLO

    done, best, last = run_dir / "done.json", run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    request = {
        "data_yaml_sha256": hashlib.sha256(Path(data_yaml).read_bytes()).hexdigest(),
        "start": str(start),
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "seed": seed,
        "options": dict(options or {}),
    }
    _check_request(run_dir, request)
    if best.is_file() and (done.is_file() or _finished(last)):
        seconds = float(json.loads(done.read_text()).get("seconds", 0.0)) if done.is_file() else 0.0
        return best, seconds, True
    start_time = time.perf_counter()
    resumed = last.is_file()
    try:
        if resumed:
            YOLO(str(last)).train(resume=True, workers=workers, device=device)
        else:
            model = YOLO(str(resolve_weights(start)), task="detect")
            settings = {
                "data": str(data_yaml),
                "epochs": epochs,
                "imgsz": imgsz,
                "batch": batch,
                "device": device,
                "workers": workers,
                "project": str(run_dir.parent.resolve()),
                "name": run_dir.name,
                "exist_ok": True,
                "plots": False,
                "seed": seed,
                "deterministic": True,
                "amp": device.startswith("cuda"),
                "val": True,
                "verbose": False,
            }
            model.train(**{**settings, **dict(options or {})})
    except InputError:
        raise
    except Exception as exc:  # ultralytics raises plain exceptions for bad data or weights
        raise InputError(f"training {progress_name or run_dir.name} failed: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - start_time
    if not best.is_file():
        raise InputError(f"training finished without {best}")
    write_text_atomic(done, json.dumps({"seconds": seconds, "epochs": epochs, "best": str(best)}) + "\n")
    return best, seconds, resumed


def _check_request(run_dir: Path, request: dict) -> None:
    """Remember what a training folder is for; a folder made for other settings is an error, never
    silently reused or overwritten."""
    path = run_dir / "request.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier != request:
            changed = sorted(k for k in set(earlier) | set(request) if earlier.get(k) != request.get(k))
            raise InputError(
                f"{run_dir} holds a training with other settings ({', '.join(changed)} differ); "
                "use another --out, or delete that folder to train again"
            )
    else:
        write_text_atomic(path, json.dumps(request, indent=2) + "\n")


def _finished(last: Path) -> bool:
    """True when `last` is the checkpoint of a completed ultralytics training (optimizer stripped, epoch -1)."""
    if not last.is_file():
        return False
    import torch

    try:
        return torch.load(last, map_location="cpu", weights_only=False).get("epoch") == -1
    except Exception:  # unreadable: not finished, ultralytics' resume will say why
        return False


def export_sources(
    dataset: DetectionDataset,
    sources: Sequence[Source],
    cache_dir: Path,
    *,
    batch: int = 8,
    fuse_batch: int = 1,
    workers: int = 2,
    progress=None,
) -> tuple[Path, dict[str, dict[str, Path]]]:
    """Export every source's train/val images and labels; returns (export root, source -> split -> image dir)."""
    if not dataset.split("train"):
        raise InputError(f"dataset {dataset.name!r} has no train pairs to fine-tune on (split: {dataset.split_source})")
    root = export_root(dataset, cache_dir)
    dirs = {s.name: export_source(dataset, s, root, cache_dir, batch=batch, fuse_batch=fuse_batch, workers=workers, progress=progress)
            for s in sources}
    return root, dirs


def train_protocol(
    dataset: DetectionDataset,
    sources: Sequence[Source],
    export: tuple[Path, dict[str, dict[str, Path]]],
    *,
    protocol: str,
    start: str | os.PathLike,
    out: Path,
    epochs: int,
    imgsz: int,
    batch: int,
    device: str,
    workers: int,
    seed: int = 0,
    options: dict | None = None,
) -> dict[str, TrainedDetector]:
    """Train per `protocol` on exported sources; returns the detectors by model name ('shared', or
    each source's name under 'per-source'), trained in OUT/train/NAME. `options`: more ultralytics
    train() arguments."""
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    root, dirs = export
    has_val = bool(dataset.split("val"))
    groups = {"shared": list(sources)} if protocol == "shared" else {s.name: [s] for s in sources}
    trained = {}
    for name, members in groups.items():
        data_yaml = write_data_yaml(root / f"data-{name}.yaml", [dirs[s.name] for s in members], dataset.classes, has_val)
        best, seconds, resumed = train_detector(
            data_yaml,
            start,
            out / "train" / name,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            workers=workers,
            seed=seed,
            progress_name=name,
            options=options,
        )
        trained[name] = TrainedDetector(name, tuple(s.name for s in members), best, data_yaml, seconds, resumed)
    return trained


def detectors_for(
    trained: dict[str, TrainedDetector], sources: Sequence[Source], protocol: str, device: str, **settings
) -> dict[str, Detector]:
    """The evaluation detector of each source: its own (per-source) or the shared one."""
    if protocol == "shared":
        shared = Detector(trained["shared"].weights, device, **settings)
        return {s.name: shared for s in sources}
    return {s.name: Detector(trained[s.name].weights, device, **settings) for s in sources}
