"""Fusers: anything that fuses a batch of IR images with a batch of visible luma images.

A fuser works on torch tensors B x 1 x H x W in [0, 1] (IR and visible Y) and returns the fused
luma in the same layout; `fuse_color` puts the visible chroma back so a detector gets RGB.
Fusers are registered by name (`mean`, `max`, `dmnet`, ...) and built with `get_fuser(spec)`.
Fused images produced elsewhere (another method's output folder) are not fusers: see
`fusedet.sources` for `folder:NAME=DIR`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import numpy as np
import torch

from fusedet.datasets.color import replace_luma, rgb_to_ycbcr
from fusedet.errors import InputError

T = TypeVar("T")


class Fuser(ABC):
    """Fuses IR and visible-luma batches (B x 1 x H x W, [0, 1]) into a fused luma batch."""

    name: str = "fuser"

    @abstractmethod
    def fuse(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """Return the fused luma, B x 1 x H x W in [0, 1]."""

    def cache_key(self) -> str:
        """A string that changes whenever the fused output would change (weights, settings)."""
        return self.name

    def to(self, device: str | torch.device) -> Fuser:
        """Move the fuser to `device`; stateless fusers ignore it."""
        return self


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


FuserFactory = Callable[..., Fuser]
FUSERS: dict[str, FuserFactory] = {"mean": lambda **_: MeanFuser(), "max": lambda **_: MaxFuser()}


def register_fuser(name: str, factory: FuserFactory) -> None:
    """Register a fuser factory under `name`; `factory(arg=..., device=...)` builds it."""
    FUSERS[name] = factory


def get_fuser(spec: str | Fuser, device: str | torch.device = "cpu") -> Fuser:
    """Build a fuser from `NAME` or `NAME:ARG` (for instance `dmnet:path/to.ckpt`), or pass one through."""
    if isinstance(spec, Fuser):
        return spec.to(device)
    _ensure_builtin_fusers()
    name, _, arg = spec.partition(":")
    if name not in FUSERS:
        raise InputError(f"unknown fuser {spec!r}; known: {', '.join(sorted(FUSERS))}")
    return FUSERS[name](arg=arg or None, device=device).to(device)


def _ensure_builtin_fusers() -> None:
    """Register the fusers that live in other modules (imported lazily: dmnet pulls in the model)."""
    if "dmnet" not in FUSERS:
        try:
            import fusedet.dmnet_fuser  # noqa: F401  (registers "dmnet")
        except ModuleNotFoundError as exc:  # pragma: no cover - only before DMNet landed
            if exc.name != "fusedet.dmnet_fuser":
                raise


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
    vis_y = rgb_to_ycbcr(vis, channel_axis=1)[:, :1]
    fused_y = fuser.fuse(ir, vis_y).clamp(0.0, 1.0)
    return replace_luma(vis, fused_y[:, 0], channel_axis=1)


@torch.no_grad()
def fuse_arrays(fuser: Fuser, ir: np.ndarray, vis: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Fuse one pair of numpy images (IR H x W, VIS H x W x 3, [0, 1]); returns H x W x 3 float32."""
    ir_t = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32))[None, None].to(device)
    vis_t = torch.from_numpy(np.ascontiguousarray(vis, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    fused = fuse_color(fuser, ir_t, vis_t)
    return fused[0].permute(1, 2, 0).float().cpu().numpy()
