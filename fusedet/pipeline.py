"""FusionDetector: fuse IR/visible pairs, detect objects, and measure per-class AP per source.

    from fusedet import FusionDetector
    fd = FusionDetector(fuser="dmnet", weights="yolov5xu.pt", device="cuda")
    fused = fd.fuse("ir/00000.png", "vis/00000.png")          # H x W x 3 RGB float32 in [0, 1]
    dets = fd.detect("ir/00000.png", "vis/00000.png")         # on the fused image
    table = fd.evaluate("m3fd", root="M3FD", sources=["ir", "vi", "dmnet"], out="runs/m3fd")
    print(table.to_markdown())

`run_evaluation` is the engine behind `evaluate` and `fusedet evaluate`/`finetune`: ground truth to
COCO json, then per source fused images (cached) -> detections (saved per source, so a rerun
skips finished sources) -> AP through pycocotools -> the table files, the plot and run.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fusedet.datasets.color import rgb_to_gray
from fusedet.datasets.io import read_ir, read_vis
from fusedet.datasets.records import SPLITS, DetectionDataset
from fusedet.detection_table import DetectionTable
from fusedet.detector import DEFAULT_WEIGHTS, Detections, Detector, resolve_device
from fusedet.errors import FusedetError, InputError
from fusedet.eval.detection_ap import average_precision, coco_detections, coco_ground_truth, mean_ap
from fusedet.fusers import Fuser, fuse_arrays, get_fuser
from fusedet.paper_results import PAPER_SOURCE, paper_rows
from fusedet.sources import FusedCache, Source, check_folder_sources, image_fingerprint, iter_source_images, parse_sources
from fusedet.tables import write_text_atomic


class FusionDetector:
    """A fuser and a detector together (see the module docstring).

    `fuser`: a registered name or spec (``dmnet``, ``mean``, ``max``, ``dmnet:PATH``) or a Fuser;
    `weights`: detector weights (``yolov5xu.pt``, a path, or ``demo``); `device`: 'cpu', 'cuda' or
    None (CUDA when available). The other settings are the detector's (fusedet.detector.Detector)
    and the batch / reader-thread counts used by `evaluate`: `batch` images per detection pass,
    `fuse_batch` pairs per fusion pass (1 by default: a DMNet pass on a 1024x768 pair needs GBs).
    Fuser and detector load on first use.
    """

    def __init__(
        self,
        fuser: str | Fuser = "dmnet",
        weights: str | os.PathLike = DEFAULT_WEIGHTS,
        device: str | None = None,
        *,
        imgsz: int | None = None,
        conf: float = 0.001,
        iou: float = 0.6,
        max_det: int = 300,
        batch: int = 8,
        fuse_batch: int = 1,
        workers: int = 2,
        half: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.fuser_spec = fuser
        self.weights = weights
        self.detector_options = {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "batch": batch, "half": half}
        self.batch, self.fuse_batch, self.workers = max(1, int(batch)), max(1, int(fuse_batch)), max(0, int(workers))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._fuser: Fuser | None = None
        self._detector: Detector | None = None

    @property
    def fuser(self) -> Fuser:
        if self._fuser is None:
            self._fuser = get_fuser(self.fuser_spec, device=self.device)
        return self._fuser

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = Detector(self.weights, self.device, **self.detector_options)
        return self._detector

    def fuse(self, ir, vis) -> np.ndarray:
        """Fuse one pair (paths, or arrays: IR H x W, VIS H x W x 3 RGB; uint8 or float in [0, 1]).
        Returns the fused RGB image, H x W x 3 float32 in [0, 1]."""
        ir, vis = as_ir(ir), as_vis(vis)
        if ir.shape != vis.shape[:2]:
            raise InputError(f"IR is {ir.shape[1]}x{ir.shape[0]} but visible is {vis.shape[1]}x{vis.shape[0]} (W x H)")
        return fuse_arrays(self.fuser, ir, vis, device=getattr(self.fuser, "device", "cpu"))

    def detect(self, ir, vis, source: str = "fused", classes: Sequence[str] | None = None) -> Detections:
        """Detect on the fused image (`source`='fused'), or on the IR or visible image ('ir' / 'vi').

        Labels are the detector's class names, or mapped onto `classes` when given."""
        if source == "fused":
            image = self.fuse(ir, vis)
        elif source == "ir":
            image = as_ir(ir)
        elif source in ("vi", "vis"):
            image = as_vis(vis)
        else:
            raise InputError(f"source must be 'fused', 'ir' or 'vi', got {source!r}")
        return self.detector.detect([image], classes)[0]

    def evaluate(
        self,
        dataset: DetectionDataset | str,
        sources: Sequence[str | Source] | str | None = None,
        split: str = "test",
        out: str | os.PathLike | None = None,
        *,
        root: str | os.PathLike | None = None,
        seed: int = 0,
        paper: bool = False,
        progress=None,
        dataset_options: Mapping | None = None,
        run_info: Mapping | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> DetectionTable:
        """Per-class AP@0.5 of each source on `split` of `dataset` (a DetectionDataset or a registered
        name loaded from `root`). `sources` defaults to ir, vi and this detector's fuser. With `out`,
        every output file is written there (see run_evaluation) and a rerun resumes; without it the
        run happens in a temporary folder. `progress` is an optional rich Progress; `timings` are
        seconds already spent (e.g. loading the dataset), recorded in run.json with the others."""
        timings = dict(timings or {})
        if isinstance(dataset, str):
            from fusedet.datasets.registry import load_dataset

            start = time.perf_counter()
            dataset = load_dataset(dataset, root, seed=seed, **dict(dataset_options or {}))
            timings["load dataset"] = time.perf_counter() - start
        own_name = self.fuser_spec.name if isinstance(self.fuser_spec, Fuser) else str(self.fuser_spec)
        if sources is None:
            sources = ["ir", "vi", own_name]
        parsed = parse_sources(sources, device=self.device, fusers={own_name: lambda: self.fuser})
        with tempfile.TemporaryDirectory(prefix="fusedet-eval-") as tmp:
            out_dir = Path(out) if out is not None else Path(tmp)
            cache = self.cache_dir or default_cache_dir(out_dir)
            return run_evaluation(
                dataset,
                parsed,
                self.detector,
                split=split,
                out=out_dir,
                cache_dir=cache,
                batch=self.batch,
                fuse_batch=self.fuse_batch,
                workers=self.workers,
                paper=paper,
                progress=progress,
                timings=timings,
                run_info={"device": self.device, "seed": seed, **dict(run_info or {})},
            )


def check_split(split: str) -> None:
    """A clear error for a split name that no dataset has."""
    if split not in (*SPLITS, "all"):
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or all")


def default_cache_dir(out: Path) -> Path:
    """Fused-image cache: ``$FUSEDET_CACHE`` when set, else ``OUT/cache``."""
    env = os.environ.get("FUSEDET_CACHE")
    return Path(env).expanduser() if env else out / "cache"


def as_ir(value) -> np.ndarray:
    """An IR image from a path or an array (gray, or RGB reduced to luma), float32 H x W in [0, 1]."""
    if isinstance(value, (str, os.PathLike)):
        return read_ir(value)
    image = _as_float(value)
    if image.ndim == 3:
        image = rgb_to_gray(image[:, :, :3]) if image.shape[2] >= 3 else image[:, :, 0]
    return np.ascontiguousarray(image, dtype=np.float32)


def as_vis(value) -> np.ndarray:
    """A visible image from a path or an array (RGB, or gray replicated), float32 H x W x 3 in [0, 1]."""
    if isinstance(value, (str, os.PathLike)):
        return read_vis(value)
    image = _as_float(value)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3], dtype=np.float32)


