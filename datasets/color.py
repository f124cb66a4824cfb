"""BT.601 colour conversions used by fusion papers, for numpy (channels last) and torch (channels first).

Fusion networks fuse the visible image's luma Y with the IR image and put the visible chroma back:
Y = 0.299 R + 0.587 G + 0.114 B, Cb = 0.5 + (B - Y) / 1.772, Cr = 0.5 + (R - Y) / 1.402
(full-range JPEG/JFIF BT.601, the RGB2YCrCb of SeAFusion/CDDFuse up to rounding of the constants).
The inverse is exact, so ycbcr_to_rgb(rgb_to_ycbcr(x)) == x up to float error.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

try:  # torch is a dependency, but these helpers also serve numpy-only callers
    import torch
except ImportError:  # pragma: no cover
    torch = None

Array = TypeVar("Array")

KR, KG, KB = 0.299, 0.587, 0.114


def _split(x, axis: int):
    if torch is not None and isinstance(x, torch.Tensor):
        return x.unbind(axis), (lambda parts: torch.stack(parts, dim=axis))
    return [np.take(x, i, axis=axis) for i in range(3)], (lambda parts: np.stack(parts, axis=axis))


def _axis(x, channel_axis: int | None) -> int:
    if channel_axis is not None:
        return channel_axis
    return 1 if (torch is not None and isinstance(x, torch.Tensor) and x.ndim == 4) else -1


def rgb_to_gray(rgb: Array, channel_axis: int | None = None) -> Array:
    """BT.601 luma of an RGB image in any value range (the gray conversion of the fusion metrics)."""
    (r, g, b), _ = _split(rgb, _axis(rgb, channel_axis))
    return KR * r + KG * g + KB * b


def rgb_to_ycbcr(rgb: Array, channel_axis: int | None = None) -> Array:
    """RGB in [0, 1] -> stacked (Y, Cb, Cr) in [0, 1]. Default channel axis: last for numpy, 1 for 4-D torch."""
    axis = _axis(rgb, channel_axis)
    (r, g, b), stack = _split(rgb, axis)
    y = KR * r + KG * g + KB * b
    cb = 0.5 + (b - y) / (2.0 * (1.0 - KB))
    cr = 0.5 + (r - y) / (2.0 * (1.0 - KR))
    return stack([y, cb, cr])


def ycbcr_to_rgb(ycbcr: Array, channel_axis: int | None = None, clip: bool = True) -> Array:
    """Inverse of rgb_to_ycbcr; the result is clipped to [0, 1] unless `clip=False`."""
    axis = _axis(ycbcr, channel_axis)
    (y, cb, cr), stack = _split(ycbcr, axis)
    r = y + 2.0 * (1.0 - KR) * (cr - 0.5)
    b = y + 2.0 * (1.0 - KB) * (cb - 0.5)
    g = (y - KR * r - KB * b) / KG
    out = stack([r, g, b])
    if not clip:
        return out
    return out.clamp(0.0, 1.0) if (torch is not None and isinstance(out, torch.Tensor)) else np.clip(out, 0.0, 1.0)


def replace_luma(rgb: Array, y: Array, channel_axis: int | None = None, luma: Array | None = None) -> Array:
    """Put a fused luma `y` (same shape as one channel of `rgb`) into the colour of `rgb`.

    Keeping Cb/Cr and changing Y by dY moves R, G and B each by exactly dY (every row of the
    inverse BT.601 matrix has a 1 in the Y column), so this is rgb + (y - Y(rgb)), clipped to [0, 1].
    `luma`: Y(rgb) (``rgb_to_gray(rgb)``) where the caller has it already; computed when None.
    """
    axis = _axis(rgb, channel_axis)
    if luma is None:
        luma = rgb_to_gray(rgb, axis)
    if torch is not None and isinstance(rgb, torch.Tensor):
        return (rgb + (y - luma).unsqueeze(axis)).clamp(0.0, 1.0)
    return np.clip(rgb + np.expand_dims(y - luma, axis), 0.0, 1.0)
