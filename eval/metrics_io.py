"""Reading image files for the fusion metrics: one decode per file, shared by every convention.

The metrics read files the way their reference code did (``cv2.imread`` for cddfuse, MATLAB ``imread`` for
vifb): as 8-bit levels. :func:`read_levels` decodes a file once into those levels (H x W, or H x W x 3 RGB for
colour; a file of three equal channels, a gray picture stored as RGB, gives H x W) and notes how flat it is;
:func:`cddfuse_gray` and :func:`vifb_array` then give each convention its view.

- 8-bit files: their levels, exactly. 16-bit files: ``rint(v / 65535 * 255)`` in float32 (the reference's
  OpenCV read truncates 16-bit PNGs to ``v >> 8``; the two differ by at most one level). Float files
  (TIFF): values must lie in 0..1 and become ``rint(255 v)``; anything else is refused with the file's range.
- An alpha channel is dropped; a gray + alpha file is gray.
- :attr:`LevelImage.span` is (max - min) over the file's full range (65535 for 16-bit, 255 for 8-bit, 1 for
  float): a radiometric 16-bit thermal frame holding 14-bit counts in a narrow band has a span far below 1,
  and the metrics, which read it as their reference does, score a nearly flat image. :func:`nearly_flat`
  says when to warn (span under 1/16).

Unreadable files raise :class:`fusedet.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusedet.errors import InputError
from fusedet.eval import metrics_kernels

FLAT_SPAN = 1.0 / 16.0  # warn when (max - min) is under this fraction of the file's full range


@dataclass(frozen=True)
class LevelImage:
    """A decoded image file: `levels` uint8 H x W (gray, or three equal channels) or H x W x 3 (RGB colour),
    `bits` the stored depth (8, 16, or 32 for float), `span` (max - min) / full range of the stored type."""

    path: Path
    levels: np.ndarray
    bits: int
    span: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.levels.shape[1], self.levels.shape[0]


def read_levels(path: str | os.PathLike) -> LevelImage:
    """Decode `path` into 8-bit levels (see the module docstring); InputError names a bad file."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None or image.size == 0:
        raise InputError(f"{path}: unreadable or corrupt image file")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels in (1, 2):
            image = np.ascontiguousarray(image[:, :, 0])
        elif channels in (3, 4) and image.dtype == np.uint8 and metrics_kernels.AVAILABLE:
            plane = np.empty(image.shape[:2], np.uint8)
            gray, lo, hi = metrics_kernels.gray_plane(image, plane)  # one pass instead of split, compare, minMaxLoc
            if gray:
                return LevelImage(path, plane, 8, (int(hi) - int(lo)) / 255.0)
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
        elif channels in (3, 4):
            planes = cv2.split(image)
            if _equal(planes[0], planes[1]) and _equal(planes[1], planes[2]):
                image = planes[0]  # a gray picture stored as RGB: one channel, as every view reads it
            else:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
        else:
            raise InputError(f"{path}: unsupported number of channels ({channels})")
    if image.dtype in (np.uint8, np.uint16):
        lo, hi = cv2.minMaxLoc(image.reshape(image.shape[0], -1))[:2]
        if image.dtype == np.uint8:
            return LevelImage(path, image, 8, (hi - lo) / 255.0)
        levels = image.astype(np.float32) / np.float32(65535.0) * np.float32(255.0)
        return LevelImage(path, np.rint(levels).astype(np.uint8), 16, (hi - lo) / 65535.0)
    if image.dtype in (np.float32, np.float64):
        lo, hi = float(np.min(image)), float(np.max(image))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise InputError(f"{path}: float image with values {lo:g}..{hi:g}; the metrics read float images on the 0..1 scale")
        levels = np.rint(image.astype(np.float32) * np.float32(255.0)).astype(np.uint8)
        return LevelImage(path, levels, 32, hi - lo)
    raise InputError(f"{path}: unsupported pixel type {image.dtype} (8-bit, 16-bit or float images only)")


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two planes of the same shape and type hold the same values."""
    return cv2.countNonZero(cv2.absdiff(a, b)) == 0


def nearly_flat(image: LevelImage) -> bool:
    """True when the file's span (max - min) is under 1/16 of its full range (see the module docstring)."""
    return image.span < FLAT_SPAN


def gray_channel(levels: np.ndarray) -> np.ndarray | None:
    """The one channel of a gray image: H x W levels as they are, the first channel of H x W x 3 levels
    whose three channels are equal; None for a colour image."""
    if levels.ndim == 2:
        return levels
    r, g, b = cv2.split(levels)
    return r if _equal(r, g) and _equal(g, b) else None


def is_gray(levels: np.ndarray) -> bool:
    """True for H x W levels and for H x W x 3 levels whose three channels are equal."""
    return gray_channel(levels) is not None


def cddfuse_levels(levels: np.ndarray) -> np.ndarray:
    """The cddfuse reading: H x W uint8 gray levels; colour becomes OpenCV's float32 BT.601 gray, rounded
    (``np.round(cv2.cvtColor(bgr.astype(float32), COLOR_BGR2GRAY))`` as CDDFuse's image_read_cv2).

    Three equal channels give that channel exactly (the weights sum to 1, so the rounding returns it)."""
    gray = gray_channel(levels)
    if gray is not None:
        return gray
    bgr = cv2.cvtColor(levels, cv2.COLOR_RGB2BGR).astype(np.float32)
    return np.round(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)).astype(np.uint8)


def cddfuse_gray(levels: np.ndarray) -> np.ndarray:
    """:func:`cddfuse_levels` as H x W float32."""
    return cddfuse_levels(levels).astype(np.float32)


def vifb_array(levels: np.ndarray) -> np.ndarray:
    """The vifb reading: the uint8 levels as MATLAB's ``imread`` holds them, H x W or H x W x 3 RGB, except
    that three equal channels become one (a gray picture stored as RGB, as VIFB's own images are not)."""
    gray = gray_channel(levels)
    return levels if gray is None else gray
