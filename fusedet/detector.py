"""The object detector: an ultralytics YOLO model run with evaluation settings, its classes mapped
onto a dataset's classes.

Weights:
- ``yolov5xu.pt`` (default, the paper's YOLOv5x in its ultralytics form): looked up on disk (the
  current folder, ultralytics' weights folder, fusedet's cache) and otherwise downloaded once by
  ultralytics into ``$FUSEDET_CACHE/weights``; offline this fails at once with a clear error.
- a path to any ultralytics detection checkpoint (``.pt``), or a model yaml (random weights:
  for plumbing tests and training from scratch);
- ``demo``: the small detector shipped in ``fusedet/weights/demo_yolo.pt``, trained on synthetic
  scenes (see its model card);
- ``msrs``: the detector shipped in ``fusedet/weights/msrs_yolo.pt``, trained on real MSRS pairs
  (person, bicycle, car; IR, visible and fused images; see its model card ``msrs_yolo.md``).

What the weights were trained on is worked out by :mod:`fusedet.detector_domain`
(``Detector.domain``), so that a table of a detector on data it was not trained on is named as such.

Classes. A detector's class names are matched onto the dataset's through the one alias table of
:mod:`fusedet.datasets.class_names` (names normalised: NFKC, invisible characters removed, case
folded, spaces/_/- ignored; exact names first, then aliases): COCO's person -> People/person/
pedestrian, car -> Car, bus -> Bus, motorcycle -> Motorcycle/Motor, truck -> Truck, bicycle ->
bicycle, and a fine-tuned detector's ``People`` covers a dataset's ``person``. Every other
detector class is dropped, and a dataset class no detector class maps to (M3FD's Lamp under COCO
weights) is *not covered*: its AP is not computed, and ``ClassMapping.reasons`` says why.

Evaluation settings (those of ultralytics' own validation): confidence 0.001, NMS IoU 0.6 (the
default of YOLOv5's own val.py, the paper's detector; ultralytics `val` uses 0.7), at most 300 boxes
per image. Image size: by default the size the weights were trained at, read from the checkpoint (640 for yolov5xu.pt, its COCO
training size; 640 when a checkpoint does not say): a detector sees objects at the scale it
learned. The paper does not give one. At 640, M3FD's 1024 x 768 images are letterboxed to
640 x 480 and small objects (far people, lamps) lose pixels; `imgsz=1024` keeps them at about
2.5x the compute. Images go to ultralytics as uint8 BGR numpy arrays,
batched; on CUDA the model runs in half precision.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusedet import runtime
from fusedet.datasets.class_names import ClassMatcher
from fusedet.detector_domain import TrainingDomain, training_domain
from fusedet.devices import DeviceLike, resolve_device
from fusedet.errors import InputError
from fusedet.hashing import file_sha256
from fusedet.settings import DEFAULT_DETECTOR_WEIGHTS, DetectorSettings, split_overrides

DEFAULT_WEIGHTS = DEFAULT_DETECTOR_WEIGHTS
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_WEIGHTS = WEIGHTS_DIR / "demo_yolo.pt"
MSRS_WEIGHTS = WEIGHTS_DIR / "msrs_yolo.pt"
# --weights NAME -> a detector shipped in fusedet/weights (model cards beside them)
SHIPPED_DETECTORS = {"demo": DEMO_WEIGHTS, "msrs": MSRS_WEIGHTS}

# Indices of a few classes in the 80-class COCO order every COCO-pretrained ultralytics model uses.
_COCO_INDEX = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck", 79: "toothbrush"}


@dataclass(frozen=True)
class Detections:
    """Detections in one image: `boxes` N x 4 pixel xyxy (float32), `scores` N, `labels` N class names."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ClassMapping:
    """How a detector's classes map onto a dataset's: model index -> dataset class; covered/not covered."""

    model_to_dataset: dict[int, str]
    covered: tuple[str, ...]
    not_covered: tuple[str, ...]
    coco: bool
    reasons: dict[str, str] = field(default_factory=dict)  # not-covered class -> why, one sentence


def is_coco(names: Mapping[int, str]) -> bool:
    """True when `names` are the 80 COCO classes in COCO order (any COCO-pretrained YOLO)."""
    return len(names) == 80 and all(str(names.get(i, "")).lower() == n for i, n in _COCO_INDEX.items())


