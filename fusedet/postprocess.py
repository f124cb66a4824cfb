"""Post-processing of fused luma: the steps a DMNet checkpoint may name as part of its fuser.

A post-processing is a spec string of steps joined by ``+``, applied left to right to each fused
B x 1 x H x W image in [0, 1] on its own (the result does not depend on the batch):

- ``none``: no step.
- ``minmax``: a linear stretch of each image to its full range, (F - min F) / (max F - min F) over
  that image's H x W (an image with max - min < 1e-6 is left as it is). It is the stretch of
  SeAFusion's test script (Tang et al., Inf. Fusion 2022; github Linfeng-Tang/SeAFusion ``test.py``:
  ``(fused - min) / (max - min)`` before ``* 255``), which stretches its RGB output over a whole
  batch; here it is the fused luma of each image, so it does not depend on the batch or the chroma.
- ``unsharp:A``: an unsharp mask, F + A (F - G * F), with G a Gaussian of sigma 1 pixel (9 taps,
  radius 4 sigma, as OpenCV's ``GaussianBlur(F, (0, 0), 1)`` for float images, border reflected
  without repeating the edge pixel, OpenCV's BORDER_REFLECT_101); A in (0, 4].

Every step ends clamped to [0, 1]; ``unsharp`` leaves an image of 4 pixels or fewer on a side as it
is. Example: ``minmax+unsharp:0.75`` (the shipped ``lite`` weights, model card dmnet_lite.md).

On the CPU the unsharp mask's blur of float32 images that need no gradient is OpenCV's separable filter
with the same taps (0.6 ms for a 480 x 640 image against 2.7 ms for torch's two padded convolutions);
elsewhere torch's. The two differ by float32 rounding only (tests/test_dmnet_postprocess.py).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fusedet.errors import InputError

STEPS = ("minmax", "unsharp:A")
UNSHARP_SIGMA = 1.0  # pixels
UNSHARP_RADIUS = 4  # taps each side: 4 sigma, OpenCV's kernel size for float images at sigma 1
MAX_UNSHARP_AMOUNT = 4.0


def parse_postprocess(spec: str) -> tuple[tuple[str, float], ...]:
    """The steps of a post-processing spec as (name, amount) pairs; ``none`` gives ().

    Raises InputError naming the spec for an unknown step or an amount that is not a number in
    (0, 4].
    """
    if spec == "none":
        return ()
    steps = []
    for part in spec.split("+"):
        name, _, value = part.partition(":")
        if name == "minmax" and not value:
            steps.append(("minmax", 0.0))
        elif name == "unsharp" and value:
            try:
                amount = float(value)
            except ValueError:
                amount = math.nan
            if not 0.0 < amount <= MAX_UNSHARP_AMOUNT:
                raise InputError(f"DMNet post-processing {spec!r}: unsharp amount {value!r} is not a number in (0, {MAX_UNSHARP_AMOUNT:g}]")
            steps.append(("unsharp", amount))
        else:
            raise InputError(f"unknown DMNet post-processing {spec!r} (steps: none, or {', '.join(STEPS)} joined by '+')")
    return tuple(steps)


def postprocess(fused: torch.Tensor, spec: str) -> torch.Tensor:
    """Apply the post-processing `spec` (see the module) to fused B x 1 x H x W images in [0, 1].

    Returns `fused` itself for ``none``, else a new tensor in [0, 1] of the same shape. Raises
    InputError for a bad spec.
    """
    for name, amount in parse_postprocess(spec):
        fused = _minmax(fused) if name == "minmax" else _unsharp(fused, amount)
    return fused


def _minmax(fused: torch.Tensor) -> torch.Tensor:
    flat = fused.flatten(1)
    low = flat.amin(dim=1).view(-1, 1, 1, 1)
    span = flat.amax(dim=1).view(-1, 1, 1, 1) - low
    stretched = (fused - low) / span.clamp_min(1e-6)
    return torch.where(span >= 1e-6, stretched, fused).clamp(0.0, 1.0)


@functools.cache
def _gaussian_taps() -> np.ndarray:
    """The 2 UNSHARP_RADIUS + 1 normalised Gaussian taps, float32 (a numpy array: a cached tensor made
    under inference mode could not enter a later autograd graph)."""
    x = np.arange(-UNSHARP_RADIUS, UNSHARP_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-(x**2) / (2 * UNSHARP_SIGMA**2))
    return (taps / taps.sum()).astype(np.float32)


def _unsharp(fused: torch.Tensor, amount: float) -> torch.Tensor:
    r = UNSHARP_RADIUS
    if min(fused.shape[-2:]) <= r:  # reflect padding needs more pixels than the radius
        return fused
    return (fused + amount * (fused - _blur(fused))).clamp(0.0, 1.0)


def _blur(fused: torch.Tensor) -> torch.Tensor:
    """The Gaussian blur of each B x 1 x H x W image (BORDER_REFLECT_101), sides above UNSHARP_RADIUS."""
    kernel = _gaussian_taps()
    if fused.device.type == "cpu" and fused.dtype == torch.float32 and not fused.requires_grad:
        images = fused.detach().numpy()
        return torch.from_numpy(np.stack([cv2.sepFilter2D(np.ascontiguousarray(image[0]), -1, kernel, kernel,
                                                          borderType=cv2.BORDER_REFLECT_101)
                                          for image in images])[:, None])
    taps, r = torch.from_numpy(kernel).to(fused.device, fused.dtype), UNSHARP_RADIUS
    blurred = F.conv2d(F.pad(fused, (r, r, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(blurred, (0, 0, r, r), mode="reflect"), taps.view(1, 1, -1, 1))
