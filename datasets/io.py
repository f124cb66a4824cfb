"""Image I/O shared by every part of fusedet: folders of IR/VIS pairs matched by stem.

Conventions (those of the fusion literature):
- images are returned as float32 in [0, 1]; how decoded values get there is a value-range spec
  (:mod:`fusedet.datasets.value_range`): the IR and VIS readers take ``ir_range=`` / ``vis_range=``
  (default ``auto``: 8-bit / 255; 16-bit / 65535 unless nearly flat, then a counted per-image
  percentile stretch; floats in [0, 1] as is, other floats an error unless ``minmax`` or
  ``percentile`` is chosen); :func:`read_image` defaults to ``full`` (8-bit / 255, 16-bit / 65535,
  the convention the fusion metrics read by). Nothing is ever clipped silently. Pass a
  :class:`fusedet.datasets.value_range.RangeLog` as ``log=`` to count the decisions;
- IR is one channel: a colour or 3-equal-channel IR file is reduced with the BT.601 luma weights;
- VIS is RGB (H x W x 3); a gray visible file is replicated to three channels;
- an alpha channel is dropped.
Every failure raises :class:`fusedet.errors.InputError` with the offending path(s) in the message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusedet.datasets.atomic import write_bytes_atomic
from fusedet.datasets.color import rgb_to_gray, rgb_to_ycbcr
from fusedet.datasets.value_range import RangeLog, ValueRange, parse_value_range, to_unit_range
from fusedet.errors import InputError

RangeSpec = str | ValueRange | None

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike) -> dict[str, Path]:
    """Map stem -> path for every image in `folder` (not recursive), sorted by stem.

    Raises InputError if the folder does not exist, holds no image, or holds two images
    with the same stem (``a.png`` and ``a.jpg``), which would make matching by stem ambiguous.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in found:
            raise InputError(f"{folder}: two images share the stem {path.stem!r}: {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    if not found:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return dict(sorted(found.items()))


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as stored (OpenCV ``IMREAD_UNCHANGED``): its own dtype (uint8, uint16,
    float32, ...), H x W or H x W x 3 in RGB order; alpha (and a gray file's alpha) dropped.
    InputError for missing, corrupt or unsupported files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None or image.size == 0:
        raise InputError(f"{path}: unreadable or corrupt image file")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels in (1, 2):  # gray (+ alpha)
            image = image[:, :, 0]
        elif channels in (3, 4):
            image = np.ascontiguousarray(image[:, :, 2::-1])  # BGR(A) -> RGB
        else:
            raise InputError(f"{path}: unsupported number of channels ({channels})")
    return image


def read_image(
    path: str | os.PathLike, value_range: RangeSpec = "full", *, role: str = "image", log: RangeLog | None = None
) -> np.ndarray:
    """Read one image as float32 in [0, 1]: H x W for gray files, H x W x 3 RGB for colour ones.

    `value_range` (default ``full``: 8-bit / 255, 16-bit / 65535, floats must lie in [0, 1]) is a
    spec of :func:`fusedet.datasets.value_range.parse_value_range`; `role` names the image in
    errors and in `log`. Raises InputError for unreadable files and values the spec cannot map.
    """
    spec = parse_value_range(value_range)
    return to_unit_range(decode_image(path), spec, path=Path(path), role=role, log=log)


def read_ir(path: str | os.PathLike, *, ir_range: RangeSpec = "auto", log: RangeLog | None = None) -> np.ndarray:
    """Read an infrared image as one channel (H x W, float32 in [0, 1]); `ir_range` is a value-range spec."""
    image = read_image(path, ir_range, role="ir", log=log)
    return rgb_to_gray(image) if image.ndim == 3 else image


def read_vis(path: str | os.PathLike, *, vis_range: RangeSpec = "auto", log: RangeLog | None = None) -> np.ndarray:
    """Read a visible image as RGB (H x W x 3, float32 in [0, 1]); gray files are replicated; `vis_range` is a value-range spec."""
    image = read_image(path, vis_range, role="vis", log=log)
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


@dataclass(frozen=True)
class Pair:
    """An aligned IR/VIS pair: `ir` is H x W, `vis` is H x W x 3 RGB, both float32 in [0, 1]."""

    stem: str
    ir: np.ndarray
    vis: np.ndarray
    ir_path: Path
    vis_path: Path

    @property
    def vis_y(self) -> np.ndarray:
        """The visible image's BT.601 luma (Y of YCbCr), H x W."""
        return rgb_to_ycbcr(self.vis)[..., 0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.ir.shape[0], self.ir.shape[1]


class PairFolder:
    """IR and VIS folders whose images are matched by stem.

    Construction checks that both folders hold images and that every stem has a partner;
    a missing partner raises InputError naming the lonely files. `ir_range`/`vis_range` (value-range
    specs, default auto) and `log` apply to every :meth:`read` that does not override them.
    """

    def __init__(
        self,
        ir_dir: str | os.PathLike,
        vis_dir: str | os.PathLike,
        *,
        ir_range: RangeSpec = "auto",
        vis_range: RangeSpec = "auto",
        log: RangeLog | None = None,
    ) -> None:
        self.ir_range = parse_value_range(ir_range, option="ir range")
        self.vis_range = parse_value_range(vis_range, option="vis range")
        self.log = log
        self.ir_dir, self.vis_dir = Path(ir_dir), Path(vis_dir)
        self.ir_files = list_images(self.ir_dir)
        self.vis_files = list_images(self.vis_dir)
        lonely_ir = [str(self.ir_files[s]) for s in self.ir_files if s not in self.vis_files]
        lonely_vis = [str(self.vis_files[s]) for s in self.vis_files if s not in self.ir_files]
        if lonely_ir or lonely_vis:
            parts = []
            if lonely_ir:
                parts.append(f"no visible partner in {self.vis_dir} for: {few(lonely_ir)}")
            if lonely_vis:
                parts.append(f"no infrared partner in {self.ir_dir} for: {few(lonely_vis)}")
            raise InputError("unpaired images: " + "; ".join(parts))
        self.stems: list[str] = list(self.ir_files)

    def __len__(self) -> int:
        return len(self.stems)

    def __iter__(self):
        return (self.read(stem) for stem in self.stems)

    def read(
        self, stem: str, *, ir_range: RangeSpec = None, vis_range: RangeSpec = None, log: RangeLog | None = None
    ) -> Pair:
        """Read the pair `stem`; different IR/VIS sizes raise InputError naming both files.
        `ir_range`/`vis_range`/`log` default to the folder's."""
        if stem not in self.ir_files:
            raise InputError(f"no pair with stem {stem!r} in {self.ir_dir} / {self.vis_dir}")
        return read_pair(
            self.ir_files[stem],
            self.vis_files[stem],
            stem,
            ir_range=self.ir_range if ir_range is None else ir_range,
            vis_range=self.vis_range if vis_range is None else vis_range,
            log=self.log if log is None else log,
        )


def read_pair(
    ir_path: str | os.PathLike,
    vis_path: str | os.PathLike,
    stem: str | None = None,
    *,
    ir_range: RangeSpec = "auto",
    vis_range: RangeSpec = "auto",
    log: RangeLog | None = None,
) -> Pair:
    """Read one IR/VIS pair from two files (value-range specs `ir_range`, `vis_range`) and check that their sizes agree."""
    ir_path, vis_path = Path(ir_path), Path(vis_path)
    ir, vis = read_ir(ir_path, ir_range=ir_range, log=log), read_vis(vis_path, vis_range=vis_range, log=log)
    if ir.shape[:2] != vis.shape[:2]:
        raise InputError(
            f"pair {stem or ir_path.stem!r} has different sizes: {ir_path} is {ir.shape[1]}x{ir.shape[0]}, "
            f"{vis_path} is {vis.shape[1]}x{vis.shape[0]} (W x H); register/resize the pair first"
        )
    return Pair(stem or ir_path.stem, ir, vis, ir_path, vis_path)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding (the inverse of read_image for 8-bit files)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a [0, 1] float (or uint8) gray/RGB image atomically (temp file + rename); format from suffix."""
    path = Path(path)
    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # RGB -> BGR for OpenCV
    ok, encoded = cv2.imencode(path.suffix or ".png", pixels)
    if not ok:
        raise InputError(f"{path}: could not encode image as {path.suffix}")
    write_bytes_atomic(path, encoded.tobytes())
    return path


def few(items: Sequence[str], limit: int = 5) -> str:
    """'a, b, c and 7 more': a short list for messages."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
