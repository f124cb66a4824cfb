"""FusionDetector: fuse IR/visible pairs, detect objects, and measure per-class AP per source.

    from fusedet import FusionDetector
    fd = FusionDetector(fuser="dmnet", weights="demo", device="cpu")
    fused = fd.fuse("Ir/00000.png", "Vis/00000.png")     # H x W x 3 RGB float32 in [0, 1]
    dets = fd.detect(fused)                                 # .boxes (xyxy px), .scores, .labels
    table = fd.evaluate("demo", sources=["ir", "vi", "dmnet"], out="runs/demo")
    print(table.to_markdown())

The settings are two objects built once (fusedet.settings): `DetectorSettings` (weights, image size,
thresholds, detection batch, fp16) and `RunSettings` (device, split, fusion batch, reader threads,
cache, seed). Pass them whole, or pass their fields as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusedet import distributed, runtime
from fusedet.datasets.color import rgb_to_gray
from fusedet.datasets.io import read_image, read_ir, read_vis
from fusedet.datasets.records import DetectionDataset
from fusedet.detection_report import DetectionReport
from fusedet.detector import Detections, Detector
from fusedet.devices import resolve_device
from fusedet.errors import InputError
from fusedet.events import Events
from fusedet.fused_cache import default_cache_dir
from fusedet.fusers import Fuser, fuse_arrays, get_fuser
from fusedet.settings import DEFAULT_DETECTOR_WEIGHTS, DetectorSettings, ReportSettings, RunSettings, split_overrides
from fusedet.sources import Source, parse_sources


class FusionDetector:
    """A fuser and a detector together (see the module docstring).

    `fuser`: a registered name or spec (``dmnet``, ``mean``, ``max``, ``dmnet:PATH``) or a Fuser;
    `weights`: detector weights (``yolov5xu.pt``, downloaded once by ultralytics when online; a path;
    or ``demo``, the shipped detector of the synthetic demo data); `device`: ``cpu``, ``cuda`` or None
    (CUDA when available). `detector` / `run`: whole settings objects; `**overrides`: any of their
    fields (``imgsz=320``, ``fuse_batch=4``, ``cache_dir=...``). The fuser and the detector load on
    first use. Raises InputError for an unknown setting or device.
    """

    def __init__(
        self,
        fuser: str | Fuser = "dmnet",
        weights: str | os.PathLike = DEFAULT_DETECTOR_WEIGHTS,
        device: str | None = None,
        *,
        detector: DetectorSettings | None = None,
        run: RunSettings | None = None,
        **overrides,
    ) -> None:
        det_values, run_values = split_overrides(overrides, DetectorSettings, RunSettings)
        detector = detector or DetectorSettings(weights=str(weights))
        run = run or RunSettings()
        self.detector_settings = dataclasses.replace(detector, **det_values)
        self.device = resolve_device(device if device is not None else run.device)
        self.run_settings = dataclasses.replace(run, **run_values, device=str(self.device))
        self.fuser_spec = fuser
        self._fuser: Fuser | None = None
        self._detector: Detector | None = None

    @property
    def fuser(self) -> Fuser:
        """The fuser, built on first use."""
        if self._fuser is None:
            self._fuser = get_fuser(self.fuser_spec, device=self.device)
        return self._fuser

    @property
    def detector(self) -> Detector:
        """The detector, loaded on first use."""
        if self._detector is None:
            self._detector = Detector.from_settings(self.detector_settings, self.device)
        return self._detector

    @runtime.in_session
    def fuse(self, ir, vis) -> np.ndarray:
        """Fuse one pair: paths, or arrays (IR: H x W gray; VIS: H x W x 3 RGB, or H x W gray; uint8,
        uint16, or float in [0, 1]). Returns the fused RGB image, H x W x 3 float32 in [0, 1].
        Raises InputError for a size mismatch or values out of range."""
        ir, vis = as_ir(ir, self.run_settings.ir_range), as_vis(vis, self.run_settings.vis_range)
        if ir.shape != vis.shape[:2]:
            raise InputError(f"IR is {ir.shape[1]}x{ir.shape[0]} but visible is {vis.shape[1]}x{vis.shape[0]} (W x H)")
        return fuse_arrays(self.fuser, ir, vis)

    @runtime.in_session
    def detect(self, image, vis=None, source: str = "fused", classes: Sequence[str] | None = None) -> Detections:
        """Detect objects in one image.

        ``detect(image)``: `image` is what the detector sees: a path, or an array (H x W gray, or
        H x W x 3 RGB; uint8, uint16 or float in [0, 1]), such as what ``fuse`` returned.
        ``detect(ir, vis, source)``: from a pair, on the fused image (`source` ``"fused"``, the
        default) or on the IR or visible image (``"ir"`` / ``"vi"``).
        Labels are the detector's class names, or mapped onto `classes` when given.
        """
        if vis is None:
            picture = read_image(image, self.run_settings.vis_range) if isinstance(image, (str, os.PathLike)) else _as_float(image)
            return self.detector.detect([picture], classes)[0]
        views = {
            "fused": lambda: self.fuse(image, vis),
            "ir": lambda: as_ir(image, self.run_settings.ir_range),
            "vi": lambda: as_vis(vis, self.run_settings.vis_range),
        }
        if source not in views:
            raise InputError(f"source must be 'fused', 'ir' or 'vi', got {source!r}")
        return self.detector.detect([views[source]()], classes)[0]

    @runtime.in_session
    def evaluate(
        self,
        dataset: DetectionDataset | str,
        sources: Sequence[str | Source] | str | None = None,
        split: str | None = None,
        out: str | os.PathLike | None = None,
        *,
        root: str | os.PathLike | None = None,
        report: ReportSettings | None = None,
        events: Events | None = None,
    ) -> DetectionReport:
        """Per-class AP@0.5 of each source on `split` (default: the run settings', ``test``) of `dataset`
        (a DetectionDataset, e.g. from fusedet.datasets.load_dataset, or a registered name loaded from
        `root`). `sources` defaults to ir, vi and this detector's fuser. With `out` every output file
        is written there (see fusedet.evaluation) and a rerun resumes; without it the run happens in a
        temporary folder (not under torchrun: the processes of a sharded run share `out`). Fused
        images are cached in the run settings' `cache_dir`, else the machine's fusedet cache
        (fusedet.fused_cache.default_cache_dir), so another run reuses them. `report` (ReportSettings)
        sets the main metric, the bootstrap intervals, the baseline row and groups. `events` receives progress (fusedet.events). Returns the report
        (``.rows``: AP@0.5 per source and class; ``.table``: the main table, ``.to_markdown()``,
        ``.table.plot(path)``). Raises InputError for bad input, before any long work."""
        import tempfile

        from fusedet.evaluation import Evaluation

        run = self.run_settings if split is None else dataclasses.replace(self.run_settings, split=split)
        if isinstance(dataset, str):
            from fusedet.datasets.registry import load_dataset

            dataset = load_dataset(dataset, root, seed=run.seed)
        own = self.fuser_spec.name if isinstance(self.fuser_spec, Fuser) else str(self.fuser_spec)
        if out is None and distributed.from_env()[0] > 1:
            raise InputError("a sharded evaluation (torchrun) needs an output folder shared by its processes: pass out")
        with tempfile.TemporaryDirectory(prefix="fusedet-eval-") as tmp:
            out_dir = Path(out) if out is not None else Path(tmp)
            run = dataclasses.replace(run, cache_dir=default_cache_dir(run))
            parsed = parse_sources(sources if sources is not None else ["ir", "vi", own], device=self.device,
                                   fusers={own: lambda: self.fuser})
            engine = Evaluation(dataset, parsed, self.detector, out_dir, run=run, report=report, events=events)
            return engine.run()


def as_ir(value, ir_range: str = "auto") -> np.ndarray:
    """An IR image from a path (read with value range `ir_range`) or an array (gray, or RGB reduced to
    luma), float32 H x W in [0, 1]."""
    if isinstance(value, (str, os.PathLike)):
        return read_ir(value, ir_range=ir_range)
    image = _as_float(value)
    if image.ndim == 3:
        image = rgb_to_gray(image[:, :, :3]) if image.shape[2] >= 3 else image[:, :, 0]
    return np.ascontiguousarray(image, dtype=np.float32)


def as_vis(value, vis_range: str = "auto") -> np.ndarray:
    """A visible image from a path (read with value range `vis_range`) or an array (RGB, or gray
    replicated), float32 H x W x 3 in [0, 1]."""
    if isinstance(value, (str, os.PathLike)):
        return read_vis(value, vis_range=vis_range)
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