def _as_float(value) -> np.ndarray:
    image = np.asarray(value)
    if image.ndim not in (2, 3):
        raise InputError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    image = image.astype(np.float32)
    if image.size and (image.min() < 0.0 or image.max() > 1.0):
        raise InputError("float images must be in [0, 1] (uint8/uint16 arrays are scaled automatically)")
    return image


# --- the evaluation engine ---------------------------------------------------------------------


def run_evaluation(
    dataset: DetectionDataset,
    sources: Sequence[Source],
    detector: Detector | Mapping[str, Detector],
    *,
    split: str = "test",
    out: str | os.PathLike,
    cache_dir: str | os.PathLike,
    batch: int = 8,
    fuse_batch: int = 1,
    workers: int = 2,
    paper: bool = False,
    progress=None,
    timings: dict[str, float] | None = None,
    run_info: Mapping | None = None,
) -> DetectionTable:
    """Evaluate `sources` on `split` of `dataset` and write into `out`:

    ground_truth.json, detections/SOURCE.json, table.{csv,md,tex,json}, ap_per_class.png, run.json.
    `detector` is one Detector for every source, or one per source name (per-source fine-tuning).
    Detections of a source are reused when `out` already holds them for the same source (fuser
    cache key / folder), detector weights and settings and image files (paths, sizes, modification
    times); fused images are cached in `cache_dir` (see fusedet.sources.FusedCache).
    """
    out = Path(out)
    timings = dict(timings or {})
    started = time.perf_counter()
    check_split(split)
    records = dataset.split(split)
    if not records:
        counts = {s: len(dataset.split(s)) for s in ("train", "val", "test")}
        raise InputError(f"split {split!r} of dataset {dataset.name!r} has no pairs (pairs per split: {counts})")
    check_folder_sources(sources, [r.stem for r in records])
    classes = list(dataset.classes)
    detectors = {s.name: (detector[s.name] if isinstance(detector, Mapping) else detector) for s in sources}
    mappings = {name: det.class_mapping(classes) for name, det in detectors.items()}

    t0 = time.perf_counter()
    ground_truth = coco_ground_truth(records, classes)
    _write_json(out / "ground_truth.json", ground_truth)
    timings["ground truth"] = time.perf_counter() - t0

    per_source_dets: dict[str, list[dict]] = {}
    resumed: list[str] = []
    for source in sources:
        det = detectors[source.name]
        key = _resume_key(source, det, classes, records)
        dets = _load_finished(out, source.name, key)
        label = f"{source.name}: {'fuse + detect' if source.fuser is not None else 'detect'}"
        task = progress.add_task(label, total=len(records), status="") if progress else None
        if dets is not None:
            resumed.append(source.name)
            if progress:
                progress.update(task, completed=len(records), status="[dim]reused from an earlier run[/]")
        else:
            dets = _detect_source(source, records, det, classes, cache_dir, batch, fuse_batch, workers, timings, progress, task)
            _write_json(out / "detections" / f"{source.name}.json", dets)
            _write_json(out / ".resume" / f"{source.name}.json", {"key": key})
        per_source_dets[source.name] = dets

    t0 = time.perf_counter()
    with_gt = {a["category_id"] for a in ground_truth["annotations"]}
    no_gt = [c for i, c in enumerate(classes, start=1) if i not in with_gt]
    rows: dict[str, dict[str, float | None]] = {}
    ap_task = progress.add_task("AP@0.5 (pycocotools)", total=len(sources), status="") if progress else None
    per_source_ap = _average_precisions(out, ground_truth, per_source_dets, detectors, progress, ap_task)
    for source in sources:
        ap = per_source_ap[source.name]
        for c in mappings[source.name].not_covered:
            ap[c] = None
        ap["mAP"] = mean_ap(ap, classes)
        rows[source.name] = ap
    timings["ap"] = time.perf_counter() - t0

    reference = paper_rows(classes) if paper else {}
    table = DetectionTable(
        classes=classes,
        rows=rows,
        not_covered={name: list(m.not_covered) for name, m in mappings.items() if m.not_covered},
        no_ground_truth=no_gt,
        reference_rows=reference,
        reference_source=PAPER_SOURCE if reference else "",
        title=f"AP@0.5 (%) on {dataset.name} {split} ({len(records)} pairs)",
    )
    t0 = time.perf_counter()
    table.write(out)
    timings["write tables"] = time.perf_counter() - t0
    timings["evaluation total"] = time.perf_counter() - started
    info = _run_info(dataset, split, records, sources, detectors, mappings, timings, resumed, cache_dir, paper, reference)
    info.update(dict(run_info or {}))
    _write_json(out / "run.json", info, indent=2)
    return table


