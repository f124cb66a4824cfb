"""Fusers: anything that fuses a batch of IR images with a batch of visible luma images.

A fuser works on torch tensors B x 1 x H x W in [0, 1] (IR and visible Y) and returns the fused
luma in the same layout; `fuse_color` puts the visible chroma back so a detector gets RGB.
Fusers are registered by name (`mean`, `max`, `dmnet`, ...) and built with `get_fuser(spec)`; the
registry holds factories, or the import path of one for fusers that live in other modules (`dmnet`),
so the model code loads only when that fuser is asked for.
Fused images produced elsewhere (another method's output folder) are not fusers: see
`fusedet.sources` for `folder:NAME=DIR`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import numpy as np
import torch

from fusedet.datasets.color import replace_luma, rgb_to_gray
from fusedet.devices import resolve_device
from fusedet.errors import InputError
from fusedet.settings import closest

T = TypeVar("T")


class Fuser(ABC):
    """Fuses IR and visible-luma batches (B x 1 x H x W, [0, 1]) into a fused luma batch.

    A fuser has a `device` (where it computes; inputs on another device are moved there and the
    result comes back on the input's device) and a `provenance()`: what run records say about it."""

    name: str = "fuser"
    device: torch.device = torch.device("cpu")
    min_side: int = 1  # the smallest height and width the fuser accepts, in pixels

    @abstractmethod
    def fuse(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """Return the fused luma, B x 1 x H x W in [0, 1]."""

    def cache_key(self) -> str:
        """A string that changes whenever the fused output would change (weights, settings)."""
        return self.name

    def to(self, device: str | torch.device) -> Fuser:
        """Compute on `device` from now on (resolved by fusedet.devices: "auto", "cuda" under torchrun, and
        a one-line InputError for a device this machine lacks); returns self."""
        self.device = resolve_device(device)
        return self

    def provenance(self) -> dict:
        """Plain values for run.json: name, cache key, device (subclasses add weights and settings)."""
        return {"fuser": self.name, "cache_key": self.cache_key(), "device": str(self.device)}


class MeanFuser(Fuser):
    """Pixel mean (IR + Y) / 2: the weakest sensible baseline."""

    name = "mean"

    def fuse(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        return (ir + vis_y) / 2


class MaxFuser(Fuser):
    """Pixel max(IR, Y): strong on MI, VIF and Qabf by construction."""

    name = "max"

    def fuse(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        return torch.maximum(ir, vis_y)


FuserFactory = Callable[[str | None], Fuser]

# name -> a factory `(arg) -> Fuser`, or "module:attribute" naming one, imported on first use (so
# this module never imports its plugins, and the DMNet model loads only when asked for).
FUSERS: dict[str, FuserFactory | str] = {
    "mean": lambda arg: _no_argument("mean", arg, MeanFuser),
    "max": lambda arg: _no_argument("max", arg, MaxFuser),
    "dmnet": "fusedet.dmnet_fuser:DMNetFuser",
}


def _no_argument(name: str, arg: str | None, cls: type[Fuser]) -> Fuser:
    if arg:
        raise InputError(f"fuser {name!r} takes no argument (got {name}:{arg})")
    return cls()


def register_fuser(name: str, factory: FuserFactory | str) -> None:
    """Register a fuser under `name`: `factory(arg)` builds it (``arg`` is the text after ``NAME:`` in
    a spec, or None), or a ``"module:attribute"`` string naming such a factory, imported on first use."""
    FUSERS[name] = factory


def check_fuser_spec(spec: str) -> str:
    """The registered name of fuser spec ``NAME`` or ``NAME:ARG``; InputError naming the closest
    registered name when there is none. Loads nothing."""
    name = spec.partition(":")[0]
    if name not in FUSERS:
        raise InputError(f"unknown fuser {spec!r}{closest(name, FUSERS)}; known: {', '.join(sorted(FUSERS))}")
    return name


def get_fuser(spec: str | Fuser, device: str | torch.device = "cpu") -> Fuser:
    """Build a fuser from ``NAME`` or ``NAME:ARG`` (for instance ``dmnet:path/to.ckpt``) on `device`,
    or move a Fuser object there."""
    if isinstance(spec, Fuser):
        return spec.to(device)
    name = check_fuser_spec(spec)
    arg = spec.partition(":")[2] or None
    factory = FUSERS[name]
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
    return factory(arg).to(device)


def batches_by_size(items: Sequence[T], size: Callable[[T], Hashable], batch: int) -> list[list[T]]:
    """`items` grouped by image size (groups in order of first appearance), each group cut into
    batches of at most `batch`: what one fusion forward pass can take."""
    batch = max(1, int(batch))
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(size(item), []).append(item)
    return [group[i : i + batch] for group in groups.values() for i in range(0, len(group), batch)]


def fuse_color(fuser: Fuser, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """Fuse B x 1 x H x W IR with B x 3 x H x W RGB visible images; returns B x 3 x H x W RGB."""
    vis_y = rgb_to_gray(vis, channel_axis=1)  # the Y of rgb_to_ycbcr, B x H x W
    fused_y = fuser.fuse(ir, vis_y[:, None]).clamp(0.0, 1.0)
    return replace_luma(vis, fused_y[:, 0], channel_axis=1, luma=vis_y)


@torch.inference_mode()
def fuse_arrays(fuser: Fuser, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Fuse one pair of numpy images (IR H x W, VIS H x W x 3 RGB, float in [0, 1]) on the fuser's
    device; returns the fused RGB image, H x W x 3 float32 in [0, 1]. InputError for integer images
    (divide 8-bit ones by 255), other shapes, or sizes that differ."""
    ir, vis = np.asarray(ir), np.asarray(vis)
    for name, image in (("ir", ir), ("vis", vis)):
        if not np.issubdtype(image.dtype, np.floating):
            raise InputError(f"fuse_arrays: {name} must be a float image in [0, 1], got {image.dtype} "
                             "(divide 8-bit images by 255, 16-bit ones by 65535)")
    if ir.ndim != 2 or vis.ndim != 3 or vis.shape[2] != 3:
        raise InputError(f"fuse_arrays: ir must be H x W and vis H x W x 3 (RGB), got {ir.shape} and {vis.shape}")
    if ir.shape != vis.shape[:2]:
        raise InputError(f"fuse_arrays: ir is {ir.shape[1]}x{ir.shape[0]} but vis {vis.shape[1]}x{vis.shape[0]}")
    ir_t = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32))[None, None].to(fuser.device)
    vis_t = torch.from_numpy(np.ascontiguousarray(vis, dtype=np.float32)).permute(2, 0, 1)[None].to(fuser.device)
    fused = fuse_color(fuser, ir_t, vis_t)
    return fused[0].permute(1, 2, 0).float().cpu().numpy()


@torch.inference_mode()
def fuse_pairs_uint8(fuser: Fuser, pairs: Sequence) -> list[np.ndarray]:
    """Fuse same-size pairs (objects with .ir H x W and .vis H x W x 3 RGB in [0, 1]) as one batch on
    the fuser's device; returns RGB uint8 images, rounded like fusedet.datasets.to_uint8."""
    ir = torch.from_numpy(np.stack([p.ir for p in pairs]))[:, None].to(fuser.device)
    vis = torch.from_numpy(np.stack([p.vis for p in pairs])).permute(0, 3, 1, 2).to(fuser.device)
    fused = fuse_color(fuser, ir, vis)
    pixels = (fused.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return list(pixels.permute(0, 2, 3, 1).cpu().numpy())