def map_classes(names: Mapping[int, str], classes: Sequence[str]) -> ClassMapping:
    """Map the detector's class names onto the dataset's `classes` (see the module docstring)."""
    coco = is_coco(names)
    matcher = ClassMatcher(classes)
    mapping = matcher.match_all(names)
    covered = tuple(c for c in classes if c in mapping.values())
    if not covered:
        shown = ", ".join(list(names.values())[:10]) + (" ..." if len(names) > 10 else "")
        raise InputError(
            f"the detector's classes ({shown}) cover none of the dataset's classes ({', '.join(classes)}); "
            "use COCO weights or weights trained on these classes"
        )
    not_covered = tuple(c for c in classes if c not in covered)
    reasons = {c: matcher.why_unmatched(c, names.values(), coco=coco) for c in not_covered}
    return ClassMapping(mapping, covered, not_covered, coco, reasons)


def resolve_weights(spec: str | os.PathLike) -> Path | str:
    """Turn a weights argument into a file path (or an ultralytics model yaml name); never downloads
    unless `spec` is a bare ultralytics asset name (``yolov5xu.pt``) not found on disk. ``demo`` and
    ``msrs`` name the shipped detectors (:data:`SHIPPED_DETECTORS`)."""
    text = str(spec)
    if text in SHIPPED_DETECTORS:
        shipped = SHIPPED_DETECTORS[text]
        if not shipped.is_file():
            raise InputError(f"the {text} detector is not installed ({shipped} is missing)")
        return shipped
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml") and path.name == text:
        return text  # an ultralytics model config (yolov8n.yaml): random weights
    if path.name == text and path.suffix == ".pt":
        return _asset_weights(text)
    raise InputError(f"{text}: weights file not found")


