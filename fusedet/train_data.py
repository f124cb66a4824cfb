"""Training crops for DMNet from folders of IR/VIS pairs (paper IV-B: random 128 x 128 crops).

A data folder is a directory holding one infrared and one visible subfolder whose images are matched
by stem (fusedet.datasets.PairFolder). The subfolder names are recognised case-insensitively:
infrared ``ir``, ``inf``, ``infrared``, ``thermal``, ``lwir``; visible ``vi``, ``vis``, ``visible``, ``rgb``.
So MSRS (``ir/``, ``vi/``), M3FD (``Ir/``, ``Vis/``) and the usual test-set layouts work as they are.

All pairs are decoded once, up front (bad pairs raise InputError before any training), and kept in
memory as float16 IR and visible luma (4 bytes per pixel per pair: 271 MSRS pairs take 330 MB).
Item ``i`` is crop number ``i % crops_per_pair`` of pair ``i // crops_per_pair``; its position depends
only on (seed, epoch, i), so a resumed run sees the same crops as an uninterrupted one.

Texture-favouring crops (``texture_candidates = K > 1``): each item draws K uniform positions and keeps
the one whose crop has the most texture, the mean over the crop of |dx| + |dy| (forward differences)
of the IR plus the visible luma. Flat crops (sky, dark road at night) carry no gradient target for
L_gd; this spends more of the training steps on edges. K = 1 is plain uniform sampling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusedet.datasets import PairFolder
from fusedet.errors import InputError

IR_NAMES = ("ir", "inf", "infrared", "thermal", "lwir")
VIS_NAMES = ("vi", "vis", "visible", "rgb")


def find_pair_dirs(root: str | os.PathLike) -> tuple[Path, Path]:
    """Return the (infrared, visible) subfolders of a data folder; InputError if not exactly one of each."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    subdirs = [p for p in sorted(root.iterdir()) if p.is_dir()]
    ir = [p for p in subdirs if p.name.lower() in IR_NAMES]
    vis = [p for p in subdirs if p.name.lower() in VIS_NAMES]
    if len(ir) != 1 or len(vis) != 1:
        found = ", ".join(p.name for p in subdirs) or "no subfolders"
        raise InputError(
            f"{root}: expected one infrared subfolder ({'/'.join(IR_NAMES)}) and one visible subfolder "
            f"({'/'.join(VIS_NAMES)}), found: {found}"
        )
    return ir[0], vis[0]


class CropDataset(Dataset):
    """Random square crops of (IR, visible luma) pairs: items are two 1 x crop x crop float32 tensors."""

    def __init__(
        self,
        roots: Sequence[str | os.PathLike],
        crop: int = 128,
        crops_per_pair: int = 1,
        seed: int = 0,
        on_read: Callable[[int, int], None] | None = None,
        texture_candidates: int = 1,
    ) -> None:
        """Read every pair of every folder in `roots`; `on_read(done, total)` reports progress.

        `texture_candidates` K >= 1: keep the most textured of K random crop positions (1: uniform).
        """
        if crop < 8 or crops_per_pair < 1 or texture_candidates < 1:
            raise InputError(
                f"crop must be >= 8, crops per pair and texture candidates >= 1 (got {crop}, {crops_per_pair}, {texture_candidates})"
            )
        if not roots:
            raise InputError("no data folder given")
        self.crop, self.crops_per_pair, self.seed, self.epoch = crop, crops_per_pair, seed, 0
        self.texture_candidates = texture_candidates
        folders = [PairFolder(*find_pair_dirs(root)) for root in roots]
        self.roots = [str(Path(root).resolve()) for root in roots]
        self._images: list[torch.Tensor] = []  # 2 x H x W float16: IR, visible Y
        total = sum(len(f) for f in folders)
        for folder in folders:
            for stem in folder.stems:
                pair = folder.read(stem)
                if min(pair.size) < crop:
                    raise InputError(
                        f"pair {stem!r} ({pair.ir_path}, {pair.vis_path}) is {pair.size[1]}x{pair.size[0]} (W x H), "
                        f"smaller than the crop size {crop}; use a smaller --crop or leave the pair out"
                    )
                self._images.append(torch.from_numpy(np.stack([pair.ir, pair.vis_y])).to(torch.float16))
                if on_read:
                    on_read(len(self._images), total)

    @property
    def pairs(self) -> int:
        return len(self._images)

    def __len__(self) -> int:
        return self.pairs * self.crops_per_pair

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of `epoch` (called by the trainer before each epoch)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        image = self._images[index // self.crops_per_pair]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        best, best_texture = None, -1.0
        for _ in range(self.texture_candidates):
            top = int(rng.integers(0, image.shape[1] - self.crop + 1))
            left = int(rng.integers(0, image.shape[2] - self.crop + 1))
            patch = image[:, top : top + self.crop, left : left + self.crop].float()
            texture = crop_texture(patch) if self.texture_candidates > 1 else 0.0
            if texture > best_texture:
                best, best_texture = patch, texture
        return best[:1].clone(), best[1:].clone()

    def describe(self) -> dict[str, Any]:
        """Plain-value description stored in checkpoints (and compared on resume)."""
        info = {"dirs": self.roots, "pairs": self.pairs, "crop": self.crop, "crops_per_pair": self.crops_per_pair}
        if self.texture_candidates > 1:  # absent for uniform crops, so runs made before the option resume
            info["texture_candidates"] = self.texture_candidates
        return info


def crop_texture(patch: torch.Tensor) -> float:
    """Texture of a C x H x W crop in [0, 1]: sum over channels of the mean |dx| + |dy| (forward differences)."""
    dx = (patch[:, :, 1:] - patch[:, :, :-1]).abs().mean(dim=(1, 2))
    dy = (patch[:, 1:, :] - patch[:, :-1, :]).abs().mean(dim=(1, 2))
    return float((dx + dy).sum())