def _detect_source(source, records, detector, classes, cache_dir, batch, fuse_batch, workers, timings, progress, task) -> list[dict]:
    """Run `detector` over the source's images (fusing and caching as needed); COCO results."""
    cache = FusedCache(cache_dir, source.fuser) if source.fuser is not None else None
    stage = defaultdict(float)
    image_id = {r.stem: i for i, r in enumerate(records, start=1)}
    dets: list[dict] = []
    for chunk, images in iter_source_images(source, records, batch=batch, fuse_batch=fuse_batch, workers=workers,
                                            cache=cache, timings=stage):
        t0 = time.perf_counter()
        found = detector.detect(images, classes)
        stage["detect"] += time.perf_counter() - t0
        dets.extend(coco_detections(((image_id[r.stem], d) for r, d in zip(chunk, found)), classes))
        if progress:
            progress.advance(task, len(chunk))
    for name, seconds in stage.items():
        if seconds:
            timings[f"{source.name}: {name}"] = seconds
    return dets


PARALLEL_AP_MIN_BOXES = 200_000  # below this, starting worker processes costs more than it saves


def _average_precisions(out, ground_truth, per_source_dets, detectors, progress, task) -> dict[str, dict]:
    """Per-class AP of every source. Large runs (M3FD: about 1.2 M boxes a source) on machines with
    4+ cores evaluate the sources in parallel, one fresh `python -m fusedet.eval.detection_ap`
    process each (no fork of this process, no re-import of the caller's script), on the json files
    already written; small runs are evaluated here."""
    names = list(per_source_dets)
    boxes = sum(len(d) for d in per_source_dets.values())
    cores = os.cpu_count() or 1
    result: dict[str, dict] = {}
    if len(names) < 2 or cores < 4 or boxes < PARALLEL_AP_MIN_BOXES:
        for name in names:
            result[name] = average_precision(ground_truth, per_source_dets[name], max_det=detectors[name].max_det)
            if progress:
                progress.advance(task)
        return result

    def run(name: str) -> dict:
        command = [sys.executable, "-m", "fusedet.eval.detection_ap", str(out / "ground_truth.json"),
                   str(out / "detections" / f"{name}.json"), "--max-det", str(detectors[name].max_det)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise FusedetError(f"AP of source {name!r} failed: {done.stderr.strip().splitlines()[-1:]}")
        return json.loads(done.stdout)

    with ThreadPoolExecutor(max_workers=min(len(names), cores)) as pool:
        for name, ap in zip(names, pool.map(run, names)):
            result[name] = ap
            if progress:
                progress.advance(task)
    return result


def _resume_key(source: Source, detector: Detector, classes: Sequence[str], records: Sequence) -> str:
    """Changes with the source, the detector's weights and settings, the classes, or any input image file."""
    blob = json.dumps(
        {
            "source": source.identity(),
            "detector": detector.settings(),
            "classes": list(classes),
            "images": [(r.stem, image_fingerprint(source, r)) for r in records],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_finished(out: Path, name: str, key: str) -> list[dict] | None:
    """Detections saved by an earlier run with the same resume key, else None."""
    state, path = out / ".resume" / f"{name}.json", out / "detections" / f"{name}.json"
    try:
        if json.loads(state.read_text())["key"] != key:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_json(path: Path, data, indent: int | None = None) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent, separators=None if indent else (",", ":")))


def _run_info(dataset, split, records, sources, detectors, mappings, timings, resumed, cache_dir, paper, reference) -> dict:
    import torch
    import ultralytics

    import fusedet

    try:
        from importlib.metadata import version

        pycocotools_version = version("pycocotools")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        pycocotools_version = None
    first = next(iter(detectors.values()))
    same_detector = all(d is first for d in detectors.values())
    return {
        "versions": {
            "fusedet": fusedet.__version__,
            "torch": torch.__version__,
            "ultralytics": ultralytics.__version__,
            "pycocotools": pycocotools_version,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "command": sys.argv,
        "dataset": {
            "name": dataset.name,
            "root": str(dataset.root),
            "split": split,
            "split_source": dataset.split_source,
            "pairs": len(records),
            "classes": list(dataset.classes),
            "instances": dataset.instance_counts(split),
            "warnings": dataset.warnings.to_dict(),
        },
        "detector": first.settings() if same_detector else {name: d.settings() for name, d in detectors.items()},
        "class_mapping": _mapping_info(mappings[next(iter(mappings))])
        if same_detector
        else {name: _mapping_info(m) for name, m in mappings.items()},
        "sources": [{**s.identity(), **_fuser_weights(s.fuser)} for s in sources],
        "fused_cache": str(Path(cache_dir).resolve()),
        "resumed_sources": resumed,
        "paper_rows": sorted(reference) if paper else [],
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _mapping_info(mapping) -> dict:
    return {"coco_weights": mapping.coco, "covered": list(mapping.covered), "not_covered": list(mapping.not_covered)}


def _fuser_weights(fuser: Fuser | None) -> dict:
    """The fuser's weights file and sha256 when it has them (DMNet), for run.json."""
    if fuser is None or not hasattr(fuser, "sha256"):
        return {}
    return {"fuser_weights": str(getattr(fuser, "weights", "")), "fuser_weights_sha256": fuser.sha256}