def _asset_weights(name: str) -> Path:
    """Find ultralytics' released weights `name` on disk, or download them once into fusedet's cache."""
    from fusedet.ultralytics_env import fusedet_cache_root, prepare

    prepare()
    from ultralytics.utils import SETTINGS
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    cache = fusedet_cache_root() / "weights" / name
    for candidate in (Path(name), Path(SETTINGS["weights_dir"]) / name, cache):
        if candidate.is_file():
            return candidate
    if name not in GITHUB_ASSETS_NAMES:
        raise InputError(f"{name}: weights file not found (and not an ultralytics release asset)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        attempt_download_asset(cache)
    except Exception as exc:  # ConnectionError offline, anything else the network does
        raise InputError(
            f"{name} is not on this machine and could not be downloaded ({type(exc).__name__}); "
            f"pass --weights PATH (or put {name} in {cache.parent}), or --weights demo"
        ) from None
    if not cache.is_file():
        raise InputError(f"{name}: download produced no file at {cache}; pass --weights PATH")
    return cache



def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """A gray (H x W) or RGB (H x W x 3) image, uint8 or float in [0, 1] -> contiguous uint8 BGR."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"detector input must be H x W or H x W x 3, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, ::-1])


def trained_imgsz(model, default: int = 640) -> int:
    """The image size the weights were trained at (kept in ultralytics checkpoints), else `default`."""
    size = getattr(model, "overrides", {}).get("imgsz")
    if isinstance(size, (list, tuple)):
        size = max(size)
    return int(size) if size else default


class Detector:
    """An ultralytics YOLO detector with evaluation settings; see the module docstring.

    Raises InputError for weights that are missing, not loadable, or not a detection model, and for a
    device torch cannot use."""

    @classmethod
    def from_settings(cls, settings: DetectorSettings, device: DeviceLike = None) -> Detector:
        """The detector a DetectorSettings object describes, on `device`."""
        return cls(device=device, settings=settings)

    @runtime.in_session
    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: DeviceLike = None,
        *,
        settings: DetectorSettings | None = None,
        **overrides,
    ) -> None:
        """`weights` (default: the settings', else yolov5xu.pt) on `device`; `settings` and
        `**overrides` (its fields: imgsz, conf, iou, max_det, batch, half) as DetectorSettings."""
        from fusedet.ultralytics_env import prepare

        prepare()
        from ultralytics import YOLO

        settings = settings or DetectorSettings()
        if weights is not None:
            overrides["weights"] = str(weights)
        (values,) = split_overrides(overrides, DetectorSettings)
        settings = dataclasses.replace(settings, **values)
        self.weights = resolve_weights(settings.weights)
        self.device = str(resolve_device(device))
        try:
            self.model = YOLO(str(self.weights), task="detect")
            task, names = self.model.task, self.model.names  # ultralytics may load the file only here
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
            raise InputError(f"{self.weights}: not a loadable ultralytics detection model ({type(exc).__name__}: {reason})") from None
        if task != "detect":
            raise InputError(f"{self.weights}: a {task} model, not a detection model")
        self.names: dict[int, str] = {int(k): str(v) for k, v in names.items()}
        self.imgsz = int(settings.imgsz) if settings.imgsz else trained_imgsz(self.model)
        self.conf, self.iou, self.max_det = float(settings.conf), float(settings.iou), int(settings.max_det)
        self.batch = int(settings.batch)
        self.half = self.device.startswith("cuda") if settings.half is None else bool(settings.half)
        from ultralytics.cfg import DEFAULT_CFG_DICT

        # ultralytics 8.4 replaced `half` by `quantize` (16 = fp16); older releases only know `half`
        self._precision = {"quantize": 16 if self.half else None} if "quantize" in DEFAULT_CFG_DICT else {"half": self.half}
        self._sha256: str | None = None
        self._domain: TrainingDomain | None = None

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the weights file (None for a model built from a yaml)."""
        if self._sha256 is None and isinstance(self.weights, Path):
            self._sha256 = file_sha256(self.weights)
        return self._sha256

    @property
    def domain(self) -> TrainingDomain:
        """What the weights were trained on (fusedet.detector_domain: the shipped weights' table, the
        checkpoint's train_args, COCO's class list)."""
        if self._domain is None:
            ckpt = getattr(self.model, "ckpt", None) or {}
            train_args = ckpt.get("train_args") or getattr(self.model, "overrides", {})
            self._domain = training_domain(self.weights, self.sha256, train_args, is_coco(self.names))
        return self._domain

    def domain_warning(self, dataset: str, thermal_sources: Sequence[str] = (), stems: Sequence[str] = ()) -> str | None:
        """One line when this detector's table on `dataset` (a name) is not a result there (trained on
        other data, no infrared images for the `thermal_sources` rows, random weights, or evaluated
        `stems` it was trained on); None otherwise. See TrainingDomain.warning."""
        return self.domain.warning(dataset, thermal_sources, stems)

    def settings(self) -> dict:
        """Everything that changes the detections (recorded in run.json and in the resume keys)."""
        return {
            "weights": str(self.weights),
            "weights_sha256": self.sha256,
            "imgsz": self.imgsz,
            "conf": self.conf,
            "iou": self.iou,
            "max_det": self.max_det,
            "half": self.half,
        }

    def class_mapping(self, classes: Sequence[str]) -> ClassMapping:
        return map_classes(self.names, classes)

    @runtime.in_session
    def predict(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Raw detections per image: (boxes N x 4 xyxy px, scores N, model class indices N)."""
        from fusedet.ultralytics_env import prepare

        prepare()
        out = []
        for start in range(0, len(images), self.batch):
            chunk = [to_bgr_uint8(im) for im in images[start : start + self.batch]]
            results = self.model.predict(
                chunk,
                imgsz=self.imgsz,
                conf=self.conf,
                iou=self.iou,
                max_det=self.max_det,
                device=self.device,
                batch=len(chunk),
                **self._precision,
                verbose=False,
                save=False,
            )
            for result in results:
                boxes = result.boxes
                out.append(
                    (
                        boxes.xyxy.float().cpu().numpy().astype(np.float32),
                        boxes.conf.float().cpu().numpy().astype(np.float32),
                        boxes.cls.cpu().numpy().astype(np.int64),
                    )
                )
        return out

    def detect(self, images: Sequence[np.ndarray], classes: Sequence[str] | None = None) -> list[Detections]:
        """Detections per image; with `classes`, labels are mapped onto them and other classes dropped."""
        mapping = self.class_mapping(classes).model_to_dataset if classes is not None else self.names
        detections = []
        for boxes, scores, cls in self.predict(images):
            keep = np.array([int(c) in mapping for c in cls], dtype=bool)
            detections.append(Detections(boxes[keep], scores[keep], tuple(mapping[int(c)] for c in cls[keep])))
        return detections
